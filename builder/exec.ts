import { spawn, type ChildProcess } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { StringDecoder } from "node:string_decoder";
import type { Readable } from "node:stream";
import type { LineSink } from "../core/index.ts";
import { sandboxArgv, type SandboxHost, type SandboxSpec } from "../runtime/sandbox.ts";
import { LAUNCHER_ENV, launchStdio, writeEnvPayload } from "../runtime/shim-lib.mjs";
import { cgroupEnterArgv, currentBuildCgroup, resolveExecutable } from "./limits.ts";

/**
 * The one place builder children are spawned. Commands arrive as argv arrays (never a shell string);
 * every child leads its own process group so that a timeout or cancel can stop everything it started
 * (npm -> sh -> the app's build script), and nothing of a finished command is left behind.
 */
export interface ExecOptions {
  cwd: string;
  env: Record<string, string | undefined>;
  signal?: AbortSignal;
  /** Each line of stdout and stderr, as soon as it is complete. */
  onLine?: LineSink;
  /** Time between SIGTERM and SIGKILL when the signal aborts. */
  killGraceMs?: number;
  /** Run the command in the app's sandbox (as its uid, see runtime/sandbox.ts), in `cwd`. */
  sandbox?: ExecSandbox;
}

export interface ExecSandbox {
  host: SandboxHost;
  spec: Omit<SandboxSpec, "cwd">;
}

export interface ExecResult {
  argv: readonly string[];
  exitCode: number | null;
  exitSignal: NodeJS.Signals | null;
  /** The signal aborted before or while the command ran; its process group has been stopped. */
  aborted: boolean;
  /** Set when the command could not be started at all (e.g. ENOENT). */
  spawnError?: NodeJS.ErrnoException;
  /** The last lines the command wrote to stderr, for error messages. */
  stderrTail: string[];
}

const DEFAULT_KILL_GRACE_MS = 2000;
const STDERR_TAIL_LINES = 20;
/** How long stdio may stay open after the leader exits (a descendant that escaped the group). */
const CLOSE_AFTER_EXIT_MS = 2000;

export function execCommand(argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
  const started = startInGroup(argv, opts, "ignore");
  if (started.child) {
    pipeLines(started.child.stdout, opts.onLine);
    pipeLines(started.child.stderr, opts.onLine, started.stderrTail);
  }
  return started.done;
}

/** The most of a captured command's stdout that is kept: query commands print data, not build logs. */
export const CAPTURE_MAX_BYTES = 16 * 1024 * 1024;

export interface CaptureResult extends ExecResult {
  /** stdout, decoded as UTF-8 (stderr still streams through `onLine`). */
  stdout: string;
  /** stdout passed `maxStdoutBytes`: the command's group was killed and `stdout` holds what came before. */
  stdoutOverflow: boolean;
}

/** `execCommand` for a command whose stdout is its answer (`cargo metadata`): stdout is kept, up to a cap. */
export async function captureCommand(argv: readonly string[], opts: ExecOptions & { maxStdoutBytes?: number }): Promise<CaptureResult> {
  const max = opts.maxStdoutBytes ?? CAPTURE_MAX_BYTES;
  const started = startInGroup(argv, opts, "ignore");
  const chunks: Buffer[] = [];
  let size = 0;
  let overflow = false;
  const child = started.child;
  if (child) {
    child.stdout?.on("data", (chunk: Buffer) => {
      if (overflow) return;
      if (size + chunk.length > max) {
        overflow = true;
        chunks.push(chunk.subarray(0, max - size));
        if (child.pid !== undefined) signalGroup(child.pid, "SIGKILL");
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
    });
    // A read error ends the output early; the command's exit status reports the failure.
    child.stdout?.on("error", () => {});
    pipeLines(child.stderr, opts.onLine, started.stderrTail);
  }
  const result = await started.done;
  return { ...result, stdout: Buffer.concat(chunks).toString("utf8"), stdoutOverflow: overflow };
}

/** Runs `producer | consumer` as two processes (each in its own group), both streaming stderr. */
export async function execPipeline(producer: readonly string[], consumer: readonly string[], opts: ExecOptions): Promise<[ExecResult, ExecResult]> {
  const from = startInGroup(producer, opts, "ignore");
  const to = startInGroup(consumer, opts, "pipe");
  if (from.child && to.child) {
    const sink = to.child.stdin!;
    // The consumer may exit first (bad archive); its exit status reports that, not an EPIPE.
    sink.on("error", () => {});
    from.child.stdout?.pipe(sink);
  } else {
    from.child?.kill("SIGKILL");
    to.child?.kill("SIGKILL");
  }
  for (const s of [from, to]) {
    if (s.child) {
      if (s !== from) pipeLines(s.child.stdout, opts.onLine);
      pipeLines(s.child.stderr, opts.onLine, s.stderrTail);
    }
  }
  return Promise.all([from.done, to.done]);
}

interface Started {
  child?: ChildProcess;
  stderrTail: string[];
  done: Promise<ExecResult>;
}

function startInGroup(argv: readonly string[], opts: ExecOptions, stdin: "ignore" | "pipe"): Started {
  if (argv.length === 0) throw new Error("execCommand: empty argv");
  const stderrTail: string[] = [];
  const result = (extra: Partial<ExecResult>): ExecResult => ({ argv, exitCode: null, exitSignal: null, aborted: false, stderrTail, ...extra });
  if (opts.signal?.aborted) return { stderrTail, done: Promise.resolve(result({ aborted: true })) };

  // Inside a build with limits, the child enters the build's cgroup before it execs (see limits.ts);
  // in a sandbox, it then runs as the app's uid. Both wrappers exec the command by its absolute path.
  let command = argv;
  const cgroup = currentBuildCgroup();
  if (cgroup || opts.sandbox) {
    const path = resolveExecutable(argv[0], opts.env.PATH, opts.cwd);
    if (!path) {
      const err: NodeJS.ErrnoException = Object.assign(new Error(`spawn ${argv[0]} ENOENT`), { code: "ENOENT", path: argv[0] });
      return { stderrTail, done: Promise.resolve(result({ spawnError: err })) };
    }
    command = [path, ...argv.slice(1)];
    if (opts.sandbox) command = sandboxArgv(opts.sandbox.host, { ...opts.sandbox.spec, cwd: opts.cwd }, command);
    if (cgroup) command = cgroupEnterArgv(cgroup.procsFiles, command);
  }
  // In the sandbox the build's env (the app's config vars among it) reaches the command only after the
  // uid drop, through a pipe: the root part of the chain (cgroup wrapper, bwrap, setpriv) runs without it.
  const envOnFd = opts.sandbox !== undefined;
  const child = spawn(command[0], command.slice(1), { cwd: opts.cwd, env: envOnFd ? { ...LAUNCHER_ENV } : opts.env, detached: true, stdio: launchStdio(envOnFd, stdin) });
  if (envOnFd) writeEnvPayload(child, opts.env);
  const done = new Promise<ExecResult>((resolve) => {
    let stopping: Promise<void> | undefined;
    const onAbort = () => {
      if (child.pid !== undefined) stopping ??= stopGroup(child.pid, opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });

    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    const finish = async (extra: Partial<ExecResult>) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener("abort", onAbort);
      if (stopping) await stopping;
      resolve(result({ aborted: stopping !== undefined, ...extra }));
    };

    child.once("error", (err: NodeJS.ErrnoException) => {
      if (child.pid === undefined) void finish({ spawnError: err });
    });
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      // Whatever the command left running in its group (a backgrounded server, a watcher) goes too.
      if (child.pid !== undefined) signalGroup(child.pid, "SIGKILL");
      setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, CLOSE_AFTER_EXIT_MS).unref();
    });
    child.once("close", (code, signal) => {
      const final = exit ?? { code, signal };
      void finish({ exitCode: final.code, exitSignal: final.signal });
    });
  });
  return { child, stderrTail, done };
}

/** Splits a stream into lines (\n, \r\n or a bare \r), decoding UTF-8 across chunk boundaries. */
function pipeLines(stream: Readable | null, onLine: LineSink | undefined, tail?: string[]): void {
  if (!stream) return;
  const decoder = new StringDecoder("utf8");
  let pending = "";
  const emit = (line: string) => {
    if (tail) {
      tail.push(line);
      if (tail.length > STDERR_TAIL_LINES) tail.shift();
    }
    onLine?.(line);
  };
  const flush = (text: string) => {
    const parts = text.split(/\r\n|\n|\r/);
    pending = parts.pop() ?? "";
    for (const line of parts) emit(line);
  };
  stream.on("data", (chunk: Buffer) => flush(pending + decoder.write(chunk)));
  stream.on("end", () => {
    const rest = pending + decoder.end();
    pending = "";
    if (rest) emit(rest);
  });
  // A read error ends the lines early; the command's exit status reports the failure.
  stream.on("error", () => {});
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
  }
}

/** SIGTERM the group, SIGKILL it after `graceMs`; resolves once no live member remains. */
export async function stopGroup(pgid: number, graceMs: number): Promise<void> {
  signalGroup(pgid, "SIGTERM");
  if (await waitGroupGone(pgid, graceMs)) return;
  signalGroup(pgid, "SIGKILL");
  await waitGroupGone(pgid, 2000);
}

async function waitGroupGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!(await isGroupAlive(pgid))) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * True while any non-zombie process is in the group. On Linux this reads /proc, because orphaned
 * zombies (where nothing reaps them) keep kill(-pgid, 0) succeeding long after everything exited.
 */
export async function isGroupAlive(pgid: number): Promise<boolean> {
  let entries: string[];
  try {
    entries = await readdir("/proc");
  } catch {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === "EPERM";
    }
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    // Fields after "(comm)": state ppid pgrp ...; comm may itself contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") return true;
  }
  return false;
}
