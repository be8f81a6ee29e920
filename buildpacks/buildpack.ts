import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseProcfile, type LineSink, type Procfile } from "../core/index.ts";

/** Options for one command a buildpack runs; the build's env and the checkout dir are the defaults. */
export interface RunOptions {
  cwd?: string;
  /** Added on top of the build env for this command only. */
  env?: Record<string, string>;
}

/**
 * What a buildpack gets to build with. `run` is supplied by the builder so that every child process
 * is streamed, timed out and cancelled the same way; it resolves when the command exits 0 and throws
 * `BuildStepError` otherwise.
 */
export interface BuildContext {
  /** The checked-out source; the build happens in place and this directory becomes the slug. */
  dir: string;
  /** Per-app directory kept between builds (dependency caches live under it). */
  cacheDir: string;
  /** The build env: base env, the app's config vars, CI=true. */
  env: Record<string, string>;
  /** Writes one line of build output verbatim (use `formatHeader` / `formatDetail`). */
  onLine: LineSink;
  signal: AbortSignal;
  run(argv: readonly string[], opts?: RunOptions): Promise<void>;
}

export interface Buildpack {
  /** Stable id reported in `BuildResult.buildpack`. */
  name: string;
  /** Shown as `-----> <label> detected`. */
  label: string;
  /** What detection looks for, for the "no buildpack matched" message, e.g. `package.json (Node.js)`. */
  looksFor: string;
  detect(dir: string): Promise<boolean>;
  /** Throws `BuildStepError` on a failure the app's author can fix. */
  build(ctx: BuildContext): Promise<void>;
  /** The process types to run; throws `BuildStepError` when there is nothing to run. */
  release(dir: string): Promise<Procfile>;
}

/** A build failure caused by the app (bad package.json, failing script): one line saying what to fix. */
export class BuildStepError extends Error {
  readonly code = "build_failed" as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BuildStepError";
  }
}

export function isBuildStepError(e: unknown): e is BuildStepError {
  return e instanceof BuildStepError;
}

/** Heroku-style phase header: `-----> Installing dependencies`. */
export function formatHeader(text: string): string {
  return `-----> ${text}`;
}

/** Heroku-style detail line, aligned under the header text. */
export function formatDetail(text: string): string {
  return `       ${text}`;
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** The Procfile in the root of `dir`, or undefined when there is none. */
export async function readProcfile(dir: string): Promise<Procfile | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, "Procfile"), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  return parseProcfile(text);
}
