/**
 * Each app gets its own uid from deck (DECK_SANDBOX_UID_BASE + app id, stored with the app): its build,
 * its release command and its processes all run under it, and the network rules deck loads at start
 * keep that uid away from the host's ports. Two apps pushed for real, each reporting what it runs as.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { networkTableFor, removeNetworkRules } from "../runtime/network-rules.ts";
import { embeddedDatabaseUrl } from "../store/index.ts";
import { Deck, makeRepo } from "./helpers/deck.ts";

function unavailable(): string | null {
  let reason: string | null = null;
  if (process.getuid?.() !== 0) reason = "needs root (apps run under their own uids)";
  else if (spawnSync("nft", ["--version"]).status !== 0) reason = "nft is not installed (apt-get install -y nftables)";
  if (reason && process.env.CI === "true") throw new Error(`${reason} (required when CI=true)`);
  return reason;
}

/** An app that says, at each step, which uid it runs as; GET /connect?port=N tries a port on the host. */
function uidApp(name: string): Record<string, string> {
  const pkg = { name, version: "1.0.0", private: true, scripts: { build: `node -e "console.log('build of ${name} runs as uid ' + process.getuid())"`, start: "node server.js" } };
  return {
    "package.json": JSON.stringify(pkg, null, 2),
    Procfile: `web: node server.js\nrelease: node -e "console.log('release of ${name} runs as uid ' + process.getuid())"\n`,
    "server.js": `const http = require("http");
const net = require("net");
http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/connect") {
    const s = net.connect(Number(url.searchParams.get("port")), "127.0.0.1");
    s.once("connect", () => { s.destroy(); res.end("connected"); });
    s.once("error", (e) => res.end(e.code));
    return;
  }
  res.end(process.getuid() + ":" + process.getgid());
}).listen(process.env.PORT);
`,
  };
}

async function storedUids(dataDir: string): Promise<Map<string, { id: number; uid: number }>> {
  const client = new pg.Client({ connectionString: await embeddedDatabaseUrl(dataDir) });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT id, name, sandbox_uid FROM apps ORDER BY id");
    return new Map(rows.map((r) => [String(r.name), { id: Number(r.id), uid: Number(r.sandbox_uid) }]));
  } finally {
    await client.end();
  }
}

const skip = unavailable();

describe("each app runs under its own uid", { skip: skip ?? false }, () => {
  let deck: Deck;
  let work: string;
  const pushed = new Map<string, string>();

  before(async () => {
    deck = await Deck.start({ backend: { name: "embedded" } });
    work = await mkdtemp(join(tmpdir(), "deck-uid-"));
    for (const name of ["alpha", "beta"]) {
      const repo = await makeRepo(join(work, name), uidApp(name));
      const r = await deck.push(repo, name);
      assert.equal(r.code, 0, r.stderr);
      pushed.set(name, r.stderr);
    }
  });
  after(async () => {
    await removeNetworkRules(networkTableFor(deck.dataDir)).catch(() => undefined);
    await deck?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("allocates distinct stored uids from DECK_SANDBOX_UID_BASE and the app id", async () => {
    const uids = await storedUids(deck.dataDir);
    assert.equal(uids.get("alpha")!.uid, 200_000 + uids.get("alpha")!.id);
    assert.equal(uids.get("beta")!.uid, 200_000 + uids.get("beta")!.id);
    assert.notEqual(uids.get("alpha")!.uid, uids.get("beta")!.uid);
  });

  it("runs each app's build, release command and web process under that uid and gid", async () => {
    const uids = await storedUids(deck.dataDir);
    for (const name of ["alpha", "beta"]) {
      const uid = uids.get(name)!.uid;
      assert.match(pushed.get(name)!, new RegExp(`build of ${name} runs as uid ${uid}\\b`));
      assert.match(pushed.get(name)!, new RegExp(`release of ${name} runs as uid ${uid}\\b`));
      const res = await deck.get(name, "/");
      assert.equal(res.status, 200);
      assert.equal(res.body, `${uid}:${uid}`);
    }
  });

  it("keeps an app's uid away from deck's own ports while the router still reaches the app", async () => {
    const res = await deck.get("alpha", `/connect?port=${deck.ports.api}`);
    assert.equal(res.status, 200);
    assert.equal(res.body, "ECONNREFUSED");
  });
});
