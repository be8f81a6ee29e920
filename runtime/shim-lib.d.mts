import type { ProcessInfo, ProcessSpec } from "../core/interfaces.ts";

/** What ProcessRuntime hands a shim: the file named on the shim's command line. */
export interface ShimSpec {
  version: 2;
  id: string;
  /** The process as started, without its environment: values reach the shim on stdin only. */
  spec: Omit<ProcessSpec, "env"> & { envKeys: string[] };
  /** What the shim spawns (and respawns): the command with its sandbox and cgroup wrappers. */
  argv: string[];
  /** argv is a sandbox: graceful signals go to the processes inside it, not to the sandbox itself. */
  sandboxed: boolean;
  /** argv runs under the app's uid: spawned with LAUNCHER_ENV, the env written to SANDBOX_ENV_FD. */
  envOnFd?: boolean;
  /** The app's log moves aside past this size (default 64 MiB). */
  maxLogBytes?: number;
  /** The process's own cgroup: the shim removes it (killing what is left in it) when it stops. */
  cgroup?: { dirs: string[]; oomFile: string; memoryBytes: number };
  /** A line for the app's log at start-up (e.g. limits that could not be set). */
  notice?: string;
  /** Where the shim keeps its ProcessRecord. */
  stateFile: string;
  /** Written by `stop()` just before SIGTERM, to pass that stop's grace period. */
  stopFile: string;
  /** Grace between SIGTERM and SIGKILL when the shim is signalled without a stop file. */
  graceMs: number;
}

/** The state file: ProcessInfo plus what is needed to find, verify and stop the process later. */
export interface ProcessRecord extends ProcessInfo {
  shimPid: number;
  specFile: string;
  command: string;
  cwd: string;
  logFile: string;
  /** Process group of the current (or last) child; the child is its leader. */
  pgid?: number;
  /** /proc start time of `pid`, so a reused pid is never mistaken for the child. */
  childStartTime?: number;
  /** The process's cgroup directories, removed with it (also when its shim died). */
  cgroupDirs?: string[];
}

export interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  startTime: number;
}

export declare const MAX_RESTART_DELAY_MS: number;
export declare const HEALTHY_UPTIME_MS: number;
export declare function restartDelayMs(consecutiveCrashes: number): number;
export declare function formatLogLine(source: "app" | "deck", name: string, text: string, date?: Date): string;
export declare class LineSplitter {
  push(chunk: string): string[];
  flush(): string[];
}
export declare function readProcStat(pid: number): ProcStat | undefined;
export declare function isProcessAlive(pid: number): boolean;
export declare function isSameProcess(pid: number, startTime: number | undefined): boolean;
export declare function groupMembers(pgid: number): number[];
export declare function isGroupAlive(pgid: number): boolean;
export declare function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean;
export declare function signalProcess(pid: number, signal: NodeJS.Signals | 0): boolean;
export declare function readCmdline(pid: number): string[] | undefined;
export declare function closeInheritedFds(): void;
export declare function writeJsonAtomic(path: string, value: unknown): void;
export declare function sleep(ms: number): Promise<void>;
export declare function shellArgv(command: string): [string, string, string];
export declare function descendants(pid: number): number[];
export declare function readOomKills(file: string): number;
export declare function killAndRemoveCgroup(dir: string): Promise<void>;
export declare const LAUNCHER_ENV: Readonly<Record<string, string>>;
export declare const SANDBOX_ENV_FD: number;
export declare function envPayload(env: Record<string, string | undefined>): Buffer;
export declare function launchStdio(envOnFd: boolean, stdin?: "ignore" | "pipe"): Array<"ignore" | "pipe">;
export declare function writeEnvPayload(child: import("node:child_process").ChildProcess, env: Record<string, string | undefined>): void;
