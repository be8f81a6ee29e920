import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { lookup } from "node:dns/promises";
import dgram from "node:dgram";
import net from "node:net";
import { networkInterfaces } from "node:os";
import { after, before, describe, it } from "node:test";
import {
  applyNetworkRules, buildNetworkRuleset, describeNftFailure, networkTableFor, nftDeleteTableArgv, nftListTableArgv, nftLoadArgv, parseResolvers,
  probeNetwork, readResolvers, removeNetworkRules, uidRangesFor, type NetworkRulesSpec,
} from "./network-rules.ts";

describe("network rules (pure)", () => {
  it("confines the listed uids: replies and DNS pass, this host's addresses and link-local are refused", () => {
    const text = buildNetworkRuleset({ table: "deck_0123456789abcdef", uidRanges: [[150001, 150001], [200000, 299999]], resolvers: ["127.0.0.53", "fd00::53"] });
    assert.equal(text, [
      "table inet deck_0123456789abcdef {",
      "}",
      "delete table inet deck_0123456789abcdef",
      "table inet deck_0123456789abcdef {",
      "\tchain output {",
      "\t\ttype filter hook output priority -150; policy accept;",
      "\t\tmeta skuid { 150001, 200000-299999 } jump sandboxed",
      "\t}",
      "\tchain sandboxed {",
      "\t\tct state established,related accept",
      "\t\tip daddr 127.0.0.53 udp dport 53 accept",
      "\t\tip daddr 127.0.0.53 tcp dport 53 accept",
      "\t\tip6 daddr fd00::53 udp dport 53 accept",
      "\t\tip6 daddr fd00::53 tcp dport 53 accept",
      "\t\tfib daddr type { local, broadcast, multicast, anycast } jump refuse",
      "\t\tip daddr { 224.0.0.0/4, 255.255.255.255 } jump refuse",
      "\t\tip6 daddr ff00::/8 jump refuse",
      "\t\tip daddr 169.254.0.0/16 jump refuse",
      "\t\tip6 daddr fe80::/10 jump refuse",
      "\t\toifname \"docker0\" jump refuse",
      "\t\toifname \"br-*\" jump refuse",
      "\t\toifname \"deckd*\" jump refuse",
      "\t}",
      "\tchain refuse {",
      "\t\tmeta l4proto tcp reject with tcp reset",
      "\t\treject with icmpx type admin-prohibited",
      "\t}",
      "}",
      "",
    ].join("\n"));
  });

  it("refuses a table name that is not deck's", () => {
    assert.throws(() => buildNetworkRuleset({ table: "x; flush ruleset", uidRanges: [[1, 2]], resolvers: [] }), /not an nftables table name/);
  });

  it("names one table per data dir", () => {
    assert.match(networkTableFor("/srv/deck"), /^deck_[0-9a-f]{16}$/);
    assert.equal(networkTableFor("/srv/deck"), networkTableFor("/srv/deck/"));
    assert.notEqual(networkTableFor("/srv/deck"), networkTableFor("/srv/other"));
  });

  it("reads the nameservers of resolv.conf", () => {
    const conf = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver not-an-ip\n  nameserver 10.0.0.2 # second\noptions edns0\nnameserver 127.0.0.53\n";
    assert.deepEqual(parseResolvers(conf), ["127.0.0.53", "fe80::1", "10.0.0.2"]);
  });

  it("covers the configured range plus uids stored under an earlier base", () => {
    assert.deepEqual(uidRangesFor(200000, 100000, []), [[200000, 299999]]);
    assert.deepEqual(uidRangesFor(300000, 100000, [200001, 200002, 200004, 400000]), [[200001, 200002], [200004, 200004], [300000, 400000]]);
  });

  it("says how to turn the rules on when nft is missing, not permitted or refused by the kernel", () => {
    const enoent = Object.assign(new Error("spawn nft ENOENT"), { code: "ENOENT" });
    assert.deepEqual(describeNftFailure({ code: null, stdout: "", stderr: "", spawnError: enoent }, "loading the rules"), {
      name: "network", on: false, detail: "apps can connect to this host's ports: the nft command is not installed", fix: "install nftables (apt-get install nftables)",
    });
    assert.equal(describeNftFailure({ code: 1, stdout: "", stderr: "Error: Operation not permitted\n", }, "loading the rules").fix, "run deck server as root");
    const kernel = describeNftFailure({ code: 1, stdout: "", stderr: "\nError: Could not process rule: No such file or directory\n" }, "loading the rules");
    assert.equal(kernel.detail, "apps can connect to this host's ports: loading the rules failed (Error: Could not process rule: No such file or directory)");
    assert.match(kernel.fix!, /modprobe nf_tables/);
  });

  it("builds nft argv", () => {
    assert.deepEqual(nftLoadArgv(), ["nft", "-f", "-"]);
    assert.deepEqual(nftLoadArgv(true), ["nft", "--check", "-f", "-"]);
    assert.deepEqual(nftListTableArgv("deck_t"), ["nft", "list", "table", "inet", "deck_t"]);
    assert.deepEqual(nftDeleteTableArgv("deck_t"), ["nft", "delete", "table", "inet", "deck_t"]);
  });
});

/** Why the kernel test cannot run here, or null; with CI=true a missing piece is an error, not a skip. */
function kernelTestUnavailable(): string | null {
  let reason: string | null = null;
  if (process.getuid?.() !== 0) reason = "needs root (nft and setpriv --reuid)";
  else if (spawnSync("nft", ["--version"]).status !== 0) reason = "nft is not installed (apt-get install -y nftables)";
  else if (spawnSync("setpriv", ["--version"]).status !== 0) reason = "setpriv is not installed (apt-get install -y util-linux)";
  if (reason && process.env.CI === "true") throw new Error(`${reason} (required when CI=true)`);
  return reason;
}

/** A uid no deck of this machine hands out (far above the default range), so other tests' apps are untouched. */
const TEST_UID = 3_900_001;

/** Runs node as TEST_UID and returns what the script prints on stdout (trimmed). */
function runAsSandboxUid(script: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("setpriv", [`--reuid=${TEST_UID}`, `--regid=${TEST_UID}`, "--clear-groups", "--no-new-privs", process.execPath, "-e", script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}: ${err.trim()}`))));
  });
}

const CONNECT_JS = `
const s = require("net").connect(Number(process.argv[2]), process.argv[1]);
s.once("data", (d) => { console.log("connected: " + d.toString().trim()); s.destroy(); });
s.once("error", (e) => console.log(e.code));
`;

const SEND_UDP_JS = `
const s = require("dgram").createSocket("udp4");
s.bind(() => {
  s.setBroadcast(true);
  s.send("hello", Number(process.argv[2]), process.argv[1], (e) => { console.log(e ? e.code : "sent"); s.close(); });
});
`;

function connectAsRoot(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.once("data", (d) => { resolve(`connected: ${d.toString().trim()}`); s.destroy(); });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

function listen(host: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => s.end("hello\n"));
    server.once("error", reject);
    server.listen(0, host, () => resolve(server));
  });
}

const skip = kernelTestUnavailable();

describe("network rules (kernel)", { skip: skip ?? false }, () => {
  const spec: NetworkRulesSpec = { table: `deck_test_${process.pid}`, uidRanges: [[TEST_UID, TEST_UID + 8]], resolvers: [] };
  const servers: net.Server[] = [];
  // This machine's first non-loopback IPv4 address: an app must not reach the host through it either.
  const hostAddress = Object.values(networkInterfaces()).flat().find((a) => a && a.family === "IPv4" && !a.internal)?.address;

  before(async () => {
    spec.resolvers = await readResolvers();
    const applied = await applyNetworkRules(spec);
    assert.equal(applied.on, true, applied.detail);
  });
  after(async () => {
    for (const s of servers) s.close();
    await removeNetworkRules(spec.table);
  });

  it("refuses a sandbox uid's connection to a loopback listener while root connects", async () => {
    const server = await listen("127.0.0.1");
    servers.push(server);
    const port = (server.address() as net.AddressInfo).port;
    assert.equal(await connectAsRoot("127.0.0.1", port), "connected: hello");
    assert.equal(await runAsSandboxUid(CONNECT_JS, "127.0.0.1", String(port)), "ECONNREFUSED");
    // Another loopback address and the "any" address reach the same listener: refused as well.
    assert.equal(await runAsSandboxUid(CONNECT_JS, "127.0.0.2", String(port)), "ECONNREFUSED");
  });

  it("refuses a sandbox uid's connection to the host's own network address while root connects", { skip: hostAddress ? false : "no non-loopback IPv4 address" }, async () => {
    const server = await listen("0.0.0.0");
    servers.push(server);
    const port = (server.address() as net.AddressInfo).port;
    assert.equal(await connectAsRoot(hostAddress!, port), "connected: hello");
    assert.equal(await runAsSandboxUid(CONNECT_JS, hostAddress!, String(port)), "ECONNREFUSED");
    assert.equal(await runAsSandboxUid(CONNECT_JS, "0.0.0.0", String(port)), "ECONNREFUSED");
  });

  it("refuses UDP broadcast and multicast, which would reach every socket bound to 0.0.0.0 on the host", async () => {
    const received: string[] = [];
    const socket = dgram.createSocket("udp4");
    socket.on("message", (m) => received.push(m.toString()));
    await new Promise<void>((r) => socket.bind(0, "0.0.0.0", () => r()));
    const port = socket.address().port;
    try {
      for (const address of ["255.255.255.255", "224.0.0.1"]) {
        const result = await runAsSandboxUid(SEND_UDP_JS, address, String(port));
        assert.match(result, /^(EPERM|EACCES|ENETUNREACH)$/, `a datagram to ${address}: ${result}`);
      }
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(received, []);
    } finally {
      socket.close();
    }
  });

  it("refuses link-local addresses (cloud metadata)", async () => {
    assert.equal(await runAsSandboxUid(CONNECT_JS, "169.254.169.254", "80"), "ECONNREFUSED");
  });

  it("lets a sandbox uid answer connections others open (the router's requests)", async () => {
    const SERVE_JS = `
const srv = require("net").createServer((s) => { s.end("from the app\\n"); srv.close(); });
srv.listen(0, "127.0.0.1", () => console.log(srv.address().port));
`;
    const child = spawn("setpriv", [`--reuid=${TEST_UID}`, `--regid=${TEST_UID}`, "--clear-groups", process.execPath, "-e", SERVE_JS], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
        child.once("exit", (code) => reject(new Error(`the app exited (${code}) before listening`)));
      });
      assert.equal(await connectAsRoot("127.0.0.1", port), "connected: from the app");
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("resolves names through the configured resolvers as a sandbox uid, as root does", async () => {
    const name = "registry.npmjs.org";
    const asRoot = await lookup(name).then(() => "resolved", (e: NodeJS.ErrnoException) => e.code ?? "failed");
    const asApp = await runAsSandboxUid(`require("dns").lookup(process.argv[1], (e) => console.log(e ? e.code : "resolved"))`, name);
    assert.equal(asApp, asRoot);
    if (process.env.CI === "true") assert.equal(asApp, "resolved");
  });

  it("reports the rules as on while loaded and off, with the fix, once removed", async () => {
    const on = await probeNetwork(spec);
    assert.equal(on.on, true);
    assert.match(on.detail, new RegExp(`uids ${TEST_UID}-${TEST_UID + 8} cannot connect to this host's addresses`));
    const other = { ...spec, table: `deck_test_gone_${process.pid}` };
    const off = await probeNetwork(other);
    assert.deepEqual(off, {
      name: "network", on: false,
      detail: `apps can connect to this host's ports: the rules (nftables table inet ${other.table}) are not loaded`,
      fix: "start deck server as root: it loads them",
    });
  });

  it("replaces the rules as a whole when applied again", async () => {
    const again = await applyNetworkRules({ ...spec, uidRanges: [[TEST_UID + 1, TEST_UID + 8]] });
    assert.equal(again.on, true);
    const listed = spawnSync("nft", nftListTableArgv(spec.table).slice(1), { encoding: "utf8" }).stdout;
    assert.equal(listed.match(/jump sandboxed/g)?.length, 1);
    // TEST_UID is no longer covered: it connects again.
    const server = await listen("127.0.0.1");
    servers.push(server);
    assert.equal(await runAsSandboxUid(CONNECT_JS, "127.0.0.1", String((server.address() as net.AddressInfo).port)), "connected: hello");
  });
});
