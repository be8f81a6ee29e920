import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../config/index.ts";
import { execCommand } from "./exec.ts";
import {
  cgroupEnterArgv, cpuQuotaUs, createBuildCgroup, describeOutOfMemory, formatBytes, resolveExecutable, runInCgroup, type BuildCgroup,
} from "./limits.ts";

const MB = 1024 * 1024;
const base = { cwd: tmpdir(), env: { PATH: process.env.PATH } };

describe("build limit helpers", () => {
  it("enters the cgroups with a shell that then execs the command in place", () => {
    assert.deepEqual(cgroupEnterArgv(["/cg/memory/x/cgroup.procs", "/cg/pids/x/cgroup.procs"], ["/usr/bin/npm", "ci", "--cache", "/c d"]), [
      "/bin/sh", "-c", 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"', "deck-build-cgroup",
      "/cg/memory/x/cgroup.procs", "/cg/pids/x/cgroup.procs", "--", "/usr/bin/npm", "ci", "--cache", "/c d",
    ]);
  });

  it("turns CPU cores into a CFS quota per 100 ms", () => {
    assert.equal(cpuQuotaUs(1), 100_000);
    assert.equal(cpuQuotaUs(0.5), 50_000);
    assert.equal(cpuQuotaUs(2), 200_000);
    assert.equal(cpuQuotaUs(0.001), 1000, "never below the kernel's minimum");
  });

  it("names the limit and the setting when a build runs out of memory", () => {
    assert.equal(formatBytes(256 * MB), "256 MB");
    assert.equal(formatBytes(1536 * MB), "1.5 GB");
    assert.equal(describeOutOfMemory({ memoryBytes: 256 * MB, cpus: 1 }), "build ran out of memory (limit 256 MB); raise DECK_BUILD_MEMORY or reduce the build's memory use");
  });

  it("finds commands on PATH like exec does", async () => {
    const dir = await mkdtemp(join(tmpdir(), "deck-path-"));
    try {
      await writeFile(join(dir, "tool"), "#!/bin/sh\n");
      await writeFile(join(dir, "data"), "not runnable");
      await chmod(join(dir, "tool"), 0o755);
      assert.equal(resolveExecutable("tool", `/nonexistent:${dir}`, "/"), join(dir, "tool"));
      assert.equal(resolveExecutable("data", dir, "/"), null);
      assert.equal(resolveExecutable("./tool", undefined, dir), join(dir, "tool"));
      assert.equal(resolveExecutable("deck-no-such-program", process.env.PATH, "/"), null);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reads DECK_BUILD_MEMORY and DECK_BUILD_CPUS", () => {
    const c = loadConfig({ env: { DECK_BUILD_MEMORY: "512m", DECK_BUILD_CPUS: "0.5" }, cwd: tmpdir() });
    assert.equal(c.buildMemory, 512 * MB);
    assert.equal(c.buildCpus, 0.5);
    assert.equal(loadConfig({ env: { DECK_BUILD_MEMORY: "1.5GiB" }, cwd: tmpdir() }).buildMemory, 1536 * MB);
    assert.throws(() => loadConfig({ env: { DECK_BUILD_MEMORY: "lots" }, cwd: tmpdir() }), /DECK_BUILD_MEMORY="lots" is not valid: expected a size of at least 32m/);
    assert.throws(() => loadConfig({ env: { DECK_BUILD_MEMORY: "1m" }, cwd: tmpdir() }), /DECK_BUILD_MEMORY/);
    assert.throws(() => loadConfig({ env: { DECK_BUILD_CPUS: "0" }, cwd: tmpdir() }), /DECK_BUILD_CPUS/);
  });

  it("reports why when cgroups cannot be created", async () => {
    const file = join(await mkdtemp(join(tmpdir(), "deck-nocg-")), "not-a-dir");
    await writeFile(file, "");
    const r = await createBuildCgroup("build-test", { memoryBytes: 64 * MB, cpus: 1 }, { root: file });
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, /ENOTDIR|EEXIST/);
  });
});

/*
 * Real limits on this machine's cgroup v1 hierarchy. CI runs as root on a machine that has it; elsewhere
 * (no cgroup v1, not root) these tests skip with the reason.
 */
const probe = await createBuildCgroup(`probe-${process.pid}`, { memoryBytes: 64 * MB, cpus: 1 });
if (probe.ok) await probe.cgroup.remove();
const noCgroups = probe.ok ? false : `cgroup v1 is not writable here: ${probe.reason}`;
if (noCgroups && process.env.CI === "true") throw new Error(`${noCgroups} (required when CI=true)`);

describe("build cgroups", { skip: noCgroups }, () => {
  let cgroup: BuildCgroup;
  const name = `build-test-${process.pid}`;
  before(async () => {
    const r = await createBuildCgroup(name, { memoryBytes: 64 * MB, cpus: 0.25, pidsMax: 40 });
    assert.ok(r.ok, r.ok ? "" : r.reason);
    cgroup = r.cgroup;
  });
  after(async () => {
    await cgroup?.remove();
  });

  it("writes the limits", () => {
    assert.equal(readFileSync(join(cgroup.dirs.memory, "memory.limit_in_bytes"), "utf8").trim(), String(64 * MB));
    assert.equal(readFileSync(join(cgroup.dirs.cpu, "cpu.cfs_quota_us"), "utf8").trim(), "25000");
    assert.equal(readFileSync(join(cgroup.dirs.cpu, "cpu.cfs_period_us"), "utf8").trim(), "100000");
    assert.equal(readFileSync(join(cgroup.dirs.pids, "pids.max"), "utf8").trim(), "40");
  });

  it("puts every command the builder runs into the build's cgroup", async () => {
    const lines: string[] = [];
    const r = await runInCgroup(cgroup, () => execCommand(["cat", "/proc/self/cgroup"], { ...base, onLine: (l) => lines.push(l) }));
    assert.equal(r.exitCode, 0);
    for (const c of ["memory", "cpu", "pids"]) {
      assert.ok(lines.some((l) => new RegExp(`:(?:[a-z_]+,)*${c}(?:,[a-z_]+)*:/deck/${name}$`).test(l)), `${c}: ${lines.join(" | ")}`);
    }
    const outside: string[] = [];
    await execCommand(["cat", "/proc/self/cgroup"], { ...base, onLine: (l) => outside.push(l) });
    assert.ok(!outside.some((l) => l.includes(name)), "a command outside the build stays outside");
    const missing = await runInCgroup(cgroup, () => execCommand(["deck-no-such-program"], base));
    assert.equal(missing.spawnError?.code, "ENOENT", "a missing program is still reported as such");
  });

  it("stops a build that allocates past its memory limit, and says so", async () => {
    assert.equal(await cgroup.outOfMemory(), false);
    const hog = "const a = []; for (let i = 0; i < 40; i++) { const b = Buffer.alloc(8 << 20); b.fill(1); a.push(b); } console.log('survived');";
    const lines: string[] = [];
    const r = await runInCgroup(cgroup, () => execCommand(["node", "-e", hog], { ...base, onLine: (l) => lines.push(l) }));
    assert.equal(r.exitSignal, "SIGKILL");
    assert.ok(!lines.includes("survived"));
    assert.equal(await cgroup.outOfMemory(), true);
  });

  it("holds a busy loop to its CPU share", async () => {
    // 1.2 s of wall-clock time at a quarter of a core is about 0.3 s of CPU.
    const spin = "const t = Date.now(); while (Date.now() - t < 1200); const u = process.cpuUsage(); console.log((u.user + u.system) / 1000);";
    const lines: string[] = [];
    const r = await runInCgroup(cgroup, () => execCommand(["node", "-e", spin], { ...base, onLine: (l) => lines.push(l) }));
    assert.equal(r.exitCode, 0);
    const cpuMs = Number(lines.at(-1));
    assert.ok(cpuMs < 700, `used ${cpuMs} ms of CPU in 1200 ms at 0.25 cores`);
  });

  it("caps the number of processes", async () => {
    const lines: string[] = [];
    const r = await runInCgroup(cgroup, () => execCommand(["sh", "-c", "for i in $(seq 60); do sleep 5 & done; wait"], { ...base, onLine: (l) => lines.push(l) }));
    assert.ok(lines.some((l) => /fork|Resource temporarily unavailable|Cannot/i.test(l)), lines.join("\n"));
    assert.notEqual(r.exitCode, null);
  });

  it("kills what escaped the build's process group when it is removed", async () => {
    const r = await createBuildCgroup(`${name}-escape`, { memoryBytes: 64 * MB, cpus: 1 });
    assert.ok(r.ok);
    const pidFile = join(tmpdir(), `deck-escape-${process.pid}`);
    // setsid puts the sleeper in a session and group of its own, out of reach of the group kill.
    const started = await runInCgroup(r.cgroup, () => execCommand(["sh", "-c", `setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $! > ${pidFile}`], base));
    assert.equal(started.exitCode, 0);
    const pid = Number(readFileSync(pidFile, "utf8"));
    await rm(pidFile, { force: true });
    try {
      assert.ok(existsSync(`/proc/${pid}`), "the escaped process runs after its build command ended");
      await r.cgroup.remove();
      assert.equal(existsSync(r.cgroup.dirs.memory), false);
      const deadline = Date.now() + 3000;
      while (isRunning(pid) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
      assert.equal(isRunning(pid), false, "removing the cgroup killed it");
    } finally {
      if (isRunning(pid)) process.kill(pid, "SIGKILL");
    }
  });
});

function isRunning(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").pop()?.[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}
