/**
 * `deck doctor` lists every protection that keeps tenants apart, on or off, one line each, and exits 1
 * when any is off; `deck server` names each one that is off at start-up with how to turn it on. Both
 * run for real here: the doctor against a fresh data dir and against a running deck's, the server with
 * an nft that refuses like a kernel without nf_tables.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { networkTableFor, removeNetworkRules } from "../runtime/network-rules.ts";
import { Deck, ROOT, run } from "./helpers/deck.ts";

const DECK = join(ROOT, "bin", "deck");
/** Every protection deck checks on the process runtime, in the order the doctor prints them. */
const NAMES = ["app-uid", "sandbox", "cgroup-memory", "cgroup-cpu", "cgroup-pids", "network", "master-key", "config-at-rest"];

function unavailable(): string | null {
  let reason: string | null = null;
  if (process.getuid?.() !== 0) reason = "needs root (deck loads nftables rules and drops to app uids)";
  else if (spawnSync("nft", ["--version"]).status !== 0) reason = "nft is not installed (apt-get install -y nftables)";
  if (reason && process.env.CI === "true") throw new Error(`${reason} (required when CI=true)`);
  return reason;
}

/** `deck doctor` with DECK_DATA_DIR=dataDir: its exit status and its lines by protection name. */
async function doctor(dataDir: string, env: Record<string, string> = {}): Promise<{ code: number; lines: Map<string, string>; last: string }> {
  const r = await run(DECK, ["doctor"], { env: { ...process.env, DECK_DATA_DIR: dataDir, DATABASE_URL: "", ...env }, cwd: tmpdir() });
  assert.equal(r.stderr, "");
  const out = r.stdout.trim().split("\n");
  const lines = new Map<string, string>();
  for (const line of out.slice(0, -1)) {
    const m = /^(on |OFF)  (\S+)/.exec(line);
    assert.ok(m, `not a protection line: ${line}`);
    lines.set(m[2]!, line);
  }
  return { code: r.code, lines, last: out[out.length - 1]! };
}

const skip = unavailable();

describe("deck doctor and the start-up report", { skip: skip ?? false }, () => {
  const dirs: string[] = [];
  const decks: Deck[] = [];
  after(async () => {
    for (const d of decks) {
      await removeNetworkRules(networkTableFor(d.dataDir)).catch(() => undefined);
      await d.stop();
    }
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it("on a data dir no deck server has started: network rules and master key are off, with how to turn them on", async () => {
    const dir = await mkdtemp(join(tmpdir(), "deck-doctor-"));
    dirs.push(dir);
    const r = await doctor(dir);
    assert.equal(r.code, 1);
    assert.deepEqual([...r.lines.keys()], NAMES);
    assert.equal(r.lines.get("network"), `OFF  network          apps can connect to this host's ports: the rules (nftables table inet ${networkTableFor(dir)}) are not loaded; start deck server as root: it loads them`);
    assert.equal(r.lines.get("master-key"), `OFF  master-key       no master key yet (${join(dir, "keys", "master.key")}); start deck server once (it creates the key) or set DECK_MASTER_KEY`);
    assert.match(r.last, /protection\(s\) off: .*network, master-key$/);
  });

  describe("against a running deck", () => {
    let deck: Deck;
    before(async () => {
      deck = await Deck.start({ backend: { name: "embedded" } });
      decks.push(deck);
    });

    it("the server loaded its network rules and reports no protection off", async () => {
      assert.doesNotMatch(deck.log(), /protection off: OFF  network/);
      const r = await doctor(deck.dataDir);
      assert.match(r.lines.get("network")!, /^on   network          uids 200000-299999 cannot connect to this host's addresses or link-local \(nftables table inet deck_[0-9a-f]{16}\)$/);
      assert.equal(r.lines.get("master-key"), `on   master-key       config vars are sealed (AES-256-GCM) under ${join(deck.dataDir, "keys", "master.key")} (mode 600)`);
      assert.equal(r.lines.get("config-at-rest"), "on   config-at-rest   every stored config var is sealed");
      // The sandbox and cgroup lines depend on the kernel; with all of them on, the doctor is content.
      const off = [...r.lines.values()].filter((l) => l.startsWith("OFF"));
      assert.equal(r.code, off.length === 0 ? 0 : 1);
      if (off.length === 0) assert.equal(r.last, "every protection is on");
    });

    it("a master key other users can read is off, with the chmod that fixes it", async () => {
      const key = join(deck.dataDir, "keys", "master.key");
      await chmod(key, 0o644);
      try {
        const r = await doctor(deck.dataDir);
        assert.equal(r.code, 1);
        assert.equal(r.lines.get("master-key"), `OFF  master-key       ${key} is readable by other users (mode 644); chmod 600 ${key}`);
      } finally {
        await chmod(key, 0o600);
      }
    });

    it("DECK_RUNTIME=docker adds the engine's and the containers' firewall's status: off, with the fix, when not in place", async () => {
      const r = await doctor(deck.dataDir, { DECK_RUNTIME: "docker", DOCKER_HOST: `unix://${join(deck.dir, "no-docker.sock")}` });
      assert.equal(r.code, 1);
      assert.deepEqual([...r.lines.keys()], [...NAMES, "docker", "docker-network"]);
      assert.match(r.lines.get("docker")!, /^OFF  docker           DECK_RUNTIME=docker but no Docker engine answers \(.+\); start dockerd or set DOCKER_HOST$/);
      // This deck never ran the Docker runtime, so its containers' firewall is not in place.
      assert.match(r.lines.get("docker-network")!, /^OFF  docker-network   nftables table inet deck_docker_\w+ is not in place \(.+\): containers can connect to services on the host; restart deck/);
    });
  });

  it("deck server names a protection the kernel refuses at start-up, with how to turn it on", async () => {
    // An nft that fails as it does on a kernel without nf_tables (this machine's kernel has it).
    const bin = await mkdtemp(join(tmpdir(), "deck-nft-"));
    dirs.push(bin);
    await writeFile(join(bin, "nft"), "#!/bin/sh\necho 'Error: Could not process rule: Operation not supported' >&2\nexit 1\n", { mode: 0o755 });
    const deck = await Deck.start({ backend: { name: "embedded" }, env: { PATH: `${bin}:${process.env.PATH}` } });
    decks.push(deck);
    const line = deck.log().split("\n").find((l) => l.includes("protection off: OFF  network"));
    assert.equal(
      line,
      "protection off: OFF  network          apps can connect to this host's ports: loading the rules failed (Error: Could not process rule: Operation not supported); " +
        "use a kernel with nf_tables (modprobe nf_tables; CONFIG_NF_TABLES, CONFIG_NFT_FIB_INET, CONFIG_NFT_REJECT_INET, CONFIG_NFT_CT)",
    );
  });
});
