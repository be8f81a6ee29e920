import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";

/**
 * Scratch directories a build works in and removes when it ends: beside the app's slugs, the build
 * itself (slug.ts `createWorkDir`, `.BUILD_ID.building-XXXXXX`) and a packaged slug's image context
 * (docker-build.ts, `.image-context-XXXXXX`); in the app's cache dir, a sandboxed build (build.ts,
 * `.build-XXXXXX`). A deck server killed mid-build never removes them.
 */
const SLUGS_SCRATCH = /^\.(?:\d+\.building|image-context)-[A-Za-z0-9]{6}$/;
const CACHE_SCRATCH = /^\.build-[A-Za-z0-9]{6}$/;

export interface BuildLeftoverOptions {
  /** The data dir's `apps`: each app's builds are in `APP/slugs/` under it. */
  appsDir: string;
  /** The data dir's `cache`: each app's build cache is `APP/` under it. */
  cacheDir: string;
  /** Told about each directory removed. */
  log?: (line: string) => void;
}

/** Subdirectories of `dir` (not links to one); none when `dir` does not exist. */
async function subdirectories(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
}

/**
 * Removes the scratch directories of builds that a killed deck server cut off, in every app's slugs
 * and cache dir; finished builds and the build cache itself stay. Call it when deck starts, before any
 * build: a build under way has its scratch directory in the same places. Returns what it removed.
 */
export async function removeBuildLeftovers(options: BuildLeftoverOptions): Promise<string[]> {
  const places = [
    ...(await subdirectories(options.appsDir)).map((app) => ({ dir: join(options.appsDir, app, "slugs"), pattern: SLUGS_SCRATCH })),
    ...(await subdirectories(options.cacheDir)).map((app) => ({ dir: join(options.cacheDir, app), pattern: CACHE_SCRATCH })),
  ];
  const removed: string[] = [];
  for (const { dir, pattern } of places) {
    for (const name of await subdirectories(dir)) {
      if (!pattern.test(name)) continue;
      const path = join(dir, name);
      await rm(path, { recursive: true, force: true });
      removed.push(path);
      options.log?.(`removed ${path}, left by a build that deck was stopped in the middle of`);
    }
  }
  return removed;
}
