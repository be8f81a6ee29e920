/**
 * Log drains end to end: drains added with the SSH commands, a DrainShipper following real log files,
 * a real syslog receiver over TLS (node:tls with a certificate made by openssl here) and a real HTTPS
 * receiver on loopback that is down for a while and then comes back. Lines arrive once, in order; a
 * drain down long enough drops what its buffer cannot hold, and drains:list counts it. A deck server
 * started again goes on where its drains were: lines written while it was stopped (and trimmed in place
 * meanwhile), and lines it held for a receiver that was down, arrive once, in order.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { pathsFor } from "../../deploy/paths.ts";
import { runCommand } from "../../gitd/commands.ts";
import { callerFor, type Caller, type DeployDeps } from "../../ops/index.ts";
import { addMember, insertApp, insertOrganization, insertUser, type Db } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { freePort } from "../../test/helpers/deck.ts";
import { DrainShipper, type DrainShipperOptions } from "./drain-shipper.ts";
import { trimLog } from "./log-trim.ts";
import { routerAccessLog } from "./search.ts";
import { accessLine, appendLines, appLine, waitFor } from "./test-support.ts";

/** A self-signed certificate for 127.0.0.1, made with the openssl command. */
function makeCertificate(dir: string): { key: string; cert: string } {
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
  ], { stdio: "ignore" });
  return { key: readFileSync(join(dir, "key.pem"), "utf8"), cert: readFileSync(join(dir, "cert.pem"), "utf8") };
}

/** A syslog receiver over TLS (RFC 5425): reads octet-counted frames. */
class SyslogTlsReceiver {
  readonly messages: string[] = [];
  private constructor(private readonly server: tls.Server, readonly port: number) {}

  static async start(key: string, cert: string): Promise<SyslogTlsReceiver> {
    const messages: string[] = [];
    const server = tls.createServer({ key, cert }, (socket) => {
      let buf = Buffer.alloc(0);
      socket.on("data", (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
          const space = buf.indexOf(0x20);
          if (space === -1) break;
          const len = Number(buf.subarray(0, space).toString());
          if (buf.length < space + 1 + len) break;
          messages.push(buf.subarray(space + 1, space + 1 + len).toString("utf8"));
          buf = buf.subarray(space + 1 + len);
        }
      });
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const r = new SyslogTlsReceiver(server, (server.address() as AddressInfo).port);
    (r as { messages: string[] }).messages = messages;
    return r;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** An HTTPS receiver of JSON lines on a fixed port: closed until `open`, and closed again by `close`. */
class HttpsReceiver {
  readonly lines: Record<string, unknown>[] = [];
  readonly batches: string[] = [];
  private server: https.Server | null = null;
  constructor(readonly port: number, private readonly key: string, private readonly cert: string) {}

  async open(): Promise<void> {
    this.server = https.createServer({ key: this.key, cert: this.cert }, (req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (body += c));
      req.on("end", () => {
        this.batches.push(String(req.headers["x-deck-batch"]));
        for (const l of body.split("\n")) if (l) this.lines.push(JSON.parse(l) as Record<string, unknown>);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, "127.0.0.1", resolve));
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
}

for (const backend of await databaseBackends()) {
  describe(`log drains (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let db: Db;
    let deps: DeployDeps;
    let dir: string;
    let key: string;
    let cert: string;
    let admin: Caller;
    let member: Caller;
    let outsider: Caller;
    const logged: string[] = [];
    const shippers: DrainShipper[] = [];

    const ssh = async (who: Caller, ...words: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const status = await runCommand(deps, who, words, { out: (l) => void out.push(l), err: (l) => void err.push(l), signal: new AbortController().signal });
      return { status, out, err };
    };
    const drainsOf = async (app: string) => JSON.parse((await ssh(admin, "drains:list", app, "--json")).out[0]!) as { id: number; url: string; delivered: number; dropped: number; lastError: string | null }[];
    const shipper = async (options: Partial<DrainShipperOptions> = {}) => {
      const s = new DrainShipper({
        db, appLog: deps.paths.appLog, accessLog: routerAccessLog(t.dataDir), place: `deck-test:${t.dataDir}`, log: (l) => void logged.push(l), hostname: "deck-test",
        ca: cert, outboundAllow: ["127.0.0.1/32"], refreshMs: 100, reportMs: 100, followMs: 20, batchMs: 100, backoffMinMs: 50, backoffMaxMs: 200,
        ...options,
      });
      shippers.push(s);
      await s.start();
      return s;
    };

    before(async () => {
      t = await openTestDatabase(backend, { secrets: true });
      db = t.db.pool;
      deps = { db, paths: pathsFor(t.dataDir), log: (l: string) => void logged.push(l) } as unknown as DeployDeps;
      mkdirSync(join(t.dataDir, "logs"), { recursive: true });
      dir = await mkdtemp(join(tmpdir(), "deck-drains-"));
      ({ key, cert } = makeCertificate(dir));
      const users = await Promise.all(["admin", "member", "outsider"].map((n) => insertUser(db, { email: `${n}@drains.test`, isAdmin: false })));
      const org = await insertOrganization(db, { name: "Drains", slug: "drains" });
      const other = await insertOrganization(db, { name: "Other", slug: "other" });
      await addMember(db, org.id, users[0]!.id, "admin");
      await addMember(db, org.id, users[1]!.id, "member");
      await addMember(db, other.id, users[2]!.id, "owner");
      for (const name of ["shop", "shopper", "noisy", "guarded", "steady", "patient"]) await insertApp(db, { name, orgId: org.id, createdBy: users[0]!.id });
      [admin, member, outsider] = await Promise.all(users.map((u) => callerFor(db, u, "ssh")));
    });
    after(async () => {
      for (const s of shippers) await s.stop();
      await t?.cleanup();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it("drains:add takes syslog+tls, syslog and https URLs from admins only, and drains:list masks them", async () => {
      const bad = await ssh(admin, "drains:add", "shop", "http://logs.example.com/in");
      assert.deepEqual(bad.err, ['deck: error (bad_argument): unsupported drain URL "http://logs.example.com/***": give syslog+tls://HOST:PORT, syslog://HOST:PORT or https://HOST/PATH']);
      const denied = await ssh(member, "drains:add", "shop", "syslog+tls://logs.example.com:6514");
      assert.match(denied.err[0]!, /^deck: error \(forbidden\): permission denied: drains:manage on shop/);
      assert.deepEqual((await ssh(outsider, "drains:list", "shop")).err, ['deck: error (app_not_found): app "shop" does not exist (see apps:list)']);

      const added = await ssh(admin, "drains:add", "shopper", "https://user:hunter2@logs.example.com/v1/input/TOKEN123?tag=x");
      assert.deepEqual(added.out, [`added drain ${(await drainsOf("shopper"))[0]!.id} to shopper: https://***@logs.example.com/***?*** (app,deck lines from now on)`]);
      const again = await ssh(admin, "drains:add", "shopper", "https://user:hunter2@logs.example.com/v1/input/TOKEN123?tag=x");
      assert.deepEqual(again.err, ["deck: error (conflict): shopper already drains to https://***@logs.example.com/***?*** (drains:list shopper)"]);
      const list = await ssh(admin, "drains:list", "shopper");
      assert.ok(!list.out.join("\n").includes("TOKEN123") && !list.out.join("\n").includes("hunter2"), list.out.join("\n"));
      assert.match(list.out[0]!, /^ID\s+URL\s+SOURCES\s+DELIVERED\s+DROPPED\s+LAST ERROR$/);
      const id = (await drainsOf("shopper"))[0]!.id;
      assert.deepEqual((await ssh(admin, "drains:remove", "shopper", String(id))).out, [`removed drain ${id} from shopper`]);
      assert.deepEqual((await ssh(admin, "drains:remove", "shopper", String(id))).err, [`deck: error (not_found): shopper has no drain ${id} (drains:list shopper shows its drains)`]);
      assert.deepEqual((await ssh(admin, "drains:list", "shopper")).out, ["no drains; add one with drains:add shopper syslog+tls://HOST:PORT"]);
    });

    it("ships each line once, in order, over TLS syslog and to an HTTPS receiver that was down for a while", async () => {
      const syslog = await SyslogTlsReceiver.start(key, cert);
      const receiver = new HttpsReceiver(await freePort(), key, cert);
      try {
        await ssh(admin, "drains:add", "shop", `syslog+tls://127.0.0.1:${syslog.port}`, "--source", "all");
        await ssh(admin, "drains:add", "shop", `https://127.0.0.1:${receiver.port}/ingest/SECRET`);
        const [toSyslog, toHttps] = await drainsOf("shop");
        assert.equal(toHttps!.url, `https://127.0.0.1:${receiver.port}/***`);
        const s = await shipper();

        const appLog = deps.paths.appLog("shop");
        const accessLog = routerAccessLog(t.dataDir);
        const at = Date.parse("2026-03-01T10:00:00.000Z");
        const written = Array.from({ length: 600 }, (_, i) => appLine(at + i, i % 7 === 0 ? "deck" : "app", i % 3 === 0 ? "worker.1" : "web.1", `line ${i} ünïcödé`));
        for (let i = 0; i < written.length; i += 100) appendLines(appLog, written.slice(i, i + 100));
        appendLines(accessLog, [accessLine(at + 1000, "shopper", "GET", "/not-for-shop", 200, 1), accessLine(at + 1001, "shop", "GET", "/for-shop", 201, 2.5, "198.51.100.4")]);

        // Syslog: every line, in order, as RFC 5424 messages; the router's line for shop only.
        await waitFor("601 syslog messages", () => syslog.messages.length >= 601);
        const fromLog = syslog.messages.filter((m) => !m.includes(" router "));
        assert.deepEqual(fromLog.map((m) => m.replace(/^.* - /, "")), written.map((l) => l.replace(/^.*?\]: /, "")));
        assert.equal(fromLog[0], `<14>1 2026-03-01T10:00:00.000Z deck-test shop worker.1 deck - line 0 ünïcödé`);
        assert.equal(fromLog[1], `<14>1 2026-03-01T10:00:00.001Z deck-test shop web.1 app - line 1 ünïcödé`);
        assert.deepEqual(syslog.messages.filter((m) => m.includes(" router ")), [`<14>1 2026-03-01T10:00:01.001Z deck-test shop router router - GET /for-shop 201 2.5ms 198.51.100.4`]);

        // HTTPS: down, so the drain shows why and keeps the lines.
        await waitFor("the https drain's error", async () => (await drainsOf("shop")).find((d) => d.id === toHttps!.id)?.lastError?.includes("connection refused"));
        const more = Array.from({ length: 50 }, (_, i) => appLine(at + 5000 + i, "app", "web.2", `later ${i}`));
        appendLines(appLog, more);
        await receiver.open();
        await waitFor("650 lines at the https receiver", () => receiver.lines.length >= 650);
        await waitFor("the counters saved", async () => (await drainsOf("shop")).map((d) => d.delivered).join() === "651,650");
        assert.deepEqual(receiver.lines.map((l) => `${l.time} ${l.source}[${l.process}]: ${l.text}`), [...written, ...more]);
        assert.deepEqual(receiver.lines[1], { time: "2026-03-01T10:00:00.001Z", app: "shop", source: "app", process: "web.1", text: "line 1 ünïcödé" });
        assert.equal(new Set(receiver.batches).size, receiver.batches.length, "every batch once");
        assert.ok(receiver.batches.length >= 2 && receiver.lines.length / receiver.batches.length <= 500, `${receiver.batches.length} batches`);
        assert.ok(logged.some((l) => l.startsWith(`log drains: drain ${toHttps!.id} of shop failing: 127.0.0.1:${receiver.port}: connection refused`)), logged.join("\n"));
        assert.ok(logged.includes(`log drains: drain ${toHttps!.id} of shop delivering again`), logged.join("\n"));

        const list = await drainsOf("shop");
        assert.deepEqual(list.map((d) => [d.id, d.delivered, d.dropped]), [[toSyslog!.id, 651, 0], [toHttps!.id, 650, 0]]);
        await s.stop();
        for (const d of list) await ssh(admin, "drains:remove", "shop", String(d.id));
      } finally {
        await syslog.close();
        await receiver.close();
      }
    });

    it("drops and counts what does not fit in a drain's buffer while its receiver is down", async () => {
      const receiver = new HttpsReceiver(await freePort(), key, cert);
      try {
        await ssh(admin, "drains:add", "noisy", `https://127.0.0.1:${receiver.port}/`);
        const s = await shipper({ bufferLines: 50 });
        const lines = Array.from({ length: 200 }, (_, i) => appLine(Date.now(), "app", "web.1", `noisy ${i}`));
        appendLines(deps.paths.appLog("noisy"), lines);
        const [drain] = await waitFor("150 dropped lines counted", async () => {
          const d = await drainsOf("noisy");
          return d[0]!.dropped === 150 && d[0]!.lastError !== null && d;
        });
        assert.equal(drain!.lastError, `127.0.0.1:${receiver.port}: connection refused`);
        const shown = await ssh(admin, "drains:list", "noisy");
        assert.match(shown.out[1]!, new RegExp(`^${drain!.id}\\s+https://127\\.0\\.0\\.1:${receiver.port}/\\s+app,deck\\s+0\\s+150\\s+\\d{4}-\\d{2}-\\d{2} [\\d:]{8} 127\\.0\\.0\\.1:${receiver.port}: connection refused$`));

        await receiver.open();
        await waitFor("the 50 buffered lines delivered", async () => (await drainsOf("noisy"))[0]!.delivered === 50);
        assert.deepEqual(receiver.lines.map((l) => l.text), lines.slice(0, 50).map((l) => l.replace(/^.*?\]: /, "")));
        await s.stop();
      } finally {
        await receiver.close();
      }
    });

    it("reaches loopback only when allowed, and checks the receiver's certificate", async () => {
      const syslog = await SyslogTlsReceiver.start(key, cert);
      try {
        await ssh(admin, "drains:add", "guarded", `syslog+tls://127.0.0.1:${syslog.port}`);
        const refused = await shipper({ outboundAllow: [] });
        appendLines(deps.paths.appLog("guarded"), [appLine(Date.now(), "app", "web.1", "to nowhere")]);
        const error = await waitFor("the refusal", async () => (await drainsOf("guarded"))[0]!.lastError ?? undefined);
        assert.match(error, /^127\.0\.0\.1:\d+: 127\.0\.0\.1 is a loopback, private or link-local address, which deck does not send to unless a platform admin allows it \(DECK_OUTBOUND_ALLOW\)$/);
        await refused.stop();

        const untrusting = await shipper({ ca: undefined });
        appendLines(deps.paths.appLog("guarded"), [appLine(Date.now(), "app", "web.1", "to an unknown certificate")]);
        await waitFor("the certificate error", async () => (await drainsOf("guarded"))[0]!.lastError?.includes("self-signed certificate"));
        assert.deepEqual(syslog.messages, []);
        await untrusting.stop();
      } finally {
        await syslog.close();
      }
    });

    it("ships what was written while deck was stopped, once and in order, although the log was trimmed meanwhile", async () => {
      const syslog = await SyslogTlsReceiver.start(key, cert);
      const receiver = new HttpsReceiver(await freePort(), key, cert);
      await receiver.open();
      try {
        await ssh(admin, "drains:add", "steady", `syslog+tls://127.0.0.1:${syslog.port}`);
        await ssh(admin, "drains:add", "steady", `https://127.0.0.1:${receiver.port}/`);
        const appLog = deps.paths.appLog("steady");
        const at = Date.parse("2026-03-02T10:00:00.000Z");
        // About 200 bytes a line, so that a trim to 30 KB cuts lines that were shipped and keeps the rest.
        const written = Array.from({ length: 300 }, (_, i) => appLine(at + i, "app", "web.1", `steady ${i} ${"z".repeat(150)}`));
        const textOf = (l: string) => l.replace(/^.*?\]: /, "");
        const syslogTexts = () => syslog.messages.map((m) => m.replace(/^.* - /, ""));

        const first = await shipper();
        appendLines(appLog, written.slice(0, 100));
        await waitFor("100 lines at both receivers", () => syslog.messages.length >= 100 && receiver.lines.length >= 100);
        await first.stop();
        assert.deepEqual((await drainsOf("steady")).map((d) => [d.delivered, d.dropped]), [[100, 0], [100, 0]]);

        // While no deck server runs: the app writes on, and the retention job cuts the log's start.
        appendLines(appLog, written.slice(100, 200));
        const trim = await trimLog(appLog, { maxBytes: 30 * 1024, beforeMs: 0 });
        assert.ok(trim.removedBytes >= 8192 && trim.removedBytes < 100 * 200, `${trim.removedBytes} bytes trimmed`);

        const second = await shipper();
        await waitFor("200 lines at both receivers", () => syslog.messages.length >= 200 && receiver.lines.length >= 200);
        appendLines(appLog, written.slice(200));
        await waitFor("300 lines at both receivers", () => syslog.messages.length >= 300 && receiver.lines.length >= 300);
        await waitFor("the counters saved", async () => (await drainsOf("steady")).map((d) => d.delivered).join() === "300,300");
        assert.deepEqual(syslogTexts(), written.map(textOf));
        assert.deepEqual(receiver.lines.map((l) => l.text), written.map(textOf));
        assert.deepEqual((await drainsOf("steady")).map((d) => d.dropped), [0, 0]);
        await second.stop();
        for (const d of await drainsOf("steady")) await ssh(admin, "drains:remove", "steady", String(d.id));
      } finally {
        await syslog.close();
        await receiver.close();
      }
    });

    it("delivers after a restart what a drain held, or dropped, for a receiver that was down when deck stopped", async () => {
      const receiver = new HttpsReceiver(await freePort(), key, cert);
      try {
        await ssh(admin, "drains:add", "patient", `https://127.0.0.1:${receiver.port}/`);
        const appLog = deps.paths.appLog("patient");
        const lines = Array.from({ length: 40 }, (_, i) => appLine(Date.now(), "app", "web.1", `patient ${i}`));
        // A buffer of 20: of 30 lines, 10 are dropped while the receiver is down.
        const first = await shipper({ bufferLines: 20 });
        appendLines(appLog, lines.slice(0, 30));
        await waitFor("the receiver's error and 10 dropped lines", async () => {
          const [d] = await drainsOf("patient");
          return d!.lastError?.includes("connection refused") && d!.dropped === 10;
        });
        await first.stop();
        // What the drain held at stop is read again at the next start, and so are the lines it dropped
        // after it: drains:list counts nothing lost.
        assert.deepEqual((await drainsOf("patient")).map((d) => [d.delivered, d.dropped]), [[0, 0]]);

        appendLines(appLog, lines.slice(30));
        await receiver.open();
        const second = await shipper();
        await waitFor("40 lines at the receiver", () => receiver.lines.length >= 40);
        await waitFor("the counters saved", async () => (await drainsOf("patient"))[0]!.delivered === 40);
        assert.deepEqual(receiver.lines.map((l) => l.text), lines.map((l) => l.replace(/^.*?\]: /, "")));
        assert.equal((await drainsOf("patient"))[0]!.dropped, 0);
        await second.stop();
        for (const d of await drainsOf("patient")) await ssh(admin, "drains:remove", "patient", String(d.id));
      } finally {
        await receiver.close();
      }
    });
  });
}
