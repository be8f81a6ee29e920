import { createHash } from "node:crypto";
import { DeckError } from "../core/errors.ts";
import type { SandboxIdentity } from "../core/interfaces.ts";
import { cgroupEnterArgv, createCgroup, type Cgroup, type CgroupLimits } from "./cgroups.ts";
import { loadSandboxHost, sandboxArgv, sandboxEnv, type SandboxHost } from "./sandbox.ts";
import { shellArgv } from "./shim-lib.mjs";

export const DEFAULT_APP_MEMORY = 512 * 1024 * 1024;
export const DEFAULT_APP_PIDS = 512;

/** How the process runtime runs an app's commands; ProcessRuntimeOptions carries them. */
export interface LaunchOptions {
  /** Limits of a sandboxed process whose spec sets none (DECK_APP_MEMORY, DECK_APP_CPUS); pids default 512. */
  memoryBytes?: number;
  cpus?: number;
  pidsMax?: number;
  /**
   * Directories a sandboxed process must never see, even where they lie under a directory the sandbox
   * binds (deck's data dir under /opt, say). The process's own slug is bound on top.
   */
  hide?: string[];
  /** The cgroup mount (default /sys/fs/cgroup). */
  cgroupRoot?: string;
  /** What the host offers the sandbox; default: found by loadSandboxHost (tests pass a host without bwrap). */
  sandboxHost?: SandboxHost;
}

export interface LaunchSpec {
  command: string;
  cwd: string;
  env: Record<string, string>;
  sandbox?: SandboxIdentity;
  memoryBytes?: number;
  cpus?: number;
}

/** How a command is run: the argv to spawn, with what that takes. */
export interface Launch {
  argv: string[];
  env: Record<string, string>;
  /** argv is a bubblewrap sandbox: graceful signals go to the processes inside it, not to bwrap. */
  sandboxed: boolean;
  /**
   * argv runs under the app's uid: spawn it with LAUNCHER_ENV and `env` on SANDBOX_ENV_FD
   * (shim-lib.mjs `launchStdio`, `writeEnvPayload`), never as the spawn's own environment.
   */
  envOnFd: boolean;
  cgroup?: Cgroup;
  /** A line for the app's log, e.g. limits that could not be set. */
  notice?: string;
}

/**
 * The argv, env and cgroup a command runs with. With `spec.sandbox`: in its own cgroup `name` (entered
 * before exec), inside the sandbox with its cwd (the slug) read-only, as the app's uid. Without: the
 * command shell as deck runs it.
 */
export async function prepareLaunch(name: string, spec: LaunchSpec, opts: LaunchOptions): Promise<Launch> {
  const command = shellArgv(spec.command);
  if (!spec.sandbox) return { argv: command, env: { ...spec.env }, sandboxed: false, envOnFd: false };

  const host = opts.sandboxHost ?? (await loadSandboxHost());
  if (!host.setpriv) {
    throw new DeckError("sandbox_unavailable", `cannot run \`${spec.command}\`: setpriv is not installed, so it cannot run under its app's uid; install util-linux`);
  }
  const argv = sandboxArgv(host, { identity: spec.sandbox, cwd: spec.cwd, readOnly: [spec.cwd], hide: opts.hide }, command);
  const limits: CgroupLimits = {
    memoryBytes: spec.memoryBytes ?? opts.memoryBytes ?? DEFAULT_APP_MEMORY,
    cpus: spec.cpus ?? opts.cpus ?? 1,
    pidsMax: opts.pidsMax ?? DEFAULT_APP_PIDS,
  };
  const r = await createCgroup(name, limits, { parent: "deck/apps", root: opts.cgroupRoot });
  const launch = { env: sandboxEnv(host, spec.env), sandboxed: host.bwrap !== undefined, envOnFd: true };
  if (!r.ok) return { ...launch, argv, notice: `Running without memory/CPU/process limits: ${r.reason}` };
  return { ...launch, argv: cgroupEnterArgv(r.cgroup.procsFiles, argv), cgroup: r.cgroup };
}

/** A cgroup name for `id` that is unique per `scope` too: several deck servers (tests) share a machine. */
export function cgroupNameFor(scope: string, id: string): string {
  const hash = createHash("sha256").update(`${scope}\0${id}`).digest("hex").slice(0, 12);
  return `${id.slice(0, 80)}-${hash}`;
}
