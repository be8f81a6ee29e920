import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ProcessSpec } from "../core/interfaces.ts";
import { createCgroup } from "./cgroups.ts";
import { findFreePort } from "./free-port.ts";
import { ProcessRuntime } from "./process-runtime.ts";
import { freeTestIdentity, sandboxHostOrSkip } from "./sandbox-test-helpers.ts";
import { SANDBOX_HOME } from "./sandbox.ts";
import { descendants, isProcessAlive } from "./shim-lib.mjs";

// An app that reports what it can see from inside its sandbox.
const SERVER_JS = `
const http = require("http");
const fs = require("fs");
process.on("SIGTERM", () => { console.log("got SIGTERM"); process.exit(0); });
http.createServer((req, res) => {
  res.end(JSON.stringify({
    uid: process.getuid(), gid: process.getgid(), home: process.env.HOME, secret: process.env.SECRET,
    pids: fs.readdirSync("/proc").filter((e) => /^\\d+$/.test(e)).length,
    stateDir: fs.existsSync(process.env.STATE_DIR),
  }));
}).listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
`;
const HOG_JS = "const a = []; for (;;) { const b = Buffer.alloc(8 << 20); b.fill(1); a.push(b); }";
const SECRET = "s3cr3t-value-that-must-stay-in-memory";
const MB = 1024 * 1024;

const { host, skip } = await sandboxHostOrSkip();
const cgroupProbe = skip ? undefined : await createCgroup(`probe-${process.pid}`, { memoryBytes: 64 * MB, cpus: 1 });
if (cgroupProbe?.ok) await cgroupProbe.cgroup.remove();

type Seen = { uid: number; gid: number; home: string; secret: string; pids: number; stateDir: boolean };

async function get(port: number): Promise<Seen | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
    return (await res.json()) as Seen;
  } catch {
    return undefined;
  }
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("ProcessRuntime with a sandbox", { skip }, () => {
  let root: string;
  let appDir: string;
  let stateDir: string;
  let logFile: string;
  let runtime: ProcessRuntime;
  let generation = 0;
  const identity = freeTestIdentity();

  before(() => {
    root = mkdtempSync(join(tmpdir(), "deck-sandboxed-"));
    appDir = join(root, "slug");
    stateDir = join(root, "run", "procs");
    logFile = join(root, "logs", "demo.log");
    mkdirSync(appDir, { recursive: true });
    writeFileSync(join(appDir, "server.js"), SERVER_JS);
    writeFileSync(join(appDir, "hog.js"), HOG_JS);
    runtime = new ProcessRuntime({ stateDir, memoryBytes: 128 * MB, hide: [root] });
  });
  after(async () => {
    await runtime.stopAll(0).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });

  async function spec(extra: Partial<ProcessSpec> = {}): Promise<ProcessSpec> {
    generation += 1;
    return {
      app: "demo", release: 1, generation, type: "web", index: 1, command: `"${process.execPath}" server.js`, cwd: appDir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: appDir, SECRET, STATE_DIR: stateDir }, port: await findFreePort(), logFile,
      sandbox: identity, ...extra,
    };
  }

  it("runs the process as its app's uid, alone, with a private home and no view of deck's files", async () => {
    const s = await spec();
    const info = await runtime.start(s);
    const seen = await waitFor("the app to answer", () => get(s.port!));
    assert.equal(seen.uid, identity.uid);
    assert.equal(seen.gid, identity.gid);
    assert.equal(seen.home, SANDBOX_HOME);
    assert.equal(seen.secret, SECRET, "the config reaches the process");
    assert.ok(seen.pids <= 3, `the process sees ${seen.pids} processes`);
    assert.equal(seen.stateDir, false, "the state dir is invisible");
    await runtime.stop(info.id, 5000);
    assert.match(readFileSync(logFile, "utf8"), /app\[web\.1\]: got SIGTERM$/m, "a stop reaches the app as SIGTERM, not as the sandbox's SIGKILL");
  });

  it("hands the config to no root process: LD_PRELOAD and the rest reach the app's uid only", async () => {
    // A loader variable in the config must not run tenant code in the launcher's root processes
    // (cgroup wrapper, bwrap, setpriv): only processes under the app's uid may carry the app's env.
    const s = await spec({ env: { ...(await spec()).env, LD_PRELOAD: "/nonexistent/deck-test.so" } });
    const info = await runtime.start(s);
    const seen = await waitFor("the app to answer", () => get(s.port!));
    assert.equal(seen.secret, SECRET, "the config reaches the process");
    const chain = [info.pid!, ...descendants(info.pid!)];
    const withEnv = chain.map((pid) => {
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
      const environ = readFileSync(`/proc/${pid}/environ`, "utf8");
      return { pid, uid, secret: environ.includes(SECRET), preload: environ.includes("LD_PRELOAD=") };
    });
    assert.ok(withEnv.some((p) => p.uid === identity.uid && p.secret && p.preload), JSON.stringify(withEnv));
    assert.deepEqual(withEnv.filter((p) => p.uid !== identity.uid && (p.secret || p.preload)), [], "a root process of the launch holds the app's env");
    await runtime.stop(info.id, 5000);
  });

  it("never writes the config to disk: spec and state files hold key names at most, readable by root only", async () => {
    const s = await spec();
    const info = await runtime.start(s);
    await waitFor("the app to answer", () => get(s.port!));
    const files = readdirSync(stateDir);
    assert.ok(files.includes(`${info.id}.spec.json`) && files.includes(`${info.id}.json`), files.join(", "));
    for (const file of files) {
      const text = readFileSync(join(stateDir, file), "utf8");
      assert.ok(!text.includes(SECRET), `${file} holds a config value`);
      assert.equal(statSync(join(stateDir, file)).mode & 0o077, 0, `${file} is readable by others`);
    }
    const envKeys: string[] = JSON.parse(readFileSync(join(stateDir, `${info.id}.spec.json`), "utf8")).spec.envKeys;
    assert.ok(["HOME", "PATH", "PORT", "SECRET", "STATE_DIR"].every((k) => envKeys.includes(k)), envKeys.join(", "));
    assert.equal(statSync(stateDir).mode & 0o777, 0o700);

    // A new runtime (deck restarted) adopts it; the shim restarts a crashed app with the env it holds in memory.
    const adopter = new ProcessRuntime({ stateDir, hide: [root] });
    const [adopted] = await adopter.adopt();
    assert.equal(adopted.id, info.id);
    const inside = descendants(adopted.pid!);
    for (const pid of inside) {
      // Killing one process of the sandbox may take the rest with it (--die-with-parent).
      try { process.kill(pid, "SIGKILL"); } catch (error) { if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error; }
    }
    const restarted = await waitFor("the shim to restart the app", async () => {
      const [p] = await adopter.list("demo");
      return p && p.state === "running" && p.restarts === 1 ? p : undefined;
    });
    const seen = await waitFor("the restarted app to answer", () => get(s.port!));
    assert.equal(seen.secret, SECRET, "the restarted app has its config");
    await adopter.stop(restarted.id, 5000);
    assert.equal(isProcessAlive(restarted.pid!), false);
    assert.deepEqual(readdirSync(stateDir), []);
  });

  it("without bwrap, still runs the process under its app's uid", async () => {
    // Without the mount sandbox the process reaches its slug through the host's directories.
    chmodSync(root, 0o711);
    const noBwrap = new ProcessRuntime({ stateDir: join(root, "run", "procs-nobwrap"), sandboxHost: { ...host, bwrap: undefined } });
    const ownLog = join(root, "logs", "no-bwrap.log");
    const s = await spec({ logFile: ownLog });
    const info = await noBwrap.start(s);
    try {
      const seen = await waitFor("the app to answer", () => get(s.port!));
      assert.equal(seen.uid, identity.uid);
      assert.equal(seen.home, appDir, "no private home without the sandbox: the given HOME is kept");
      assert.equal(seen.secret, SECRET);
    } finally {
      await noBwrap.stop(info.id, 5000);
    }
    assert.match(readFileSync(ownLog, "utf8"), /app\[web\.1\]: got SIGTERM$/m);
  });

  it("has the kernel stop a process over its memory limit, and restarts it", { skip: cgroupProbe?.ok ? false : `no cgroups here: ${cgroupProbe && !cgroupProbe.ok ? cgroupProbe.reason : ""}` }, async () => {
    const s = await spec({ type: "worker", port: undefined, command: `"${process.execPath}" hog.js`, memoryBytes: 64 * MB });
    const info = await runtime.start(s);
    const record = await runtime.inspect(info.id);
    const dirs = record!.cgroupDirs!;
    assert.ok(dirs.length > 0 && dirs.every((d) => existsSync(d)), "the process has its own cgroup");
    const memoryDir = dirs.find((d) => d.includes("/memory/")) ?? dirs[0];
    const limitFile = existsSync(join(memoryDir, "memory.max")) ? "memory.max" : "memory.limit_in_bytes";
    assert.equal(readFileSync(join(memoryDir, limitFile), "utf8").trim(), String(64 * MB));
    await waitFor("a restart after the kernel's kill", async () => ((await runtime.list("demo"))[0]?.restarts ?? 0) >= 1 || undefined);
    assert.match(readFileSync(logFile, "utf8"), /deck\[worker\.1\]: Process exited with .* \(out of memory: over its limit of 64 MB\); restarting in 1s$/m);
    await runtime.stop(info.id, 1000);
    assert.ok(dirs.every((d) => !existsSync(d)), "the cgroup is removed with the process");
  });
});
