import { join } from "node:path";
import { BuildStepError, formatHeader, type Buildpack, type BuildContext } from "./buildpack.ts";
import { readRepoFile, repoEntryExists } from "./repo-file.ts";
import { BIN_DIR, resolveCompiledProcesses } from "./compiled.ts";
import { syncTree } from "./sync-tree.ts";
import { requireToolchain, type Toolchain } from "./toolchain.ts";

const GO: Toolchain = {
  app: "Go app",
  command: "go",
  install: "Go 1.19+ (Debian: apt-get install golang-go)",
};

/**
 * The build runs from a copy of the source at a fixed place in the app's cache: Go keys compiled
 * packages by their directory too, so building from each release's fresh checkout dir would
 * recompile the app on every push.
 */
export function goSourceDir(cacheDir: string): string {
  return join(cacheDir, "go", "src");
}

/** Env for the build only: every Go cache lives in the app's cache dir, and Go never fetches a toolchain. */
export function goBuildEnv(cacheDir: string): Record<string, string> {
  return {
    GOPATH: join(cacheDir, "go", "path"),
    GOCACHE: join(cacheDir, "go", "build-cache"),
    GOMODCACHE: join(cacheDir, "go", "mod-cache"),
    GOTOOLCHAIN: "local",
  };
}

/** `-v` names each package as it is compiled, so a build that reuses the cache is a quiet one. */
export function goBuildArgv(slugDir: string): string[] {
  return ["go", "build", "-v", "-o", `${join(slugDir, BIN_DIR)}/`, "./..."];
}

/** The module path from go.mod, e.g. `example.com/hello`. */
export function parseGoModule(goMod: string): string | undefined {
  const m = /^\s*module\s+("?)([^\s"]+)\1\s*(?:\/\/.*)?$/m.exec(goMod);
  return m?.[2];
}

/** The name `go build` gives the module root's command: its last path element, skipping a `/vN` suffix. */
export function goCommandName(modulePath: string): string {
  const parts = modulePath.split("/").filter(Boolean);
  const last = parts[parts.length - 1] ?? modulePath;
  return /^v\d+$/.test(last) && parts.length > 1 ? parts[parts.length - 2] : last;
}

async function readModule(dir: string): Promise<string> {
  const module = parseGoModule((await readRepoFile(dir, "go.mod")) ?? "");
  if (!module) throw new BuildStepError(`go.mod has no "module" line: start it with "module example.com/myapp"`);
  return module;
}

export const goBuildpack: Buildpack = {
  name: "go",
  label: "Go app",
  looksFor: "go.mod (Go)",

  detect(dir) {
    return repoEntryExists(dir, "go.mod");
  },

  async build(ctx: BuildContext) {
    await readModule(ctx.dir);
    await requireToolchain(ctx, GO);
    const src = goSourceDir(ctx.cacheDir);
    await syncTree(ctx, ctx.dir, src, [".git"]);
    ctx.onLine(formatHeader("Building (go build)"));
    await ctx.run(goBuildArgv(ctx.dir), { cwd: src, env: goBuildEnv(ctx.cacheDir) });
  },

  async release(dir) {
    return resolveCompiledProcesses(dir, goCommandName(await readModule(dir)), "Go");
  },
};
