/**
 * Router nodes (`deck server --role router`): real node processes started with the real CLI, reading
 * routes from the same PostgreSQL as a real deck server, in front of the same app.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import type { RouterControl } from "../core/index.ts";
import { publishRoutes } from "../router/route-publisher.ts";
import { embeddedDatabaseUrl, openDatabase } from "../store/index.ts";
import { databaseBackends } from "./helpers/database.ts";
import { stopChild } from "./helpers/processes.ts";
import { commitFiles, Deck, freePort, httpGet, makeRepo, nodeApp, ROOT, run } from "./helpers/deck.ts";

const DECK = join(ROOT, "bin", "deck");
/** DECK_UPSTREAM_HOST of the deck server the nodes stand in front of (all of 127.0.0.0/8 is this machine). */
const UPSTREAM_HOST = "127.0.0.2";
const backends = await databaseBackends();

/** Environment of a process that must not inherit deck settings from the test's own environment. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("DECK_") && k !== "DATABASE_URL" && k !== "REDIS_URL") env[k] = v;
  return { ...env, DECK_HOST: "127.0.0.1", DECK_RATE_LIMIT: "0", ...extra };
}

/** One `deck server --role router` process on free ports in a temp dir of its own. */
class RouterNodeProcess {
  child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  private constructor(readonly dir: string, readonly port: number, readonly httpsPort: number, readonly databaseUrl: string, readonly env: Record<string, string>) {}

  static async start(databaseUrl: string, env: Record<string, string> = {}): Promise<RouterNodeProcess> {
    const node = new RouterNodeProcess(await mkdtemp(join(tmpdir(), "deck-node-")), await freePort(), await freePort(), databaseUrl, env);
    await node.spawn();
    return node;
  }

  get logFile(): string {
    return join(this.dir, "node.log");
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
  }

  private async spawn(): Promise<void> {
    const out = openSync(this.logFile, "a");
    const env = cleanEnv({ DECK_DATA_DIR: join(this.dir, "data"), DECK_HTTP_PORT: String(this.port), DECK_HTTPS_PORT: String(this.httpsPort), DATABASE_URL: this.databaseUrl, ...this.env });
    const child = spawn(DECK, ["server", "--role", "router"], { cwd: this.dir, env, stdio: ["ignore", out, out] });
    closeSync(out);
    this.child = child;
    this.exited = new Promise((r) => child.once("exit", () => r()));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode) throw new Error(`router node exited: ${this.log().slice(-2000)}`);
      if (this.log().includes(" serving http://")) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`router node did not start within 60s: ${this.log().slice(-2000)}`);
  }

  get(host: string, path = "/", agent?: http.Agent) {
    return httpGet(this.port, host, path, { agent, timeoutMs: 20_000 });
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    await stopChild(child, this.exited, 15_000);
    if (process.env.KEEP_NODE_LOGS) process.stderr.write(`--- ${this.logFile}\n${this.log()}`);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** GET over HTTPS with SNI `host`, trusting only `ca`: fails unless the node presents that certificate. */
function httpsGet(port: number, host: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, servername: host, headers: { host }, ca, agent: false, timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
  });
}

/** A TCP relay to PostgreSQL that the test can cut and restore, like a network outage. */
class Relay {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();

  private constructor(readonly port: number, private readonly target: { host: string; port: number }) {}

  static async start(target: { host: string; port: number }): Promise<Relay> {
    const relay = new Relay(await freePort(), target);
    await relay.open();
    return relay;
  }

  /** The same URL with the relay's address in place of the server's. */
  static urlThrough(url: string, port: number): string {
    const u = new URL(url);
    u.hostname = "127.0.0.1";
    u.port = String(port);
    return u.toString();
  }

  open(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("error", () => undefined);
        s.once("close", () => this.sockets.delete(s));
      }
      client.pipe(upstream).pipe(client);
      client.once("close", () => upstream.destroy());
      upstream.once("close", () => client.destroy());
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
  }

  /** Refuses new connections and drops the open ones. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

/** A web app that exits as soon as it gets SIGTERM; `/slow?ms=N` sends its headers, then ends after N ms. */
function slowApp(version: string): Record<string, string> {
  const server = `const http = require("http");
http.createServer((req, res) => {
  const slow = /^\\/slow\\?ms=(\\d+)/.exec(req.url);
  if (!slow) return res.end("${version} fast\\n");
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.write("${version} start\\n");
  setTimeout(() => res.end("${version} done\\n"), Number(slow[1]));
}).listen(process.env.PORT);
process.on("SIGTERM", () => process.exit(0));
`;
  return { "package.json": JSON.stringify({ name: "slowpoke", version: "1.0.0", private: true, scripts: { start: "node server.js" } }), "server.js": server, Procfile: "web: node server.js\n" };
}

/** A GET whose headers and whole body are awaited separately. */
function streamGet(port: number, host: string, path: string): { headers: Promise<{ status: number }>; done: Promise<{ body: string; at: number }> } {
  let headers!: (v: { status: number }) => void;
  let done!: (v: { body: string; at: number }) => void;
  let headersFailed!: (e: Error) => void;
  let doneFailed!: (e: Error) => void;
  const headersP = new Promise<{ status: number }>((r, j) => ((headers = r), (headersFailed = j)));
  const doneP = new Promise<{ body: string; at: number }>((r, j) => ((done = r), (doneFailed = j)));
  const failed = (e: Error) => {
    headersFailed(e);
    doneFailed(e);
  };
  const req = http.get({ host: "127.0.0.1", port, path, headers: { host }, agent: false }, (res) => {
    headers({ status: res.statusCode ?? 0 });
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (c) => (body += c));
    res.on("end", () => done({ body, at: Date.now() }));
    res.on("aborted", () => failed(new Error(`response cut off after ${JSON.stringify(body)}`)));
    res.on("error", (e) => failed(e));
  });
  req.on("error", (e) => failed(e));
  doneP.catch(() => undefined);
  return { headers: headersP, done: doneP };
}

async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`${what} did not happen within ${deadlineMs} ms${last ? ` (last error: ${(last as Error).message})` : ""}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("deck server --role router (no database)", () => {
  it("exits 2 with one line when DATABASE_URL is not set", async () => {
    const dir = await mkdtemp(join(tmpdir(), "deck-node-"));
    try {
      const r = await run(DECK, ["server", "--role", "router"], { cwd: dir, env: cleanEnv({ DECK_DATA_DIR: join(dir, "data"), DECK_HTTP_PORT: String(await freePort()) }) });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /^deck: --role router needs DATABASE_URL/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses an unknown role with one line", async () => {
    const r = await run(DECK, ["server", "--role", "builder-of-worlds"], { env: cleanEnv({}) });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^deck: unknown role "builder-of-worlds"; roles: all, router, builder\n$/);
  });
});

for (const backend of backends) {
  describe(`router nodes (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let work: string;
    let databaseUrl: string;
    const nodes: RouterNodeProcess[] = [];
    const relays: Relay[] = [];

    let masterKey: string;
    const startNode = async (url = databaseUrl, env: Record<string, string> = {}) => {
      // The deck server's master key opens the private keys of stored certificates.
      const node = await RouterNodeProcess.start(url, { DECK_MASTER_KEY: masterKey, ...env });
      nodes.push(node);
      return node;
    };

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-work-"));
      // Apps are published on another loopback address, as on a private network: routes must name it.
      deck = await Deck.start({ backend, env: { DECK_UPSTREAM_HOST: UPSTREAM_HOST } });
      const url = backend.name === "external" ? backend.url : await embeddedDatabaseUrl(deck.dataDir);
      assert.ok(url, "the embedded database has a URL once deck started");
      databaseUrl = url;
      masterKey = readFileSync(join(deck.dataDir, "keys", "master.key"), "utf8").trim();
    });
    after(async () => {
      for (const node of nodes) await node.stop();
      for (const relay of relays) await relay.cut();
      await deck?.stop();
      await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    it("`deck database:url` prints the URL router nodes use", async () => {
      const r = await run(DECK, ["database:url"], { cwd: deck.dir, env: deck.env() });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), databaseUrl);
    });

    it("two nodes serve the app and a deploy under load switches both with zero failed requests", async () => {
      const repo = await makeRepo(join(work, "zd"), nodeApp("r1", { slowStartMs: 300 }));
      const first = await deck.push(repo, "zd");
      assert.equal(first.code, 0, first.stderr);
      const db = new pg.Client({ connectionString: databaseUrl });
      await db.connect();
      const row = await db.query<{ route: { upstreams: string[] } }>("SELECT route FROM routes WHERE app = 'zd'").finally(() => db.end());
      const upstreams = row.rows[0]?.route.upstreams ?? [];
      assert.equal(upstreams.length, 1, JSON.stringify(row.rows));
      assert.match(upstreams[0], new RegExp(`^${UPSTREAM_HOST.replaceAll(".", "\\.")}:\\d+$`), "the route names DECK_UPSTREAM_HOST");
      const a = await startNode();
      const b = await startNode();
      for (const node of [a, b]) {
        const r = await node.get("zd.localhost");
        assert.equal(r.status, 200, `node on :${node.port}: ${r.body}`);
        assert.match(r.body, /^r1 /);
      }

      // Steady load through the built-in router and both nodes, with slow requests that span the switch.
      const targets: [string, number][] = [["deck", deck.ports.http], ["node A", a.port], ["node B", b.port]];
      const failures: string[] = [];
      const seen = new Map<string, number>();
      let stop = false;
      const agents: http.Agent[] = [];
      const client = async (name: string, port: number, path: string) => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        agents.push(agent);
        while (!stop) {
          try {
            const r = await httpGet(port, "zd.localhost", path, { agent, timeoutMs: 20_000 });
            const version = /^(r\d)/.exec(r.body)?.[1];
            if (r.status !== 200 || !version) failures.push(`${name}: ${r.status} ${r.body.slice(0, 80)}`);
            else seen.set(`${name} ${version}`, (seen.get(`${name} ${version}`) ?? 0) + 1);
          } catch (e) {
            failures.push(`${name}: ${(e as Error).message}`);
          }
        }
      };
      const clients = targets.flatMap(([name, port]) => [client(name, port, "/"), client(name, port, "/"), client(name, port, "/slow")]);
      await new Promise((r) => setTimeout(r, 1_000));
      await commitFiles(repo, nodeApp("r2", { slowStartMs: 300 }), "release 2");
      const push = await deck.push(repo, "zd");
      assert.equal(push.code, 0, push.stderr);
      // The deploy waited for both nodes to move off the old release, so they serve r2 already.
      const afterPush = await Promise.all([a, b].map((n) => n.get("zd.localhost")));
      for (const r of afterPush) assert.match(r.body, /^r2 /);
      await new Promise((r) => setTimeout(r, 500));
      stop = true;
      await Promise.all(clients);
      for (const agent of agents) agent.destroy();

      const total = [...seen.values()].reduce((x, y) => x + y, 0);
      assert.deepEqual(failures, [], `${failures.length} failed of ${total + failures.length}`);
      for (const [name] of targets) {
        for (const v of ["r1", "r2"]) assert.ok(seen.has(`${name} ${v}`), `${name} never answered from ${v}: ${JSON.stringify([...seen])}`);
      }
    });

    it("a deploy keeps the old release until a slow request in flight through a node has finished", async () => {
      const node = nodes[0]!;
      const repo = await makeRepo(join(work, "slowpoke"), slowApp("s1"));
      assert.equal((await deck.push(repo, "slowpoke")).code, 0);
      await until("the node serving slowpoke", 5_000, async () => ((await node.get("slowpoke.localhost")).status === 200 ? true : undefined));
      // The app exits at once on SIGTERM, so stopping it early would cut this request off.
      const slow = streamGet(node.port, "slowpoke.localhost", "/slow?ms=12000");
      assert.equal((await slow.headers).status, 200);
      await commitFiles(repo, slowApp("s2"), "release 2");
      const push = await deck.push(repo, "slowpoke");
      assert.equal(push.code, 0, push.stderr);
      const switched = push.lines.find((l) => l.text.includes("Switched traffic to v2"));
      assert.ok(switched, push.stderr);
      const done = await slow.done;
      assert.equal(done.body, "s1 start\ns1 done\n");
      assert.ok(done.at > switched.at, "the slow request was still in flight when traffic switched");
      assert.match((await node.get("slowpoke.localhost")).body, /^s2 /);
    });

    it("a domain added to the app is served by a node within a second", async () => {
      const node = nodes[0]!;
      assert.equal((await node.get("www.zd-example.test")).status, 404);
      const added = await deck.ssh("domains:add zd www.zd-example.test");
      assert.equal(added.code, 0, added.stderr);
      const since = Date.now();
      const r = await until("the node serving the new domain", 1_000, async () => {
        const res = await node.get("www.zd-example.test");
        return res.status === 200 ? res : undefined;
      });
      assert.match(r.body, /^r2 /, `after ${Date.now() - since} ms`);
    });

    it("an ACME challenge answer set by the deck server is answered by every node", async () => {
      // The deck server's side of an order, as CertManager does it: through the publishing RouterControl.
      const dataDir = await mkdtemp(join(work, "publisher-"));
      const database = await openDatabase({ dataDir, databaseUrl, log: () => {} });
      const local = { setAcmeChallenge: async () => {}, removeAcmeChallenge: async () => {} } as unknown as RouterControl;
      const publisher = publishRoutes(local, { db: database.pool });
      try {
        const path = "/.well-known/acme-challenge/tok_123-abc";
        for (const node of nodes) assert.equal((await node.get("shop.example.org", path)).status, 404);
        await publisher.setAcmeChallenge("tok_123-abc", "tok_123-abc.thumbprint");
        for (const node of nodes) {
          const r = await until("the node answering the challenge", 2_000, async () => {
            const res = await node.get("shop.example.org", path);
            return res.status === 200 ? res : undefined;
          });
          assert.equal(r.body, "tok_123-abc.thumbprint");
        }
        await publisher.removeAcmeChallenge("tok_123-abc");
        for (const node of nodes) await until("the node forgetting the challenge", 2_000, async () => ((await node.get("shop.example.org", path)).status === 404 ? true : undefined));
      } finally {
        await database.close();
      }
    });

    it("a certificate added with certs:add is served over HTTPS by every node", async () => {
      const dir = await mkdtemp(join(tmpdir(), "deck-cert-"));
      try {
        const [cert, key] = [join(dir, "cert.pem"), join(dir, "key.pem")];
        execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
          "-days", "30", "-subj", "/CN=www.zd-example.test", "-addext", "subjectAltName=DNS:www.zd-example.test"], { stdio: "ignore" });
        const bundle = readFileSync(cert, "utf8") + readFileSync(key, "utf8");
        const added = await run("ssh", [...deck.sshArgs(), "deck@127.0.0.1", "certs:add zd"], { input: bundle });
        assert.equal(added.code, 0, added.stderr);
        for (const node of nodes.slice(0, 2)) {
          const r = await until(`node :${node.port} serving the certificate`, 1_000, async () => {
            const res = await httpsGet(node.httpsPort, "www.zd-example.test", readFileSync(cert, "utf8"));
            return res.status === 200 ? res : undefined;
          });
          assert.match(r.body, /^r2 /);
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("a node started after a deploy serves the current routes", async () => {
      const late = await startNode();
      const r = await late.get("zd.localhost");
      assert.equal(r.status, 200, r.body);
      assert.match(r.body, /^r2 /);
      assert.equal((await late.get("www.zd-example.test")).status, 200);
    });

    it("a node started with DECK_METRICS_PORT serves its per-app counters and process metrics to Prometheus", async () => {
      const metricsPort = await freePort();
      const node = await startNode(databaseUrl, { DECK_METRICS_PORT: String(metricsPort) });
      assert.match(node.log(), new RegExp(`metrics on http://127\\.0\\.0\\.1:${metricsPort}/metrics`));
      for (let i = 0; i < 3; i++) assert.equal((await node.get("zd.localhost")).status, 200);

      const m = await httpGet(metricsPort, "127.0.0.1", "/metrics");
      assert.equal(m.status, 200, m.body);
      assert.match(String(m.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
      assert.match(m.body, /^deck_router_requests_total\{app="zd",code="2xx"\} 3$/m);
      assert.match(m.body, /^deck_router_request_duration_seconds_count\{app="zd"\} 3$/m);
      assert.match(m.body, /^deck_router_sent_bytes_total\{app="zd"\} [1-9]\d*$/m);
      assert.match(m.body, /^deck_router_node_process_resident_memory_bytes [1-9]\d*$/m);

      const other = await httpGet(metricsPort, "127.0.0.1", "/");
      assert.equal(other.status, 404);
      assert.equal(other.body, "this port serves GET /metrics only\n");
    });

    it("a node samples its own traffic for `metrics APP` and checks the app through itself for `uptime APP`, and forgets its checks when it stops", async () => {
      const node = await startNode(databaseUrl, { DECK_METRICS_INTERVAL: "1", DECK_UPTIME_INTERVAL: "1" });
      const source = `router:${hostname()}:${node.port}`;
      const sql = async <T,>(text: string, values: unknown[]): Promise<T[]> => {
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        try {
          return (await client.query(text, values)).rows as T[];
        } finally {
          await client.end();
        }
      };
      // The first sample is the baseline; these requests are counted in the next ones.
      await until("the node's first sample round", 10_000, async () => ((await sql<{ n: string }>("SELECT count(*) AS n FROM uptime_probes WHERE location = $1", [`${hostname()}:${node.port}`]))[0]!.n !== "0" ? true : undefined));
      for (let i = 0; i < 25; i++) assert.equal((await node.get("zd.localhost")).status, 200);
      const counted = await until("the node's requests in the samples", 15_000, async () => {
        const [row] = await sql<{ n: string | null }>("SELECT sum(requests) AS n FROM metric_samples m JOIN apps a ON a.id = m.app_id WHERE a.name = 'zd' AND m.source = $1", [source]);
        return Number(row?.n ?? 0) >= 25 ? Number(row!.n) : undefined;
      });
      assert.equal(counted, 25, "exactly the requests sent through the node: its own uptime checks are not metered");
      // What users read adds the node's rows to the deck server's.
      const m = await deck.ssh("metrics zd --since 5m --json");
      assert.equal(m.code, 0, m.stderr);
      const points = (JSON.parse(m.stdout) as { points: Array<{ requestsPerSecond: number; seconds: number }> }).points;
      const total = Math.round(points.reduce((a, p) => a + p.requestsPerSecond * p.seconds, 0));
      assert.ok(total >= 25, `metrics zd shows ${total} requests in 5 minutes, the node's 25 among them`);
      const checks = async () => (JSON.parse((await deck.ssh("uptime zd --json")).stdout) as { checks: number }).checks;
      const before = await checks();
      await until("checks from the node", 15_000, async () => ((await checks()) >= before + 3 ? true : undefined));

      await node.stop();
      const left = await sql<{ n: string }>("SELECT count(*) AS n FROM uptime_probes WHERE location = $1", [`${hostname()}:${node.port}`]);
      assert.equal(left[0]!.n, "0", "a stopped node's probe state goes with it");
    });

    it("a node that loses PostgreSQL keeps serving its last routes and catches up when it is back", async () => {
      const target = new URL(databaseUrl);
      const relay = await Relay.start({ host: target.hostname, port: Number(target.port || 5432) });
      relays.push(relay);
      const node = await startNode(Relay.urlThrough(databaseUrl, relay.port));
      assert.match((await node.get("zd.localhost")).body, /^r2 /);

      await relay.cut();
      const added = await deck.ssh("domains:add zd api.zd-example.test");
      assert.equal(added.code, 0, added.stderr);
      await until("the node noticing the lost database", 10_000, async () => (/database: .*serving the last routes|listening connection was lost/.test(node.log()) ? true : undefined));
      for (let i = 0; i < 20; i++) {
        const r = await node.get("zd.localhost");
        assert.equal(r.status, 200, r.body);
        assert.match(r.body, /^r2 /);
      }
      assert.equal((await node.get("api.zd-example.test")).status, 404, "a change made while the node was cut off cannot have reached it");

      await relay.open();
      const r = await until("the node serving the change made while it was cut off", 30_000, async () => {
        const res = await node.get("api.zd-example.test");
        return res.status === 200 ? res : undefined;
      });
      assert.match(r.body, /^r2 /);
    });

    it("a stopped node leaves router_nodes, so deploys no longer wait for it", async () => {
      const node = nodes[0]!;
      const label = `%:${node.port}`;
      const count = async () => {
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        try {
          return Number((await client.query("SELECT count(*) AS n FROM router_nodes WHERE label LIKE $1", [label])).rows[0].n);
        } finally {
          await client.end();
        }
      };
      assert.equal(await count(), 1);
      await node.stop();
      assert.equal(await count(), 0);
      await assert.rejects(httpGet(node.port, "zd.localhost", "/", { timeoutMs: 2_000 }));
    });
  });
}
