import { chmod, copyFile, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { BuildStepError, fileExists, formatDetail, formatHeader, type Buildpack, type BuildContext } from "./buildpack.ts";
import { BIN_DIR, resolveCompiledProcesses } from "./compiled.ts";
import { captureOutput, requireToolchain, syncTree, type Toolchain } from "./toolchain.ts";

const CARGO: Toolchain = {
  app: "Rust app",
  command: "cargo",
  install: "a Rust toolchain with cargo (https://rustup.rs, or Debian: apt-get install cargo)",
};

/**
 * Like Go, the build runs from a fixed copy of the source in the app's cache: cargo fingerprints a
 * package by its path, and by mtime, which `syncTree` keeps for unchanged files.
 */
export function rustSourceDir(cacheDir: string): string {
  return join(cacheDir, "rust", "src");
}

export function rustTargetDir(cacheDir: string): string {
  return join(cacheDir, "rust", "target");
}

/** Env for the build only: compiled output and downloaded crates stay in the app's cache. */
export function cargoBuildEnv(cacheDir: string): Record<string, string> {
  return { CARGO_TARGET_DIR: rustTargetDir(cacheDir), CARGO_HOME: join(cacheDir, "rust", "cargo-home"), CARGO_TERM_COLOR: "never" };
}

/** `--offline` when nothing has to be downloaded, so a build never waits on an unreachable registry. */
export function cargoBuildArgv(offline: boolean): string[] {
  return ["cargo", "build", "--release", ...(offline ? ["--offline"] : [])];
}

interface CargoMetadata {
  packages: { name: string; default_run?: string | null; dependencies: { source?: string | null }[]; targets: { name: string; kind: string[] }[] }[];
}

export interface CargoPlan {
  /** Binaries the release build makes. */
  binaries: string[];
  /** Every dependency is a path inside the repository. */
  offline: boolean;
}

export function planCargoBuild(meta: CargoMetadata): CargoPlan {
  const binaries = meta.packages.flatMap((p) => p.targets.filter((t) => t.kind.includes("bin")).map((t) => t.name));
  const offline = meta.packages.every((p) => p.dependencies.every((d) => !d.source));
  return { binaries: [...new Set(binaries)], offline };
}

/** The binary `cargo run` would pick: the root package's `default-run`, else its name. */
export function parseCargoDefaultBinary(cargoToml: string): string | undefined {
  const section = /^\s*\[package\]\s*$([\s\S]*?)(?=^\s*\[|(?![\s\S]))/m.exec(cargoToml)?.[1] ?? "";
  const value = (key: string) => new RegExp(`^\\s*${key}\\s*=\\s*"([^"]+)"`, "m").exec(section)?.[1];
  return value("default-run") ?? value("name");
}

export const rustBuildpack: Buildpack = {
  name: "rust",
  label: "Rust app",
  looksFor: "Cargo.toml (Rust)",

  detect(dir) {
    return fileExists(join(dir, "Cargo.toml"));
  },

  async build(ctx: BuildContext) {
    await requireToolchain(ctx, CARGO);
    const src = rustSourceDir(ctx.cacheDir);
    await syncTree(ctx.dir, src, new Set([".git", "target"]));
    const env = cargoBuildEnv(ctx.cacheDir);
    const metaText = await captureOutput(
      { ...ctx, env: { ...ctx.env, ...env } },
      ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
      src,
    );
    const plan = planCargoBuild(JSON.parse(metaText) as CargoMetadata);
    if (plan.binaries.length === 0) throw new BuildStepError(`Cargo.toml defines no binary: add src/main.rs or a [[bin]] target`);

    ctx.onLine(formatHeader(`Building (cargo build --release${plan.offline ? " --offline" : ""})`));
    await ctx.run(cargoBuildArgv(plan.offline), { cwd: src, env });

    await mkdir(join(ctx.dir, BIN_DIR), { recursive: true });
    for (const name of plan.binaries) {
      const to = join(ctx.dir, BIN_DIR, name);
      await copyFile(join(env.CARGO_TARGET_DIR, "release", name), to);
      await chmod(to, 0o755);
    }
    ctx.onLine(formatDetail(`Installed ${plan.binaries.map((b) => `${BIN_DIR}/${b}`).join(", ")}`));
  },

  async release(dir) {
    return resolveCompiledProcesses(dir, parseCargoDefaultBinary(await readFile(join(dir, "Cargo.toml"), "utf8")), "Rust");
  },
};
