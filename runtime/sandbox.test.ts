import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createCgroup } from "./cgroups.ts";
import { sandboxArgv, sandboxEnv, setprivArgv, probeSandbox, SANDBOX_HOME, type SandboxHost } from "./sandbox.ts";
import { freeTestIdentity, sandboxHostOrSkip } from "./sandbox-test-helpers.ts";
import { descendants, isProcessAlive, LAUNCHER_ENV, launchStdio, writeEnvPayload } from "./shim-lib.mjs";

const HOST: SandboxHost = {
  bwrap: "/usr/bin/bwrap",
  setpriv: "/usr/bin/setpriv",
  rootEntries: [{ path: "/bin", symlink: "usr/bin" }, { path: "/lib64", symlink: "usr/lib64" }, { path: "/lib" }],
  toolchains: ["/opt", "/root/.cargo"],
  toolchainEnv: { RUSTUP_HOME: "/root/.rustup" },
};
const ID = { uid: 70001, gid: 70002 };
// The uid drop, then the loader that takes the env from its pipe (as the app) and execs the command.
const DROP = [
  "/usr/bin/setpriv", "--reuid=70001", "--regid=70002", "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
  "/bin/bash", "-c", `while IFS= read -r -d '' kv; do export "$kv"; done <&3; exec 3<&-; exec "$@"`, "deck-env",
];

describe("sandboxArgv", () => {
  it("runs an app process in its own namespaces with its slug read-only and deck's data dir hidden", () => {
    const argv = sandboxArgv(HOST, { identity: ID, cwd: "/opt/deck/data/apps/a/slug", readOnly: ["/opt/deck/data/apps/a/slug"], hide: ["/opt/deck/data", "/var/lib/x"] }, ["/bin/bash", "-c", "node server.js"]);
    assert.deepEqual(argv, [
      "/usr/bin/bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
      "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib64", "/lib64", "--ro-bind", "/lib", "/lib",
      "--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
      "--perms", "0755", "--dir", "/home", "--perms", "1777", "--tmpfs", "/home/app",
      "--ro-bind", "/opt", "/opt", "--perms", "0755", "--dir", "/root", "--ro-bind", "/root/.cargo", "/root/.cargo",
      // The data dir lies under /opt, which is bound: it is covered; /var is not bound at all.
      "--perms", "0755", "--tmpfs", "/opt/deck/data",
      "--perms", "0755", "--dir", "/opt/deck/data/apps", "--perms", "0755", "--dir", "/opt/deck/data/apps/a",
      "--ro-bind", "/opt/deck/data/apps/a/slug", "/opt/deck/data/apps/a/slug",
      "--chdir", "/opt/deck/data/apps/a/slug", "--", ...DROP, "/bin/bash", "-c", "node server.js",
    ]);
  });

  it("binds a build's work and cache dirs writable", () => {
    const argv = sandboxArgv({ ...HOST, toolchains: [] }, { identity: ID, cwd: "/tmp/b/work", writable: ["/tmp/b/work", "/tmp/c"], home: "/h" }, ["npm", "ci"]);
    assert.deepEqual(argv.slice(argv.indexOf("/tmp") + 1), [
      "--perms", "1777", "--tmpfs", "/h",
      "--perms", "0755", "--dir", "/tmp/b", "--bind", "/tmp/b/work", "/tmp/b/work", "--bind", "/tmp/c", "/tmp/c",
      "--chdir", "/tmp/b/work", "--", ...DROP, "npm", "ci",
    ]);
  });

  it("drops to the app's uid with setpriv alone when the host has no bwrap", () => {
    assert.deepEqual(sandboxArgv({ ...HOST, bwrap: undefined }, { identity: ID, cwd: "/x", readOnly: ["/x"] }, ["id"]), [...DROP, "id"]);
  });

  it("refuses root and malformed identities", () => {
    assert.throws(() => setprivArgv("/usr/bin/setpriv", { uid: 0, gid: 70000 }), /refusing uid 0/);
    assert.throws(() => setprivArgv("/usr/bin/setpriv", { uid: 70000, gid: 0 }), /unprivileged/);
    assert.throws(() => setprivArgv("/usr/bin/setpriv", { uid: 1.5, gid: 7 }), /unprivileged/);
  });

  it("gives a sandboxed process its own home and /tmp and the toolchains' homes", () => {
    assert.deepEqual(sandboxEnv(HOST, { HOME: "/slug", PATH: "/usr/bin", RUSTUP_HOME: "/mine" }), { HOME: SANDBOX_HOME, TMPDIR: "/tmp", PATH: "/usr/bin", RUSTUP_HOME: "/mine" });
    assert.deepEqual(sandboxEnv({ ...HOST, bwrap: undefined }, { HOME: "/slug" }), { HOME: "/slug", RUSTUP_HOME: "/root/.rustup" });
  });
});

const { host, skip } = await sandboxHostOrSkip();

/** Runs a sandbox argv as deck does: the launcher with LAUNCHER_ENV, the command's env on its pipe. */
function runArgv(argv: string[], env: Record<string, string> = { PATH: "/usr/bin:/bin" }): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { env: { ...LAUNCHER_ENV }, stdio: launchStdio(true) });
    writeEnvPayload(child, env);
    let out = "";
    child.stdout!.on("data", (c) => (out += c));
    child.stderr!.on("data", (c) => (out += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe("the sandbox on this host", { skip }, () => {
  let root: string;
  let dataDir: string;
  let slug: string;
  const identity = freeTestIdentity();
  before(() => {
    root = mkdtempSync(join(tmpdir(), "deck-sandbox-"));
    // A toolchain dir with deck's data dir inside it: the worst case for hiding the data dir.
    dataDir = join(root, "tools", "data");
    slug = join(dataDir, "apps", "a", "slug");
    mkdirSync(join(dataDir, "keys"), { recursive: true });
    mkdirSync(slug, { recursive: true });
    // World-readable on purpose: only the sandbox keeps it from the app.
    writeFileSync(join(dataDir, "keys", "master.key"), "TOP-SECRET\n");
    chmodSync(join(dataDir, "keys", "master.key"), 0o644);
    writeFileSync(join(slug, "app.txt"), "the app's own file\n");
    chownSync(join(slug, "app.txt"), identity.uid, identity.gid);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const sandboxed = (script: string) => {
    const h = { ...host, toolchains: [...host.toolchains, join(root, "tools")] };
    const argv = sandboxArgv(h, { identity, cwd: slug, readOnly: [slug], hide: [dataDir] }, ["/bin/sh", "-c", script]);
    return runArgv(argv, sandboxEnv(h, { PATH: "/usr/bin:/bin" }));
  };

  it("runs as the app's uid with no capabilities and no way to gain privileges", async () => {
    const r = await sandboxed("id -u; id -g; id -G; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status");
    assert.equal(r.code, 0, r.out);
    const lines = r.out.trim().split("\n");
    assert.deepEqual(lines.slice(0, 3), [String(identity.uid), String(identity.gid), String(identity.gid)]);
    assert.match(r.out, /^CapEff:\s+0+$/m);
    assert.match(r.out, /^CapBnd:\s+0+$/m);
    assert.match(r.out, /^NoNewPrivs:\s+1$/m);
  });

  it("sees only its own processes and its own files", async () => {
    const r = await sandboxed(`ls /proc | grep -c '^[0-9]'; cat app.txt; cat ${dataDir}/keys/master.key; ls ${dataDir}; ls -A /root; ls /var/run/docker.sock; touch app.txt`);
    assert.doesNotMatch(r.out, /TOP-SECRET/);
    const lines = r.out.split("\n");
    assert.ok(Number(lines[0]) <= 5, `the sandbox sees ${lines[0]} processes`);
    assert.equal(lines[1], "the app's own file");
    assert.match(r.out, /master\.key: No such file or directory/);
    assert.match(r.out, new RegExp(`^apps$`, "m"), "the data dir shows only the path to the app's own dirs");
    assert.doesNotMatch(r.out, /^keys$/m);
    assert.match(r.out, /docker\.sock'?: No such file or directory/);
    assert.match(r.out, /touch: cannot touch 'app\.txt': Read-only file system/, "the app's own slug is read-only");
    for (const dir of host.toolchains.filter((t) => t.startsWith("/root/"))) assert.match(r.out, new RegExp(`^${dir.slice(6)}$`, "m"));
  });

  it("has a private writable /tmp and $HOME", async () => {
    const r = await sandboxed('echo a > /tmp/x && echo b > "$HOME/y" && cat /tmp/x "$HOME/y" && echo "$HOME" && ls /tmp');
    assert.equal(r.code, 0, r.out);
    // /tmp holds only what the process wrote, and the path to its own app dir.
    assert.deepEqual(r.out.trim().split("\n"), ["a", "b", SANDBOX_HOME, basename(root), "x"]);
  });

  it("dies with the process that started it", async () => {
    const inner = sandboxArgv(host, { identity, cwd: "/" }, ["sleep", "300"]);
    const parent = spawn("/bin/sh", ["-c", '"$@" & wait', "sh", ...inner], { stdio: "ignore", detached: true });
    let sleeper: number | undefined;
    for (let i = 0; i < 200 && sleeper === undefined; i++) {
      sleeper = descendants(parent.pid!).find((pid) => /sleep/.test(readComm(pid)));
      if (sleeper === undefined) await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(sleeper, "the sandboxed sleep started");
    process.kill(parent.pid!, "SIGKILL");
    for (let i = 0; i < 200 && isProcessAlive(sleeper!); i++) await new Promise((r) => setTimeout(r, 25));
    const alive = isProcessAlive(sleeper!);
    if (alive) process.kill(sleeper!, "SIGKILL");
    assert.equal(alive, false, "the sandboxed process died with its parent");
  });

  it("reports every protection as on, with the cgroup version", async () => {
    const probe = await createCgroup(`probe-${process.pid}`, { memoryBytes: 64 << 20, cpus: 1 });
    if (probe.ok) await probe.cgroup.remove();
    const protections = await probeSandbox();
    assert.deepEqual(protections.map((p) => p.name), ["app-uid", "sandbox", "cgroup-memory", "cgroup-cpu", "cgroup-pids"]);
    assert.ok(protections.slice(0, 2).every((p) => p.on), JSON.stringify(protections));
    if (probe.ok) assert.ok(protections.slice(2).every((p) => p.on && /^cgroup v[12]: /.test(p.detail)), JSON.stringify(protections));
  });
});

describe("probeSandbox without bwrap", () => {
  it("says the sandbox is off, why, and how to turn it on", async () => {
    const emptyPath = mkdtempSync(join(tmpdir(), "deck-nobwrap-"));
    try {
      const protections = await probeSandbox({ path: emptyPath, cgroups: { root: join(emptyPath, "none"), version: "v2" } });
      const sandbox = protections.find((p) => p.name === "sandbox")!;
      assert.equal(sandbox.on, false);
      assert.match(sandbox.detail, /^bwrap not found: /);
      assert.equal(sandbox.fix, "apt-get install bubblewrap");
      assert.equal(protections.find((p) => p.name === "app-uid")?.on, false);
      const memory = protections.find((p) => p.name === "cgroup-memory")!;
      assert.equal(memory.on, false);
      assert.match(memory.detail, /^cgroup v2: no memory limits/);
    } finally {
      rmSync(emptyPath, { recursive: true, force: true });
    }
  });
});

function readComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8");
  } catch {
    return "";
  }
}
