/** Shared by the buildpack tests: sample app dirs and a real (unmocked) build context. */
import { spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { BuildStepError, type BuildContext } from "./index.ts";

export interface SampleDirs {
  root: string;
  /** A new dir holding `files` (paths may have sub-directories). */
  make(files: Record<string, string>): string;
  /** A new, empty cache dir. */
  cache(): string;
  remove(): void;
}

export function createSampleDirs(prefix = "deck-buildpacks-"): SampleDirs {
  const root = mkdtempSync(join(tmpdir(), prefix));
  let count = 0;
  return {
    root,
    make(files) {
      const dir = join(root, `app-${++count}`);
      mkdirSync(dir);
      for (const [path, content] of Object.entries(files)) {
        mkdirSync(dirname(join(dir, path)), { recursive: true });
        writeFileSync(join(dir, path), content);
      }
      return dir;
    },
    cache: () => join(root, `cache-${++count}`),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}

export interface TestContextOptions {
  cacheDir: string;
  /** Replaces the build env's PATH (to hide a toolchain). */
  path?: string;
}

/** Stands in for the builder's context (unsandboxed): argv, no shell, output collected, `run` fails on a non-zero exit. */
export function createTestContext(dir: string, opts: TestContextOptions): BuildContext & { lines: string[] } {
  const lines: string[] = [];
  const env = { PATH: opts.path ?? process.env.PATH ?? "", HOME: process.env.HOME ?? "", CI: "true" };
  return {
    dir,
    cacheDir: opts.cacheDir,
    env,
    lines,
    onLine: (line) => lines.push(line),
    signal: new AbortController().signal,
    run: (argv, runOpts = {}) =>
      new Promise((resolve, reject) => {
        const child = spawn(argv[0], argv.slice(1), { cwd: runOpts.cwd ?? dir, env: { ...env, ...runOpts.env }, stdio: ["ignore", "pipe", "pipe"] });
        collectLines(child.stdout, lines);
        collectLines(child.stderr, lines);
        child.on("error", reject);
        child.on("close", (code) => (code === 0 ? resolve() : reject(new BuildStepError(`${argv.join(" ")} failed with exit code ${code}`))));
      }),
    capture: (argv, runOpts = {}) =>
      new Promise((resolve, reject) => {
        const child = spawn(argv[0], argv.slice(1), { cwd: runOpts.cwd ?? dir, env: { ...env, ...runOpts.env }, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        const stderr: string[] = [];
        child.stdout.setEncoding("utf8");
        child.stdout.on("data", (chunk: string) => (stdout += chunk));
        collectLines(child.stderr, stderr);
        child.on("error", reject);
        child.on("close", (code) => {
          lines.push(...stderr);
          if (code === null) reject(new BuildStepError(`${argv.join(" ")} was killed`));
          else resolve({ exitCode: code, stdout, stderrTail: stderr.slice(-20) });
        });
      }),
  };
}

/** Whole lines only: a line split across two reads is still one line. */
function collectLines(stream: Readable, lines: string[]): void {
  let pending = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const parts = (pending + chunk).split(/\r?\n/);
    pending = parts.pop() ?? "";
    lines.push(...parts);
  });
  stream.on("end", () => {
    if (pending) lines.push(pending);
  });
}
