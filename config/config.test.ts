import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it, test } from "node:test";
import { SETTINGS } from "./config.ts";
import { ConfigError, loadConfig } from "./index.ts";

const DECK = fileURLToPath(new URL("../bin/deck", import.meta.url));

describe("configuration", () => {
  it("uses the documented defaults", () => {
    const c = loadConfig({ env: {}, cwd: mkdtempSync(join(tmpdir(), "cfg-")) });
    assert.equal(c.sshPort, 2222);
    assert.equal(c.apiPort, 3000);
    assert.equal(c.httpPort, 8080);
    assert.equal(c.domain, "localhost");
    assert.equal(c.deployQueue, "wait");
    assert.match(c.dataDir, /\/data$/);
  });

  it("reads deck.yaml and lets the environment win", () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-"));
    writeFileSync(join(dir, "deck.yaml"), "ssh_port: 2200\nhttp_port: 8000\n");
    const c = loadConfig({ env: { DECK_HTTP_PORT: "9000" }, cwd: dir });
    assert.equal(c.sshPort, 2200);
    assert.equal(c.httpPort, 9000);
  });

  it("names the setting and what is allowed in one line", () => {
    const cwd = mkdtempSync(join(tmpdir(), "cfg-"));
    assert.throws(() => loadConfig({ env: { DECK_SSH_PORT: "99999" }, cwd }), (e: Error) => e instanceof ConfigError && /^DECK_SSH_PORT="99999" is not valid/.test(e.message));
    assert.throws(() => loadConfig({ env: { DECK_DEPLOY_QUEUE: "maybe" }, cwd }), /DECK_DEPLOY_QUEUE="maybe" is not valid: expected one of wait, refuse/);
    for (const bad of ["10.0.0.5:8080", "apps.internal", "0.0.0.0", "::", "0:0::0"]) {
      assert.throws(() => loadConfig({ env: { DECK_UPSTREAM_HOST: bad }, cwd }), new RegExp(`: DECK_UPSTREAM_HOST="${bad.replaceAll(".", "\\.")}" is not valid: expected an IPv4 or IPv6 address of this machine, without a port \\(not 0\\.0\\.0\\.0 or ::`));
    }
    for (const host of ["10.0.0.5", "fd00::5", "127.0.0.2"]) assert.equal(loadConfig({ env: { DECK_UPSTREAM_HOST: host }, cwd }).upstreamHost, host);
    writeFileSync(join(cwd, "deck.yaml"), "sshport: 1\n");
    assert.throws(() => loadConfig({ env: {}, cwd }), /unknown setting "sshport"/);
  });

  it("stops `deck server` with exit status 2 and one line on a bad value", () => {
    const r = spawnSync(DECK, ["server"], { env: { ...process.env, DECK_HTTP_PORT: "http" }, cwd: mkdtempSync(join(tmpdir(), "cfg-")), encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.match(r.stderr, /^deck: DECK_HTTP_PORT="http" is not valid/);
  });

  it("stops `deck server` with exit status 2 and one line when DECK_UPSTREAM_HOST is not an address of this machine", () => {
    // An address reserved for documentation (RFC 5737) that this machine does not have.
    const own = new Set(Object.values(networkInterfaces()).flat().map((a) => a?.address));
    const foreign = ["203.0.113.77", "198.51.100.77", "192.0.2.77"].find((a) => !own.has(a))!;
    const r = spawnSync(DECK, ["server"], { env: { ...process.env, DECK_UPSTREAM_HOST: foreign }, cwd: mkdtempSync(join(tmpdir(), "cfg-")), encoding: "utf8" });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.ok(r.stderr.startsWith(`deck: DECK_UPSTREAM_HOST="${foreign}" is not an address of this machine (EADDRNOTAVAIL); use 127.0.0.1 or one of `), r.stderr);
  });
});

test("the README's configuration table lists every setting with its default and meaning", async () => {
  const { readFile } = await import("node:fs/promises");
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
  const rows = readme.split("\n").filter((l) => /^\| `[A-Z_]+` \| `[a-z_]+` \|/.test(l));
  const expected = Object.values(SETTINGS).map((s) => {
    const def = s.env === "DECK_BUILD_CONCURRENCY" ? "number of cores" : s.default === undefined || s.default === "" ? "unset" : `\`${s.default}\``;
    return `| \`${s.env}\` | \`${s.yaml}\` | ${def} | ${s.help} |`;
  });
  assert.deepEqual(rows, expected);
});

test("DECK_DOMAIN is read lowercase and without the root's trailing dot, as domains users add are", () => {
  const cwd = mkdtempSync(join(tmpdir(), "cfg-"));
  assert.equal(loadConfig({ env: { DECK_DOMAIN: "Apps.Example.com." }, cwd }).domain, "apps.example.com");
  assert.equal(loadConfig({ env: { DECK_DOMAIN: "LOCALHOST" }, cwd }).domain, "localhost");
  for (const bad of [".", "apps..example.com", "apps example.com"]) {
    assert.throws(() => loadConfig({ env: { DECK_DOMAIN: bad }, cwd }), /^ConfigError: DECK_DOMAIN=".*" is not valid: expected a DNS name like localhost or apps\.example\.com$/);
  }
});

test("durations stop at a day (Node's timers fire at once past 24.8 days), and DECK_RATE_LIMIT takes what router:set takes", () => {
  const cwd = mkdtempSync(join(tmpdir(), "cfg-"));
  assert.throws(() => loadConfig({ env: { DECK_PAUSE_TIMEOUT: "2600000" }, cwd }), /^ConfigError: DECK_PAUSE_TIMEOUT="2600000" is not valid: expected a number of seconds from 0 to 86400 \(one day\)$/);
  assert.throws(() => loadConfig({ env: { DECK_METERING_INTERVAL: "2200000" }, cwd }), /^ConfigError: DECK_METERING_INTERVAL="2200000" is not valid: expected a number of seconds above 0 and at most 86400 \(one day\)$/);
  assert.throws(() => loadConfig({ env: { DECK_IDLE_TIMEOUT: "86401" }, cwd }), /DECK_IDLE_TIMEOUT="86401" is not valid: expected a number of seconds above 0 and at most 86400/);
  const c = loadConfig({ env: { DECK_PAUSE_TIMEOUT: "86400", DECK_METERING_INTERVAL: "86400", DECK_RATE_LIMIT: "0.000001" }, cwd });
  assert.deepEqual([c.pauseTimeout, c.meteringInterval, c.rateLimitRps], [86400, 86400, 0.000001]);
  assert.equal(loadConfig({ env: { DECK_RATE_LIMIT: "0" }, cwd }).rateLimitRps, 0);
  for (const bad of ["1e-25", "0.0000001", "2000000", "-1"]) {
    assert.throws(() => loadConfig({ env: { DECK_RATE_LIMIT: bad }, cwd }), new RegExp(`^ConfigError: DECK_RATE_LIMIT="${bad}" is not valid: expected a number of requests per second per client IP from 0\\.000001 to 1000000`));
  }
});
