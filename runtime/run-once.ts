import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { appendFileSync, mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { DeckError } from "../core/errors.ts";
import type { Runtime } from "../core/interfaces.ts";
import { prepareLaunch, type Launch, type LaunchOptions } from "./launch.ts";
import { descendants, formatLogLine, isGroupAlive, LAUNCHER_ENV, launchStdio, LineSplitter, signalGroup, signalProcess, sleep, writeEnvPayload } from "./shim-lib.mjs";

export type RunOnceSpec = Parameters<Runtime["runOnce"]>[0];
export type RunOnceResult = Awaited<ReturnType<Runtime["runOnce"]>>;

/** Between SIGTERM and SIGKILL when a one-shot command runs past its timeout. */
const TIMEOUT_GRACE_MS = 2000;
const LOG_NAME = "release";

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Runs a one-shot command (the Procfile `release:` step) in its own process group so that a timeout,
 * and its end, take every process it started with it. Each output line goes to `onLine` as it arrives
 * and to the app's log file. With `spec.sandbox` it runs like the app's processes: as the app's uid,
 * in the sandbox, in a cgroup of its own that is removed (with anything left in it) at the end.
 */
export async function runOnce(spec: RunOnceSpec, options: LaunchOptions = {}): Promise<RunOnceResult> {
  if (!isDirectory(spec.cwd)) {
    throw new DeckError("process_cwd_missing", `cannot run \`${spec.command}\`: directory ${spec.cwd} does not exist`, { cwd: spec.cwd });
  }
  mkdirSync(dirname(spec.logFile), { recursive: true });
  const writeLog = (text: string): void => {
    try {
      appendFileSync(spec.logFile, text);
    } catch {
      // the output still reaches onLine; a log that cannot be written must not fail the release
    }
  };
  const emit = (lines: string[]): void => {
    if (lines.length === 0) return;
    const now = new Date();
    writeLog(lines.map((l) => formatLogLine("app", LOG_NAME, l, now)).join(""));
    for (const line of lines) {
      try {
        spec.onLine(line);
      } catch {
        // a failing listener must not stop the command or lose the log
      }
    }
  };

  writeLog(formatLogLine("deck", LOG_NAME, `Running release command \`${spec.command}\``));
  const launch = await prepareLaunch(`${spec.app.slice(0, 60)}.release-${randomUUID().slice(0, 8)}`, spec, options);
  if (launch.notice) writeLog(formatLogLine("deck", LOG_NAME, launch.notice));
  try {
    return await runLaunched(spec, launch, { writeLog, emit });
  } finally {
    await launch.cgroup?.remove();
  }
}

interface Output {
  writeLog(text: string): void;
  emit(lines: string[]): void;
}

async function runLaunched(spec: RunOnceSpec, launch: Launch, { writeLog, emit }: Output): Promise<RunOnceResult> {
  const [file, ...args] = launch.argv;
  const child = spawn(file, args, { cwd: spec.cwd, env: launch.envOnFd ? { ...LAUNCHER_ENV } : launch.env, detached: true, stdio: launchStdio(launch.envOnFd) });
  if (launch.envOnFd) writeEnvPayload(child, launch.env);
  const pgid = child.pid;
  // Killing a sandbox kills what runs inside it at once: a graceful signal goes to the processes inside.
  const terminate = () => {
    if (pgid === undefined) return;
    if (launch.sandboxed) for (const pid of descendants(pgid)) signalProcess(pid, "SIGTERM");
    else signalGroup(pgid, "SIGTERM");
  };

  const outputDone = Promise.all(
    [child.stdout!, child.stderr!].map(
      (stream) =>
        new Promise<void>((resolve) => {
          const splitter = new LineSplitter();
          stream.setEncoding("utf8");
          stream.on("data", (chunk: string) => emit(splitter.push(chunk)));
          stream.on("close", () => {
            emit(splitter.flush());
            resolve();
          });
        }),
    ),
  );

  let timedOut = false;
  let killTimer: NodeJS.Timeout | undefined;
  const timeoutTimer = setTimeout(() => {
    timedOut = true;
    writeLog(formatLogLine("deck", LOG_NAME, `Release command timed out after ${spec.timeoutMs / 1000}s; stopping (SIGTERM)`));
    terminate();
    killTimer = setTimeout(() => {
      if (pgid !== undefined) signalGroup(pgid, "SIGKILL");
    }, TIMEOUT_GRACE_MS);
  }, spec.timeoutMs);

  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, error });
    });
  });
  clearTimeout(timeoutTimer);

  // Whatever the command left running in the background ends with it.
  if (pgid !== undefined && isGroupAlive(pgid)) {
    if (timedOut) signalGroup(pgid, "SIGKILL");
    else terminate();
    const deadline = Date.now() + TIMEOUT_GRACE_MS;
    while (isGroupAlive(pgid) && Date.now() < deadline) await sleep(25);
    signalGroup(pgid, "SIGKILL");
    while (isGroupAlive(pgid) && Date.now() < deadline + 1000) await sleep(25);
  }
  clearTimeout(killTimer);
  await Promise.race([outputDone, sleep(1000)]);

  const how = exit.error ? `error (${exit.error.message})` : exit.code !== null ? `status ${exit.code}` : `signal ${exit.signal}`;
  writeLog(formatLogLine("deck", LOG_NAME, `Release command exited with ${how}`));
  return { exitCode: exit.code, timedOut };
}
