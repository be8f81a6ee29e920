import { execFile } from "node:child_process";
import { accessSync, constants, lstatSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import type { SandboxIdentity } from "../core/interfaces.ts";
import { probeCgroupControllers, type CgroupOptions } from "./cgroups.ts";
import { SANDBOX_ENV_FD } from "./shim-lib.mjs";
import type { Protection } from "./protections.ts";

/**
 * The sandbox every build step, release command and app process of an app runs in (process runtime):
 * bubblewrap, started as root WITHOUT a user namespace (so it can bind toolchains under /root, which
 * is mode 700), gives the process new mount, pid, ipc and uts namespaces; inside, `setpriv` drops to
 * the app's own uid/gid with no supplementary groups, no capabilities and no new privileges before
 * the command runs. Paths are bound at the same absolute path inside, so virtualenvs, shebangs and the
 * working directory keep working. (`bwrap --unshare-user --uid N` run as root would map N to root
 * outside and keep root's file access: the uid is dropped by setpriv instead.)
 *
 * Without bwrap the process still runs under its uid via setpriv, without the mount/pid sandbox; the
 * probe (`probeSandbox`, `deck doctor`) says so.
 */

/** The private, writable $HOME of a sandboxed process (a tmpfs; nothing in it outlives the process). */
export const SANDBOX_HOME = "/home/app";

/** What this host offers the sandbox; found once by `loadSandboxHost`. */
export interface SandboxHost {
  /** Absolute path of bwrap when it starts sandboxes here; unset = uid drop only. */
  bwrap?: string;
  /** `bubblewrap 0.8.0`, when found. */
  bwrapVersion?: string;
  /** Why bwrap is not used: not installed, or it failed to start a sandbox. */
  bwrapOff?: string;
  /** Absolute path of setpriv; unset = processes cannot be started under an app's uid. */
  setpriv?: string;
  /** Top-level entries besides /usr: a symlink (merged /usr: `/bin -> usr/bin`) or a real directory. */
  rootEntries: Array<{ path: string; symlink?: string }>;
  /** Toolchain directories outside /usr and /etc, bound read-only: /opt, ~/.cargo, ~/.rustup, ~/.pyenv, PATH entries. */
  toolchains: string[];
  /** Variables toolchains under deck's home need once $HOME is the sandbox's own (RUSTUP_HOME, PYENV_ROOT). */
  toolchainEnv: Record<string, string>;
}

export interface SandboxSpec {
  identity: SandboxIdentity;
  /** Working directory inside (the same path as outside). */
  cwd: string;
  /** Private writable home (a tmpfs); default SANDBOX_HOME. */
  home?: string;
  /** The app's own directories, read-only (an app process's slug). */
  readOnly?: readonly string[];
  /** The app's own directories, writable (a build's work dir and cache dir). */
  writable?: readonly string[];
  /** Directories that must stay invisible even where they lie under a bound directory (deck's data dir). */
  hide?: readonly string[];
}

/** Where deck itself is installed. */
const DECK_ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

const ROOT_ENTRIES = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

export function setprivArgv(setpriv: string, identity: SandboxIdentity): string[] {
  const { uid, gid } = checkIdentity(identity);
  return [setpriv, `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"];
}

function checkIdentity(identity: SandboxIdentity): SandboxIdentity {
  const ok = (n: number) => Number.isInteger(n) && n > 0 && n < 2 ** 32 - 1;
  if (!ok(identity.uid) || !ok(identity.gid)) {
    throw new Error(`sandbox: refusing uid ${identity.uid} / gid ${identity.gid}: an app's identity must be an unprivileged uid and gid`);
  }
  return identity;
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let p = dirname(path); p !== "/"; p = dirname(p)) out.unshift(p);
  return out;
}

/**
 * The argv that runs `command` in the sandbox: bwrap's mounts, then setpriv's uid drop. Pure: every
 * fact about the host comes in `host`. Mount order matters: later mounts go on top of earlier ones.
 */
export function sandboxArgv(host: SandboxHost, spec: SandboxSpec, command: readonly string[]): string[] {
  if (command.length === 0) throw new Error("sandboxArgv: empty command");
  if (!host.setpriv) throw new Error("sandboxArgv: setpriv is not available on this host");
  const drop = [...setprivArgv(host.setpriv, spec.identity), ...envLoaderArgv()];
  if (!host.bwrap) return [...drop, ...command];

  const argv = [host.bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"];
  // Each mount point, with whether it shows the host's directory (a bind) or starts empty (a tmpfs).
  const mounts: Array<{ path: string; bind: boolean }> = [{ path: "/", bind: false }];
  const mount = (path: string, bind: boolean, ...args: string[]) => {
    makeParents(path);
    argv.push(...args);
    mounts.push({ path, bind });
  };
  // A mount point's parents that are not on a bound host directory have to be made, traversable by
  // the app's uid (bwrap would make them 0700 like the host's /root).
  const makeParents = (path: string) => {
    for (const parent of ancestors(path)) {
      const inner = mounts.filter((m) => isUnder(parent, m.path)).sort((a, b) => b.path.length - a.path.length)[0];
      if (inner.path === parent || inner.bind) continue;
      argv.push("--perms", "0755", "--dir", parent);
      mounts.push({ path: parent, bind: false });
    }
  };

  mount("/usr", true, "--ro-bind", "/usr", "/usr");
  for (const entry of host.rootEntries) {
    if (entry.symlink !== undefined) argv.push("--symlink", entry.symlink, entry.path);
    else mount(entry.path, true, "--ro-bind", entry.path, entry.path);
  }
  mount("/etc", true, "--ro-bind", "/etc", "/etc");
  argv.push("--proc", "/proc", "--dev", "/dev");
  mount("/tmp", false, "--perms", "1777", "--tmpfs", "/tmp");
  const home = spec.home ?? SANDBOX_HOME;
  mount(home, false, "--perms", "1777", "--tmpfs", home);
  for (const dir of host.toolchains) mount(dir, true, "--ro-bind", dir, dir);
  const bound = ["/usr", "/etc", ...host.rootEntries.filter((e) => e.symlink === undefined).map((e) => e.path), ...host.toolchains];
  for (const dir of spec.hide ?? []) {
    if (bound.some((b) => isUnder(dir, b))) mount(dir, false, "--perms", "0755", "--tmpfs", dir);
  }
  for (const dir of spec.readOnly ?? []) mount(dir, true, "--ro-bind", dir, dir);
  for (const dir of spec.writable ?? []) mount(dir, true, "--bind", dir, dir);
  argv.push("--chdir", spec.cwd, "--", ...drop, ...command);
  return argv;
}

/**
 * Runs after the uid drop, as the app: exports the NUL-separated `KEY=value` entries arriving on
 * SANDBOX_ENV_FD, closes it and execs the command. Everything before it in the chain runs as root with
 * LAUNCHER_ENV only, so the app's env (LD_PRELOAD …) never reaches a root process, and its values
 * appear in no argv.
 */
export function envLoaderArgv(): string[] {
  const fd = SANDBOX_ENV_FD;
  return ["/bin/bash", "-c", `while IFS= read -r -d '' kv; do export "$kv"; done <&${fd}; exec ${fd}<&-; exec "$@"`, "deck-env"];
}

/** `env` as a sandboxed process sees it: its own home and /tmp, and what toolchains under deck's home need. */
export function sandboxEnv(host: SandboxHost, env: Record<string, string>, home = SANDBOX_HOME): Record<string, string> {
  const out = { ...env };
  for (const [name, value] of Object.entries(host.toolchainEnv)) out[name] ??= value;
  // Without the mount sandbox there is no private home: the process keeps the HOME it was given.
  if (host.bwrap) {
    out.HOME = home;
    out.TMPDIR = "/tmp";
  }
  return out;
}

// ---------- the host ----------

export interface LoadSandboxHostOptions {
  /** deck's PATH: where bwrap and setpriv are looked up, and whose entries outside /usr are bound. */
  path?: string;
  /** deck's home, whose .cargo, .rustup and .pyenv are bound when they exist. */
  home?: string;
  /** deck's env, for RUSTUP_HOME / PYENV_ROOT when they are set. */
  env?: Record<string, string | undefined>;
  /** Look again instead of using what an earlier call found. */
  refresh?: boolean;
}

let cached: Promise<SandboxHost> | undefined;

/** What this host offers the sandbox; bwrap is tried once for real (a host may have it but forbid namespaces). */
export function loadSandboxHost(opts: LoadSandboxHostOptions = {}): Promise<SandboxHost> {
  if (!cached || opts.refresh) cached = inspectHost(opts);
  return cached;
}

async function inspectHost(opts: LoadSandboxHostOptions): Promise<SandboxHost> {
  const env = opts.env ?? process.env;
  const path = opts.path ?? env.PATH ?? "/usr/local/bin:/usr/bin:/bin";
  const home = opts.home ?? homedir();
  const host: SandboxHost = {
    setpriv: findProgram("setpriv", path),
    rootEntries: readRootEntries(),
    toolchains: findToolchains(path, home),
    toolchainEnv: {},
  };
  const rustup = env.RUSTUP_HOME ?? join(home, ".rustup");
  const pyenv = env.PYENV_ROOT ?? join(home, ".pyenv");
  if (isDirectory(rustup)) host.toolchainEnv.RUSTUP_HOME = rustup;
  if (isDirectory(pyenv)) host.toolchainEnv.PYENV_ROOT = pyenv;

  const bwrap = findProgram("bwrap", path);
  if (!bwrap) {
    host.bwrapOff = "bwrap not found";
    return host;
  }
  const version = await run([bwrap, "--version"]);
  host.bwrapVersion = version.ok ? version.stdout.trim() : "bubblewrap";
  if (!host.setpriv) {
    host.bwrapOff = "setpriv not found";
    return host;
  }
  const idPath = findProgram("id", path);
  const trial = idPath && (await run(sandboxArgv({ ...host, bwrap }, { identity: PROBE_IDENTITY, cwd: "/" }, [idPath, "-u"])));
  if (!trial) host.bwrapOff = "bwrap not tried: no `id` program to test it with";
  else if (!trial.ok) host.bwrapOff = `bwrap cannot start a sandbox here (${trial.error})`;
  else if (trial.stdout.trim() !== String(PROBE_IDENTITY.uid)) host.bwrapOff = `a sandboxed process ran as uid ${trial.stdout.trim()}, not ${PROBE_IDENTITY.uid}`;
  else host.bwrap = bwrap;
  return host;
}

/** `nobody`: the trial run needs an unprivileged uid that is not any app's. */
const PROBE_IDENTITY: SandboxIdentity = { uid: 65534, gid: 65534 };

function findProgram(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      // The real path: /bin/x on a merged-/usr host is /usr/bin/x, which is what is bound inside.
      return realpathSync(candidate);
    } catch {
      // not here
    }
  }
  return undefined;
}

function readRootEntries(): SandboxHost["rootEntries"] {
  const out: SandboxHost["rootEntries"] = [];
  for (const path of ROOT_ENTRIES) {
    try {
      const st = lstatSync(path);
      if (st.isSymbolicLink()) out.push({ path, symlink: readlinkSync(path) });
      else if (st.isDirectory()) out.push({ path });
    } catch {
      // absent on this host
    }
  }
  return out;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * /opt, deck's ~/.cargo, ~/.rustup, ~/.pyenv, and each PATH entry not already under a bound directory.
 * Top-level directories other than /opt (and deck's home itself) are never bound whole.
 */
export function findToolchains(path: string, home: string): string[] {
  const candidates = ["/opt", join(home, ".cargo"), join(home, ".rustup"), join(home, ".pyenv"), ...path.split(delimiter)];
  const out: string[] = [];
  for (const dir of candidates) {
    if (!isAbsolute(dir) || dir === home || (dirname(dir) === "/" && dir !== "/opt")) continue;
    // deck's own install (npm puts its node_modules/.bin on PATH) and temp dirs are no toolchain of the app's.
    if (isUnder(dir, DECK_ROOT) || isUnder(dir, tmpdir())) continue;
    const covered = ["/usr", "/etc", ...ROOT_ENTRIES, ...out].some((b) => isUnder(dir, b));
    if (!covered && isDirectory(dir)) out.push(dir);
  }
  return out;
}

type RunResult = { ok: true; stdout: string } | { ok: false; error: string };

function run(argv: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { cwd: "/", env: { PATH: "/usr/bin:/bin" }, timeout: 10_000 }, (err, stdout, stderr) => {
      if (!err) resolve({ ok: true, stdout });
      else resolve({ ok: false, error: stderr.trim().split("\n").pop() || err.message.split("\n")[0] });
    });
  });
}

// ---------- the probe ----------

export interface ProbeSandboxOptions extends LoadSandboxHostOptions {
  /** Where cgroups are mounted (tests point it at a directory laid out like one). */
  cgroups?: Pick<CgroupOptions, "root" | "version">;
}

const CONTROLLER_LIMIT = { memory: "memory", cpu: "CPU", pids: "process-count" } as const;

/**
 * Every protection of the process runtime, on or off, each with the reason and the fix: the uid drop,
 * the bubblewrap sandbox (tried for real, once) and one line per cgroup controller for app limits.
 */
export async function probeSandbox(opts: ProbeSandboxOptions = {}): Promise<Protection[]> {
  // Looked at afresh, and not cached: the probe may be asked about another PATH than deck runs with.
  const host = await inspectHost(opts);
  const out: Protection[] = [];
  out.push(
    host.setpriv
      ? { name: "app-uid", on: true, detail: "builds, release commands and app processes run under their app's own uid, with no capabilities and no new privileges" }
      : { name: "app-uid", on: false, detail: "setpriv not found: sandboxed processes cannot start", fix: "apt-get install util-linux" },
  );
  out.push(
    host.bwrap
      ? { name: "sandbox", on: true, detail: `${host.bwrapVersion}: own mount, pid, ipc and uts namespaces; system directories read-only; no view of deck's data dir or other apps` }
      : {
          name: "sandbox",
          on: false,
          detail: `${host.bwrapOff}: processes run under their app's uid but see the host's files and processes`,
          fix: host.bwrapOff === "bwrap not found" ? "apt-get install bubblewrap" : "run deck as root on a kernel that allows mount and pid namespaces",
        },
  );
  for (const probe of await probeCgroupControllers(opts.cgroups)) {
    const name = `cgroup-${probe.controller}`;
    const limit = CONTROLLER_LIMIT[probe.controller];
    out.push(
      probe.ok
        ? { name, on: true, detail: `cgroup ${probe.version}: ${limit} limits for builds and app processes` }
        : {
            name,
            on: false,
            detail: `cgroup ${probe.version}: no ${limit} limits for builds and app processes (${probe.reason})`,
            fix: probe.version === "v2"
              ? `run deck as root and enable the controller: echo +${probe.controller} > /sys/fs/cgroup/cgroup.subtree_control`
              : `run deck as root with the cgroup v1 ${probe.controller} controller mounted at /sys/fs/cgroup/${probe.controller}`,
          },
    );
  }
  return out;
}
