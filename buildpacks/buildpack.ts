import type { LineSink, Procfile } from "../core/index.ts";

/** Options for one command a buildpack runs; the build's env and the checkout dir are the defaults. */
export interface RunOptions {
  cwd?: string;
  /** Added on top of the build env for this command only. */
  env?: Record<string, string>;
}

/** What a query command answered: its stdout, and how it ended. */
export interface CaptureResult {
  exitCode: number;
  stdout: string;
  /** Its last lines of stderr (all of which also went to the build output), for error messages. */
  stderrTail: string[];
}

/**
 * What a buildpack gets to build with. `run` and `capture` are supplied by the builder so that every
 * child process runs the same way: in the app's sandbox, as its uid, streamed, timed out and cancelled.
 * A buildpack never starts a process itself: anything it runs may load code the tenant controls (a
 * repository's `.cargo/config.toml`, a `PATH` set in the app's config).
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
  /** Resolves when the command exits 0; throws `BuildStepError` otherwise. */
  run(argv: readonly string[], opts?: RunOptions): Promise<void>;
  /**
   * Runs a short query command (`cargo metadata`) like `run` and resolves with its stdout, whatever
   * its exit code; throws `BuildStepError` when it cannot start, is killed, or prints too much.
   */
  capture(argv: readonly string[], opts?: RunOptions): Promise<CaptureResult>;
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
