/**
 * HTTPS end to end: a real deck server orders certificates from the real ACME test server pebble,
 * whose HTTP-01 validations reach deck's router on loopback; clients connect to DECK_HTTPS_PORT with
 * SNI over HTTP/2 and HTTP/1.1. Own certificates go in with certs:add and the REST API.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http2 from "node:http2";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import tls from "node:tls";
import { FALLBACK_SUBJECT } from "../router/tls-server.ts";
import { databaseBackends } from "./helpers/database.ts";
import { Deck, freePort, makeRepo, nodeApp, run } from "./helpers/deck.ts";
import { pebbleMissing, startPebble, type Pebble } from "./helpers/pebble.ts";

// Without pebble the suite is reported as skipped, with the reason; with CI=true pebbleMissing() throws
// instead, so the file fails rather than passing with nothing tested.
const skip = pebbleMissing();
// ACME and TLS do not depend on where PostgreSQL runs: one backend (the external one when configured).
const backends = skip ? [] : await databaseBackends();
for (const b of backends.slice(0, -1)) if (b.name === "external") await b.drop();
const backend = backends.at(-1);

interface DomainReport { domain: string; default?: boolean; sslStatus: string; tls: string; expiresAt: string | null; error: string | null }

interface Peer { subject: string; issuer: string; serial: string; alpn: string | false | null }

/** The certificate the router presents for `servername`, checked against `ca` when given. */
function peer(port: number, servername: string, ca?: string): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, ca, rejectUnauthorized: ca !== undefined }, () => {
      const c = socket.getPeerCertificate();
      socket.end();
      resolve({ subject: String(c.subject?.CN), issuer: String(c.issuer?.CN), serial: c.serialNumber, alpn: socket.alpnProtocol });
    });
    socket.on("error", reject);
  });
}

function httpsGet(port: number, servername: string, ca: string, alpn?: string[]): Promise<{ status: number; body: string; alpn: string | false | null; proto: string | undefined }> {
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions & tls.ConnectionOptions = { host: "127.0.0.1", port, servername, ca, ALPNProtocols: alpn, headers: { Host: servername }, agent: false, path: "/" };
    const req = https.get(options, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, alpn: (res.socket as tls.TLSSocket).alpnProtocol, proto: res.httpVersion }));
    });
    req.on("error", reject);
  });
}

function h2Get(port: number, servername: string, ca: string): Promise<{ alpn: string | undefined; status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // Connects to 127.0.0.1 while naming the domain in SNI and :authority, like a browser would.
    const session = http2.connect(`https://${servername}:${port}`, { ca, servername, host: "127.0.0.1" } as http2.SecureClientSessionOptions);
    session.on("error", reject);
    const stream = session.request({ ":path": "/" });
    let status = 0;
    let body = "";
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.setEncoding("utf8");
    stream.on("data", (c) => (body += c));
    stream.on("end", () => {
      const alpn = session.alpnProtocol;
      session.close();
      resolve({ alpn, status, body });
    });
    stream.on("error", reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(`HTTPS with certificates from pebble (${backend?.name ?? "no"} PostgreSQL)`, { skip }, () => {
  if (backend === undefined) throw new Error("no PostgreSQL backend to test against");
  let pebble: Pebble;
  let deck: Deck;
  let work: string;
  let root: string;

  const report = async (app: string): Promise<DomainReport[]> => {
    const r = await deck.ssh(`domains:report ${app} --json`);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as DomainReport[];
  };
  const statusOf = async (app: string, domain: string) => (await report(app)).find((d) => d.domain === domain);
  /** Polls domains:report until the domain leaves `pending` (orders run in the background). */
  const settled = async (app: string, domain: string): Promise<DomainReport> => {
    const end = Date.now() + 120_000;
    while (Date.now() < end) {
      const d = await statusOf(app, domain);
      if (d && d.sslStatus !== "pending") return d;
      await sleep(250);
    }
    throw new Error(`${domain} stayed pending; server log: ${deck.log().slice(-3000)}`);
  };
  const sshWithInput = (command: string, input: string) => run("ssh", [...deck.sshArgs(), "deck@127.0.0.1", command], { input });

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-tls-"));
    const httpPort = await freePort();
    pebble = await startPebble({ httpPort });
    root = await pebble.root();
    deck = await Deck.start({
      backend,
      ports: { http: httpPort },
      env: { DECK_ACME_DIRECTORY: pebble.directory, DECK_ACME_EMAIL: "ops@example.com", NODE_EXTRA_CA_CERTS: pebble.listenerCaFile },
    });
    const repo = await makeRepo(join(work, "shop"), nodeApp("v1"));
    const push = await deck.push(repo, "shop");
    assert.equal(push.code, 0, push.stderr);
  });

  after(async () => {
    await deck?.stop();
    await pebble?.stop();
    if (work) await rm(work, { recursive: true, force: true });
    if (backend.name === "external") await backend.drop();
  });

  it("domains:add gets a certificate from the ACME server, served by SNI on the HTTPS port", async () => {
    const add = await deck.ssh("domains:add shop shop.example.com");
    assert.equal(add.code, 0, add.stderr);
    const d = await settled("shop", "shop.example.com");
    assert.equal(d.sslStatus, "issued", d.tls);
    assert.match(d.tls, /^issued \(expires \d{4}-\d{2}-\d{2}\)$/);

    // Verified against pebble's root: the router presents the issued leaf and its intermediate.
    const p = await peer(deck.ports.https, "shop.example.com", root);
    assert.equal(p.subject, "shop.example.com");
    assert.match(p.issuer, /^Pebble Intermediate CA/);
    const page = await httpsGet(deck.ports.https, "shop.example.com", root);
    assert.equal(page.status, 200);
    assert.match(page.body, /^v1 /);

    const text = await deck.ssh("domains:report shop");
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^shop\.localhost \(default\)\s+self-signed$/m);
    assert.match(text.stdout, /^shop\.example\.com\s+issued \(expires \d{4}-\d{2}-\d{2}\)$/m);
  });

  it("negotiates HTTP/2 by ALPN and falls back to HTTP/1.1", async () => {
    const two = await h2Get(deck.ports.https, "shop.example.com", root);
    assert.equal(two.alpn, "h2");
    assert.equal(two.status, 200);
    assert.match(two.body, /^v1 /);
    const one = await httpsGet(deck.ports.https, "shop.example.com", root, ["http/1.1"]);
    assert.equal(one.alpn, "http/1.1");
    assert.equal(one.proto, "1.1");
    assert.match(one.body, /^v1 /);
  });

  it("a host without a certificate gets the self-signed fallback", async () => {
    const p = await peer(deck.ports.https, "shop.localhost");
    assert.equal(p.subject, FALLBACK_SUBJECT);
    assert.equal(p.issuer, FALLBACK_SUBJECT);
    await assert.rejects(peer(deck.ports.https, "shop.localhost", root), /self[- ]signed|unable to verify|certificate/i);
  });

  it("a challenge the ACME server cannot reach shows failed: REASON in domains:report", async () => {
    // Nothing listens on 127.0.0.2:HTTP_PORT, so pebble's validation connection is refused.
    await pebble.addA("broken.example.com", "127.0.0.2");
    const add = await deck.ssh("domains:add shop broken.example.com");
    assert.equal(add.code, 0, add.stderr);
    const d = await settled("shop", "broken.example.com");
    assert.equal(d.sslStatus, "failed");
    assert.match(d.tls, /^failed: .*(refused|connect)/i);
    assert.ok(!d.tls.includes("\n"));
    const text = await deck.ssh("domains:report shop");
    assert.match(text.stdout, /^broken\.example\.com\s+failed: \S/m);
    assert.equal((await peer(deck.ports.https, "broken.example.com")).subject, FALLBACK_SUBJECT);
  });

  it("renews certificates that expire within DECK_ACME_RENEW_DAYS, and the router serves the new one", async () => {
    const before = await peer(deck.ports.https, "shop.example.com", root);
    // Pebble's certificates last five years: a threshold of a century makes this one due at the check the server runs at start.
    deck.options.env!.DECK_ACME_RENEW_DAYS = "36500";
    await deck.kill9();
    await deck.startServer();
    let after = before;
    const end = Date.now() + 120_000;
    while (after.serial === before.serial && Date.now() < end) {
      await sleep(250);
      after = await peer(deck.ports.https, "shop.example.com", root);
    }
    assert.notEqual(after.serial, before.serial, `no renewal; server log: ${deck.log().slice(-3000)}`);
    assert.equal(after.subject, "shop.example.com");
    const d = await statusOf("shop", "shop.example.com");
    assert.equal(d?.sslStatus, "issued");
    const page = await httpsGet(deck.ports.https, "shop.example.com", root);
    assert.match(page.body, /^v1 /);
  });

  it("certs:add serves your own certificate; bad input is refused with one line", async () => {
    // A name deck never orders for (.test), so only the uploaded certificate can cover it.
    assert.equal((await deck.ssh("domains:add shop shop.own.test")).code, 0);
    assert.equal((await statusOf("shop", "shop.own.test"))?.tls, "self-signed");
    const own = makeCert(work, "own", "shop.own.test");
    const other = makeCert(work, "other", "elsewhere.example.net");

    const added = await sshWithInput("certs:add shop", own.cert + own.key);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^shop now serves your certificate for shop\.own\.test \(expires \d{4}-\d{2}-\d{2}\)$/m);
    const page = await httpsGet(deck.ports.https, "shop.own.test", own.cert);
    assert.equal(page.status, 200);
    assert.match(page.body, /^v1 /);
    assert.match((await statusOf("shop", "shop.own.test"))!.tls, /^manual \(expires \d{4}-\d{2}-\d{2}\)$/);

    const refusals: [string, RegExp][] = [
      ["not a certificate at all\n", /^deck: error \(invalid_certificate\): no certificate found; send the certificate chain and its private key as PEM/],
      [own.cert + other.key, /^deck: error \(invalid_certificate\): the private key does not match the certificate$/],
      [other.cert + other.key, /^deck: error \(invalid_certificate\): the certificate is for elsewhere\.example\.net, which is not a domain of shop; add the domain first/],
      [own.cert, /^deck: error \(invalid_certificate\): no private key found; /],
    ];
    for (const [input, expected] of refusals) {
      const r = await sshWithInput("certs:add shop", input);
      assert.notEqual(r.code, 0);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr.trim(), expected);
    }
    // Still the uploaded one.
    assert.equal((await peer(deck.ports.https, "shop.own.test", own.cert)).subject, "shop.own.test");

    // A long chain (key last, as the help says) is read whole; input over 1 MiB is refused, not cut.
    const cas = [0, 1, 2].map((i) => makeCert(work, `ca${i}`, `ca${i}.own.test`).cert).join("");
    let chain = "";
    while (chain.length < 70 * 1024) chain += cas;
    const long = await sshWithInput("certs:add shop", own.cert + chain + own.key);
    assert.equal(long.code, 0, long.stderr);
    assert.match(long.stdout, /^shop now serves your certificate for shop\.own\.test/m);
    while (chain.length < 1100 * 1024) chain += cas;
    const huge = await sshWithInput("certs:add shop", own.cert + chain + own.key);
    assert.notEqual(huge.code, 0);
    assert.equal(huge.stderr.trim().split("\n").length, 1, huge.stderr);
    assert.match(huge.stderr.trim(), /^deck: error \(input_too_large\): the input is 1\.\d MiB, over the 1 MiB a command reads; send only the certificate, its chain and its key/);

    const removed = await deck.ssh("certs:remove shop shop.own.test");
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal((await peer(deck.ports.https, "shop.own.test")).subject, FALLBACK_SUBJECT);
    assert.equal((await statusOf("shop", "shop.own.test"))?.tls, "self-signed");
  });

  it("the REST API adds and removes own certificates and reports each domain's TLS status", async () => {
    const own = makeCert(work, "api", "shop.own.test");
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${deck.ports.api}/api/v1${path}`, {
        method, headers: { authorization: `Bearer ${deck.token}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body),
      });
    const created = await api("POST", "/apps/shop/certs", { cert: own.cert, key: own.key });
    assert.equal(created.status, 201, await created.clone().text());
    assert.deepEqual((await created.json() as { domains: string[] }).domains, ["shop.own.test"]);
    assert.equal((await peer(deck.ports.https, "shop.own.test", own.cert)).subject, "shop.own.test");

    const list = await api("GET", "/apps/shop/domains");
    const items = (await list.json() as { items: DomainReport[] }).items;
    const by = new Map(items.map((d) => [d.domain, d]));
    assert.equal(by.get("shop.localhost")?.sslStatus, "self-signed");
    assert.equal(by.get("shop.example.com")?.sslStatus, "issued");
    assert.equal(by.get("broken.example.com")?.sslStatus, "failed");
    assert.equal(by.get("shop.own.test")?.sslStatus, "manual");

    const bad = await api("POST", "/apps/shop/certs", { cert: own.cert, key: makeCert(work, "api2", "shop.own.test").key });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json() as { error: { message: string } }).error.message, "the private key does not match the certificate");

    assert.equal((await api("DELETE", "/apps/shop/certs/shop.own.test")).status < 300, true);
    assert.equal((await peer(deck.ports.https, "shop.own.test")).subject, FALLBACK_SUBJECT);
    assert.equal((await api("DELETE", "/apps/shop/certs/shop.own.test")).status, 404);
  });

  it("domains:remove takes the domain's certificate away", async () => {
    assert.equal((await deck.ssh("domains:remove shop shop.example.com")).code, 0);
    assert.equal((await peer(deck.ports.https, "shop.example.com")).subject, FALLBACK_SUBJECT);
    assert.equal(await statusOf("shop", "shop.example.com"), undefined);
  });
});

/** A self-signed certificate and key made with openssl, as a user would. */
function makeCert(dir: string, name: string, host: string): { cert: string; key: string } {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
    "-keyout", keyFile, "-out", certFile, "-subj", `/CN=${host}`, "-addext", `subjectAltName=DNS:${host}`,
  ], { stdio: "ignore" });
  return { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
}

