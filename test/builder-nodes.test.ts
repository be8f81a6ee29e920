/**
 * Builder nodes (`deck server --role builder`): a real deck server that builds nothing itself
 * (DECK_BUILD_CONCURRENCY=0) and real builder node processes started with the real CLI, each with a data
 * dir of its own, sharing the server's PostgreSQL. Pushes go over real git and SSH; the app is served
 * through the real router.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { createDockerClient, firewallTableFor, removeDockerFirewall, scopeFor } from "../runtime/index.ts";
import { embeddedDatabaseUrl } from "../store/index.ts";
import { buildBaseImage, dockerSkipReason, type BaseImage } from "./helpers/base-image.ts";
import { BuilderNodeProcess, cleanEnv } from "./helpers/builder-node.ts";
import { commitFiles, Deck, makeRepo, nodeApp, ROOT, run, type TimedLine } from "./helpers/deck.ts";

const DECK = join(ROOT, "bin", "deck");

async function until<T>(what: string, deadlineMs: number, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what} did not happen within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function request(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("deck server --role builder", () => {
  let deck: Deck;
  let work: string;
  let databaseUrl: string;
  let masterKey: string;
  const nodes: BuilderNodeProcess[] = [];
  const startNode = async (env: Record<string, string> = {}) => {
    const node = await BuilderNodeProcess.start({ DATABASE_URL: databaseUrl, DECK_MASTER_KEY: masterKey, DECK_BUILD_CONCURRENCY: "2", ...env });
    nodes.push(node);
    return node;
  };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-work-"));
    // The deck server builds nothing itself: every build waits for a builder node.
    deck = await Deck.start({ backend: { name: "embedded" }, env: { DECK_BUILD_CONCURRENCY: "0" } });
    const url = await embeddedDatabaseUrl(deck.dataDir);
    assert.ok(url, "the embedded database has a URL once deck started");
    databaseUrl = url;
    masterKey = readFileSync(join(deck.dataDir, "keys", "master.key"), "utf8").trim();
  });
  after(async () => {
    for (const node of nodes) await node.remove();
    // The builder nodes' network rules go with `deck down` of their data dirs.
    for (const node of nodes) await run(DECK, ["down"], { env: cleanEnv({ DECK_DATA_DIR: node.dataDir }) }).catch(() => undefined);
    await deck?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("refuses to start without a database, with one line", async () => {
    const r = await run(DECK, ["server", "--role", "builder"], { env: cleanEnv({ DECK_DATA_DIR: join(work, "nodb") }) });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^deck: --role builder needs DATABASE_URL/);
  });

  it("a push waits for a builder node, is built there with the app's config, and is served by the deck server", async () => {
    assert.equal((await deck.ssh("apps:create hello")).code, 0);
    const set = await deck.ssh("config:set hello GREETING=from-the-builder");
    assert.equal(set.code, 0, set.stderr);
    const repo = await makeRepo(join(work, "hello"), nodeApp("v1", { buildScript: "echo build sees GREETING=$GREETING" }));
    const lines: TimedLine[] = [];
    const pushing = deck.push(repo, "hello", { onLine: (l) => lines.push(l) });
    // No builder node yet: the push says so and waits.
    await until("the push to say it waits for a builder node", 60_000, () => (lines.some((l) => /no builder node is running: start one \(deck server --role builder\)/.test(l.text)) ? true : undefined));
    const node = await startNode();
    const push = await pushing;
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stderr, /remote: -----> Building on builder node builder@/);
    assert.match(push.stderr, /remote: .*build sees GREETING=from-the-builder/, "the build ran with the app's config vars");
    assert.match(push.stderr, /remote: -----> v1 deployed in/);
    const page = await deck.get("hello");
    assert.equal(page.status, 200);
    assert.match(page.body, /^v1 from-the-builder /);
    assert.match(node.log(), /build \d+: hello [0-9a-f]{7} for http:\/\/127\.0\.0\.1:\d+/);
    assert.match(node.log(), /build \d+: succeeded in/);

    // The artifact lives with the deck server; the builder node kept nothing of the build.
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      const row = await db.query<{ slug_path: string; status: string }>("SELECT b.slug_path, b.status FROM builds b JOIN apps a ON a.id = b.app_id WHERE a.name = 'hello' ORDER BY b.id DESC LIMIT 1");
      assert.equal(row.rows[0]?.status, "succeeded");
      assert.ok(row.rows[0]!.slug_path.startsWith(deck.dataDir), row.rows[0]!.slug_path);
      assert.ok(existsSync(join(row.rows[0]!.slug_path, "server.js")), "the slug was handed to the deck server");
      assert.equal((await db.query("SELECT count(*)::int AS n FROM build_queue")).rows[0].n, 0, "the build left the line");
    } finally {
      await db.end();
    }
    assert.deepEqual(await readdir(join(node.dataDir, "builds")), []);

    // A failing build on the builder node rejects the push; the live app keeps serving.
    await commitFiles(repo, nodeApp("v2", { buildScript: "echo about to fail; exit 3" }), "broken build");
    const broken = await deck.push(repo, "hello");
    assert.notEqual(broken.code, 0);
    assert.match(broken.stderr, /remote: .*about to fail/);
    assert.match(broken.stderr, /Deploy failed/);
    assert.match((await deck.get("hello")).body, /^v1 /);
  });

  it("a builder node killed during a build fails that push with a message, and the next node builds the next push", async () => {
    if (!nodes.some((n) => n.child)) await startNode();
    const repo = await makeRepo(join(work, "slow"), nodeApp("s1", { buildScript: "echo slow build starting; sleep 120" }));
    const lines: TimedLine[] = [];
    const pushing = deck.push(repo, "slow", { onLine: (l) => lines.push(l) });
    await until("the build to start on the builder node", 120_000, () => (lines.some((l) => l.text.includes("slow build starting")) ? true : undefined));
    const pid = Number(/Building on builder node builder@\S+:(\d+)/.exec(lines.map((l) => l.text).join("\n"))?.[1]);
    const building = nodes.find((n) => n.child?.pid === pid);
    assert.ok(building, `the push names the builder node running it (pid ${pid})`);
    await building.kill9();
    const push = await pushing;
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, /builder node builder@\S+ stopped during the build; push again/);

    if (!nodes.some((n) => n.child)) await startNode();
    await commitFiles(repo, nodeApp("s2"), "quick build");
    const again = await deck.push(repo, "slow");
    assert.equal(again.code, 0, again.stderr);
    assert.match((await deck.get("slow")).body, /^s2 /);
  });

  it("builds:cancel stops the build on the builder node", async () => {
    if (!nodes.some((n) => n.child)) await startNode();
    // A sleep no other test runs, to find the build's process by.
    const repo = await makeRepo(join(work, "cancelled"), nodeApp("c1", { buildScript: "echo cancellable build starting; sleep 1173" }));
    const lines: TimedLine[] = [];
    const pushing = deck.push(repo, "cancelled", { onLine: (l) => lines.push(l) });
    await until("the build to start on the builder node", 120_000, () => (lines.some((l) => l.text.includes("cancellable build starting")) ? true : undefined));
    const sleeping = () => run("pgrep", ["-f", "sleep 1173"]).then((r) => r.stdout.trim());
    assert.notEqual(await sleeping(), "", "the build runs");
    const cancel = await deck.ssh("builds:cancel cancelled");
    assert.equal(cancel.code, 0, cancel.stderr);
    const push = await pushing;
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, /remote: deck: push rejected: build cancelled by admin@example\.com/);
    await until("the build on the builder node to stop", 10_000, async () => ((await sleeping()) === "" ? true : undefined));
    await until("the builder node to log the cancel", 10_000, () => (nodes.some((n) => /build \d+: cancelled: build cancelled in/.test(n.log())) ? true : undefined));
  });

  it("the build exchange answers only with the build's secret", async () => {
    for (const path of ["/internal/build-jobs/1/source", "/internal/build-jobs/999999/source", "/internal/build-jobs/x/result"]) {
      const r = await request(deck.ports.api, "GET", path, { authorization: "Bearer not-the-secret" });
      assert.ok([401, 404].includes(r.status), `${path}: ${r.status} ${r.body}`);
      assert.doesNotMatch(r.body, /server\.js|package\.json/);
    }
  });
});

/**
 * A second Docker engine on this machine, with its own images, socket and state: the builder node's,
 * as on another host. Its bridges get no NAT (the test needs none) and its storage is plain copies.
 */
class SecondEngine {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  private constructor(readonly dir: string) {}

  get host(): string {
    return `unix://${join(this.dir, "docker.sock")}`;
  }

  /** Its default bridge (deck's network rules treat `deckd*` interfaces as deck's). */
  readonly bridge = `deckd2${Math.random().toString(16).slice(2, 8)}`;

  static async start(): Promise<SecondEngine> {
    const engine = new SecondEngine(await mkdtemp(join(tmpdir(), "deck-engine-")));
    // A default bridge of its own: given none (or `--bridge none`), dockerd takes docker0 for itself
    // or removes it, and the machine's engine loses its own.
    for (const argv of [["link", "add", engine.bridge, "type", "bridge"], ["addr", "add", "10.254.213.1/24", "dev", engine.bridge], ["link", "set", engine.bridge, "up"]]) {
      const r = await run("ip", argv);
      if (r.code !== 0) throw new Error(`ip ${argv.join(" ")}: ${r.stderr}`);
    }
    const out = openSync(join(engine.dir, "dockerd.log"), "a");
    const child = spawn("dockerd", [
      "--data-root", join(engine.dir, "data"), "--exec-root", join(engine.dir, "exec"), "--pidfile", join(engine.dir, "dockerd.pid"),
      "--host", engine.host, "--bridge", engine.bridge, "--iptables=false", "--ip6tables=false", "--storage-driver", "vfs",
    ], { stdio: ["ignore", out, out] });
    closeSync(out);
    engine.child = child;
    engine.exited = new Promise((r) => child.once("exit", () => r()));
    await until("the second Docker engine to answer", 60_000, async () => {
      if (child.exitCode !== null) throw new Error(`dockerd exited: ${readFileSync(join(engine.dir, "dockerd.log"), "utf8").slice(-1500)}`);
      const r = await run("docker", ["--host", engine.host, "version", "--format", "{{.Server.Version}}"]);
      return r.code === 0 ? true : undefined;
    });
    return engine;
  }

  docker(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return run("docker", ["--host", this.host, ...args]);
  }

  /** Copies an image of the machine's engine into this one (`docker save | docker load`). */
  async copyImage(tag: string): Promise<void> {
    const r = await run("bash", ["-o", "pipefail", "-c", `docker save ${tag} | docker --host ${this.host} load`]);
    if (r.code !== 0) throw new Error(`copying ${tag}: ${r.stderr}`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null) {
      // Containers and networks of this engine go with it.
      const ids = (await this.docker("ps", "-aq")).stdout.split("\n").filter(Boolean);
      if (ids.length) await this.docker("rm", "-f", ...ids);
      child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.exited, new Promise((r) => (timer = setTimeout(r, 20_000)))]);
      clearTimeout(timer);
      if (child.exitCode === null) {
        child.kill("SIGKILL");
        await this.exited;
      }
    }
    await run("umount", ["-R", join(this.dir, "exec")]).catch(() => undefined);
    await run("ip", ["link", "del", this.bridge]).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** A Dockerfile app whose answer names its version. */
function dockerfileApp(baseTag: string, version: string): Record<string, string> {
  return {
    Dockerfile: [`FROM ${baseTag}`, "WORKDIR /srv", "COPY server.js .", `RUN node -e "console.log('compiling ${version}')"`, 'CMD ["node", "server.js"]', ""].join("\n"),
    "server.js": `require("http").createServer((req, res) => res.end("${version} from a Dockerfile\\n")).listen(process.env.PORT);
process.on("SIGTERM", () => process.exit(0));
`,
  };
}

describe("deck server --role builder with DECK_RUNTIME=docker, the builder node on an engine of its own", { skip: dockerSkipReason() }, () => {
  const client = createDockerClient();
  let base: BaseImage;
  let engine: SecondEngine;
  let deck: Deck;
  let node: BuilderNodeProcess;
  let work: string;
  let scope: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-work-"));
    base = await buildBaseImage();
    engine = await SecondEngine.start();
    await engine.copyImage(base.tag);
    deck = await Deck.start({ backend: { name: "embedded" }, env: { DECK_RUNTIME: "docker", DECK_BASE_IMAGE: base.tag, DECK_BUILD_CONCURRENCY: "0" } });
    scope = scopeFor(deck.dataDir);
    const url = await embeddedDatabaseUrl(deck.dataDir);
    assert.ok(url);
    node = await BuilderNodeProcess.start({
      DATABASE_URL: url, DECK_MASTER_KEY: readFileSync(join(deck.dataDir, "keys", "master.key"), "utf8").trim(),
      DECK_RUNTIME: "docker", DECK_BASE_IMAGE: base.tag, DOCKER_HOST: engine.host, DECK_BUILD_CONCURRENCY: "1",
    });
  });
  after(async () => {
    await node?.remove();
    await deck?.stop();
    if (scope) {
      for (const c of await client.listContainers([`deck.scope=${scope}`]).catch(() => [])) await client.removeContainer(c.id);
      for (const n of await client.listNetworks([`deck.scope=${scope}`]).catch(() => [])) await client.removeNetwork(n.id);
      await removeDockerFirewall(firewallTableFor(scope));
    }
    for (const app of ["dock"]) {
      const ids = (await run("docker", ["images", "--quiet", "--filter", `label=deck.app=${app}`])).stdout.split("\n").filter(Boolean);
      for (const id of new Set(ids)) await client.removeImage(id);
    }
    await engine?.stop();
    await base?.remove();
    await rm(work, { recursive: true, force: true });
  });

  it("a Dockerfile app is built on the builder node's engine, and its image reaches the deck server's", async () => {
    const dock = await makeRepo(join(work, "dock"), dockerfileApp(base.tag, "d1"));
    const pushed = await deck.push(dock, "dock");
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.match(pushed.stderr, /remote: -----> Building on builder node builder@/);
    assert.match(pushed.stderr, /remote: .*compiling d1/);
    const page = await deck.get("dock");
    assert.equal(page.status, 200, page.body);
    assert.equal(page.body, "d1 from a Dockerfile\n");

    // The image was built by the builder node's engine (its tag names the build job), now lives in the
    // deck server's, and the builder node's engine kept none of it. (A buildpack app's packaged image goes
    // the same way: the hand-over does not look at how the image was made.)
    for (const app of ["dock"]) {
      const here = (await run("docker", ["images", "--format", "{{.Repository}}:{{.Tag}}", `deck/${app}`])).stdout.trim();
      assert.match(here, new RegExp(`^deck/${app}:build-job-\\d+-`), `the deck server's engine has the image of ${app}`);
      const there = (await engine.docker("images", "--quiet", `deck/${app}`)).stdout.trim();
      assert.equal(there, "", `the builder node's engine forgot the image of ${app} once handed over`);
    }
  });
});
