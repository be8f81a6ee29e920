import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cgroupDirs, createCgroup, detectCgroupVersion, probeCgroupControllers } from "./cgroups.ts";

const MB = 1024 * 1024;

/** A directory laid out like a cgroup v2 mount: the root lists its controllers. */
function fakeV2Root(controllers = "cpuset cpu io memory pids"): string {
  const root = mkdtempSync(join(tmpdir(), "deck-cgroup2-"));
  writeFileSync(join(root, "cgroup.controllers"), `${controllers}\n`);
  return root;
}

describe("cgroup layouts", () => {
  it("detects the unified hierarchy by its cgroup.controllers, and v1 otherwise", async () => {
    const v2 = fakeV2Root();
    const v1 = mkdtempSync(join(tmpdir(), "deck-cgroup1-"));
    try {
      assert.equal(await detectCgroupVersion(v2), "v2");
      assert.equal(await detectCgroupVersion(v1), "v1");
    } finally {
      rmSync(v2, { recursive: true, force: true });
      rmSync(v1, { recursive: true, force: true });
    }
  });

  it("puts a v1 cgroup under each controller and a v2 cgroup in one directory", () => {
    assert.deepEqual(cgroupDirs("v1", "/cg", "deck/apps", "a.1"), { memory: "/cg/memory/deck/apps/a.1", cpu: "/cg/cpu/deck/apps/a.1", pids: "/cg/pids/deck/apps/a.1" });
    assert.deepEqual(cgroupDirs("v2", "/cg", "deck/apps", "a.1"), { memory: "/cg/deck/apps/a.1", cpu: "/cg/deck/apps/a.1", pids: "/cg/deck/apps/a.1" });
  });
});

describe("cgroup v2", () => {
  let root: string;
  before(() => {
    root = fakeV2Root();
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it("hands the controllers down every level and writes the limits in v2's files", async () => {
    const r = await createCgroup("web.1", { memoryBytes: 256 * MB, cpus: 0.5, pidsMax: 100 }, { root, parent: "deck/apps" });
    assert.ok(r.ok, r.ok ? "" : r.reason);
    const dir = join(root, "deck", "apps", "web.1");
    assert.equal(r.cgroup.version, "v2");
    assert.deepEqual(r.cgroup.procsFiles, [join(dir, "cgroup.procs")]);
    assert.equal(r.cgroup.oomFile, join(dir, "memory.events"));
    assert.equal(readFileSync(join(dir, "memory.max"), "utf8"), String(256 * MB));
    assert.equal(readFileSync(join(dir, "cpu.max"), "utf8"), "50000 100000");
    assert.equal(readFileSync(join(dir, "pids.max"), "utf8"), "100");
    // A plain directory keeps only the last write; the kernel accumulates them. Each level got all three.
    for (const level of [root, join(root, "deck"), join(root, "deck", "apps")]) {
      assert.equal(readFileSync(join(level, "cgroup.subtree_control"), "utf8"), "+pids", level);
    }
    assert.equal(existsSync(join(dir, "cgroup.subtree_control")), false, "the leaf holds processes, not children");

    assert.equal(await r.cgroup.outOfMemory(), false);
    writeFileSync(join(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
    assert.equal(await r.cgroup.outOfMemory(), true);
  });

  it("turns off swap for the group when the kernel has swap accounting", async () => {
    mkdirSync(join(root, "deck", "swap"), { recursive: true });
    writeFileSync(join(root, "deck", "swap", "memory.swap.max"), "max");
    const r = await createCgroup("swap", { memoryBytes: 64 * MB, cpus: 1 }, { root });
    assert.ok(r.ok);
    assert.equal(readFileSync(join(root, "deck", "swap", "memory.swap.max"), "utf8"), "0");
    assert.equal(readFileSync(join(root, "deck", "swap", "pids.max"), "utf8"), "4096");
  });

  it("names a controller the kernel does not offer", async () => {
    const partial = fakeV2Root("cpu memory");
    try {
      const probes = await probeCgroupControllers({ root: partial });
      assert.deepEqual(probes.map((p) => [p.controller, p.version, p.ok]), [["memory", "v2", true], ["cpu", "v2", true], ["pids", "v2", false]]);
      assert.match(probes[2].reason!, /the kernel offers no pids controller/);
    } finally {
      rmSync(partial, { recursive: true, force: true });
    }
  });
});

/* The real hierarchy of this machine (v1 here; v2 where the host boots with it). CI runs as root. */
const probe = await createCgroup(`probe-${process.pid}`, { memoryBytes: 64 * MB, cpus: 1 });
if (probe.ok) await probe.cgroup.remove();
const noCgroups = probe.ok ? false : `cgroups are not writable here: ${probe.reason}`;
if (noCgroups && process.env.CI === "true") throw new Error(`${noCgroups} (required when CI=true)`);

describe("cgroups on this host", { skip: noCgroups }, () => {
  it("probes every controller as usable", async () => {
    const probes = await probeCgroupControllers();
    assert.deepEqual(probes.map((p) => [p.controller, p.ok]), [["memory", true], ["cpu", true], ["pids", true]]);
    assert.equal(probes[0].version, await detectCgroupVersion());
  });

  it("creates a nested app cgroup with its limits and removes it", async () => {
    const r = await createCgroup(`test-${process.pid}`, { memoryBytes: 96 * MB, cpus: 0.5, pidsMax: 50 }, { parent: "deck/apps" });
    assert.ok(r.ok, r.ok ? "" : r.reason);
    try {
      const file = r.cgroup.version === "v2" ? join(r.cgroup.dirs.memory, "memory.max") : join(r.cgroup.dirs.memory, "memory.limit_in_bytes");
      assert.equal(readFileSync(file, "utf8").trim(), String(96 * MB));
      assert.equal(readFileSync(join(r.cgroup.dirs.pids, "pids.max"), "utf8").trim(), "50");
    } finally {
      await r.cgroup.remove();
    }
    for (const dir of Object.values(r.cgroup.dirs)) assert.equal(existsSync(dir), false);
  });
});
