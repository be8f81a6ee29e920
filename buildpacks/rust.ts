import { join, relative } from "node:path";
import { BuildStepError, formatDetail, formatHeader, type Buildpack, type BuildContext } from "./buildpack.ts";
import { copyRepoFile, readRepoFile, repoEntryExists } from "./repo-file.ts";
import { BIN_DIR, resolveCompiledProcesses } from "./compiled.ts";
import { syncTree } from "./sync-tree.ts";
import { captureOutput, requireToolchain, type Toolchain } from "./toolchain.ts";

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

/**
 * `cargo metadata`'s answer. It comes from a command the repository can configure (a rustc wrapper, a
 * cargo on the app's PATH), so anything else than the expected shape fails the build with one line.
 */
export function parseCargoMetadata(text: string): CargoMetadata {
  const bad = (why: string) => new BuildStepError(`cargo metadata printed ${why}: check the repository's cargo configuration`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw bad("something that is not JSON");
  }
  const packages = (parsed as { packages?: unknown } | null)?.packages;
  if (!Array.isArray(packages)) throw bad("no package list");
  for (const p of packages as Record<string, unknown>[]) {
    const targets = p?.targets;
    if (typeof p?.name !== "string" || !Array.isArray(p.dependencies) || !Array.isArray(targets)) throw bad("a package without name, dependencies or targets");
    for (const t of targets as Record<string, unknown>[]) {
      if (typeof t?.name !== "string" || !Array.isArray(t.kind)) throw bad("a target without name or kind");
    }
  }
  return parsed as CargoMetadata;
}

export function planCargoBuild(meta: CargoMetadata): CargoPlan {
  const binaries = meta.packages.flatMap((p) => p.targets.filter((t) => t.kind.includes("bin")).map((t) => t.name));
  const offline = meta.packages.every((p) => p.dependencies.every((d) => !d?.source));
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
    return repoEntryExists(dir, "Cargo.toml");
  },

  async build(ctx: BuildContext) {
    await requireToolchain(ctx, CARGO);
    const src = rustSourceDir(ctx.cacheDir);
    await syncTree(ctx, ctx.dir, src, [".git", "target"]);
    const env = cargoBuildEnv(ctx.cacheDir);
    const metaText = await captureOutput(ctx, ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"], { cwd: src, env });
    const plan = planCargoBuild(parseCargoMetadata(metaText));
    if (plan.binaries.length === 0) throw new BuildStepError(`Cargo.toml defines no binary: add src/main.rs or a [[bin]] target`);

    ctx.onLine(formatHeader(`Building (cargo build --release${plan.offline ? " --offline" : ""})`));
    await ctx.run(cargoBuildArgv(plan.offline), { cwd: src, env });

    for (const name of plan.binaries) {
      // Both ends were in reach of build.rs: neither is followed through a link.
      await copyRepoFile({ root: ctx.cacheDir, rel: join(relative(ctx.cacheDir, env.CARGO_TARGET_DIR), "release", name) }, { root: ctx.dir, rel: `${BIN_DIR}/${name}` }, { mode: 0o755 });
    }
    ctx.onLine(formatDetail(`Installed ${plan.binaries.map((b) => `${BIN_DIR}/${b}`).join(", ")}`));
  },

  async release(dir) {
    return resolveCompiledProcesses(dir, parseCargoDefaultBinary((await readRepoFile(dir, "Cargo.toml")) ?? ""), "Rust");
  },
};
