/**
 * Two organisations on one deck, and org B is hostile. Org B's build (its package.json build script) and
 * org B's running app each try every way to reach org A or deck itself: deck's keys and database
 * password by relative and absolute paths, org A's config through /proc and deck's files, deck's
 * database, API and SSH ports, org A's app port (bypassing the router), a service on the host, a
 * signal to the deck server, a write into the data dir. Every attempt must fail, on the process
 * runtime and on the Docker runtime, and org A's app keeps serving. The attacks run for real: the
 * build prints, and the app answers, what it reached; the test asserts the list is empty and that the
 * attacks ran at all.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import tls from "node:tls";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { addUser, apiClient, gitAs, type Api, type TestUser } from "./helpers/accounts.ts";
import { buildBaseImage, dockerSkipReason, type BaseImage } from "./helpers/base-image.ts";
import { Deck, makeRepo, nodeApp } from "./helpers/deck.ts";

/** What the attacker knows of the host: ports and addresses (a tenant can scan for them anyway). */
interface Targets {
  dataDir: string;
  serverPid: number;
  /** The name of org A's config var the attacker hunts for (its value would be found with it). */
  secretKey: string;
  ports: Record<string, number>;
  hosts: string[];
}

/**
 * The attack, as CommonJS that runs in the build (node attack.js) and in the app (GET /attack). Each
 * attempt that succeeds adds a line to `found`; `tried` counts the attempts made.
 */
const ATTACK_JS = String.raw`
const fs = require("fs");
const net = require("net");
const path = require("path");

/** false, or what answered: the first bytes it sent (within half a second), which name the server. */
function connects(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 1500 });
    s.once("connect", () => {
      s.setTimeout(0);
      let first = "";
      const done = () => { s.destroy(); resolve("answered " + JSON.stringify(first.slice(0, 60))); };
      s.on("data", (c) => { first += c; done(); });
      s.once("error", done);
      s.once("end", done);
      setTimeout(done, 500);
    });
    s.once("timeout", () => { s.destroy(); resolve(false); });
    s.once("error", () => resolve(false));
  });
}

/** The default gateway from /proc/net/route: the host, seen from a container. */
function gateway() {
  try {
    for (const line of fs.readFileSync("/proc/net/route", "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === "00000000" && f[2] && f[2] !== "00000000") {
        const n = parseInt(f[2], 16);
        return [n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >> 24) & 255].join(".");
      }
    }
  } catch {}
  return undefined;
}

async function attack(t) {
  const found = [];
  let tried = 0;
  const read = (label, file) => {
    tried++;
    try {
      const text = fs.readFileSync(file, "utf8");
      found.push("read " + label + " (" + file + "): " + text.slice(0, 120).replace(/\s+/g, " "));
    } catch {}
  };
  const list = (label, dir) => {
    tried++;
    try {
      const names = fs.readdirSync(dir);
      for (const n of names) read(label + "/" + n, path.join(dir, n));
    } catch {}
  };
  // deck's keys and database password, relative to where the code runs and by absolute path.
  const bases = [];
  for (let up = 1; up <= 8; up++) bases.push(path.resolve("../".repeat(up)));
  bases.push(t.dataDir);
  for (const base of bases) {
    read("master key", path.join(base, "keys/master.key"));
    list("jwt keys", path.join(base, "keys/jwt"));
    read("database password", path.join(base, "postgres/state.json"));
    list("process specs", path.join(base, "run/procs"));
  }
  // Org A's config through any process's environment.
  for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    tried++;
    try {
      const env = fs.readFileSync("/proc/" + pid + "/environ", "utf8");
      if (env.includes(t.secretKey + "=")) found.push("org A's secret in /proc/" + pid + "/environ");
    } catch {}
    tried++;
    try {
      const cmd = fs.readFileSync("/proc/" + pid + "/cmdline", "utf8");
      if (/deck server|router\/main|shim\.mjs|postgres|dockerd/.test(cmd.replace(/\0/g, " "))) found.push("sees deck's process " + pid + ": " + cmd.replace(/\0/g, " ").slice(0, 80));
    } catch {}
  }
  // A write into deck's data dir.
  tried++;
  try { fs.writeFileSync(path.join(t.dataDir, "tenant-was-here"), "x"); found.push("wrote into the data dir"); } catch {}
  // A signal to the deck server (signal 0 only asks whether it could be sent).
  tried++;
  try { process.kill(t.serverPid, 0); found.push("may signal the deck server (pid " + t.serverPid + ")"); } catch {}
  // Connections around the router: deck's ports, org A's app, a service on the host.
  const hosts = [...t.hosts];
  const gw = gateway();
  if (gw && !hosts.includes(gw)) hosts.push(gw);
  for (const [name, port] of Object.entries(t.ports)) {
    for (const host of hosts) {
      tried++;
      const answer = await connects(host, port);
      if (answer) found.push("connected to " + name + " at " + host + ":" + port + " (" + answer + ")");
    }
  }
  return { found, tried, uid: process.getuid ? process.getuid() : -1 };
}
module.exports = { attack };
if (require.main === module) {
  attack(JSON.parse(fs.readFileSync("targets.json", "utf8"))).then((r) => {
    for (const f of r.found) console.log("ATTACK-FOUND " + f);
    console.log("ATTACK-DONE tried=" + r.tried + " uid=" + r.uid);
  });
}
`;

const SERVER_JS = String.raw`
const http = require("http");
const fs = require("fs");
const { attack } = require("./attack.js");
const server = http.createServer((req, res) => {
  if (req.url === "/attack") {
    attack(JSON.parse(fs.readFileSync("targets.json", "utf8"))).then((r) => res.end(JSON.stringify(r)));
    return;
  }
  res.end("tenant b\n");
});
server.listen(process.env.PORT);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`;

function hostileApp(targets: Targets): Record<string, string> {
  const pkg = { name: "hostile", version: "1.0.0", private: true, scripts: { build: "node attack.js", start: "node server.js" } };
  return {
    "package.json": JSON.stringify(pkg, null, 2),
    "attack.js": ATTACK_JS,
    "server.js": SERVER_JS,
    "targets.json": JSON.stringify(targets),
    Procfile: "web: node server.js\n",
  };
}

/** A TCP listener on every address of the host: the "other service" a tenant must not reach. */
async function startCanary(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let count = 0;
  const server = net.createServer((s) => {
    count++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, "0.0.0.0", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return { port, connections: () => count, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Sends `request` as raw bytes (over TLS when asked, trusting any certificate) and returns what comes back. */
function rawExchange(port: number, overTls: boolean, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: net.Socket = overTls ? tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }) : net.connect({ host: "127.0.0.1", port });
    let answer = "";
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer on port ${port}`)));
    socket.once(overTls ? "secureConnect" : "connect", () => socket.write(request));
    socket.on("data", (c: Buffer) => (answer += c.toString("latin1")));
    socket.once("close", () => resolve(answer));
    socket.once("error", (e) => (answer ? resolve(answer) : reject(e)));
  });
}

/**
 * The host's own addresses to attack. Docker bridges are left out: those of other tests' decks come
 * and go while this one runs, and an address that is gone by the time the attack tries it routes out
 * of the machine, where whatever answers is not this host. (The attack adds its own gateway, the
 * host as its container sees it.)
 */
function hostAddresses(): string[] {
  const out = ["127.0.0.1"];
  for (const [name, list] of Object.entries(networkInterfaces())) {
    if (/^(docker\d*|br-|deckd|veth)/.test(name)) continue;
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) out.push(a.address);
  }
  return out;
}

/** Every file under `dir` that holds `needle` in clear (big files and sockets are skipped). */
function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      let st;
      try {
        st = statSync(p, { throwIfNoEntry: false });
      } catch {
        continue;
      }
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size < 64 * 1024 ** 2) {
        try {
          if (readFileSync(p).includes(needle)) hits.push(p);
        } catch {
          // unreadable while being written
        }
      }
    }
  };
  walk(dir);
  return hits;
}

const dockerSkip = dockerSkipReason();

for (const runtime of ["process", "docker"] as const) {
  describe(`a hostile tenant on the ${runtime} runtime`, { skip: runtime === "docker" ? dockerSkip : undefined }, () => {
    let work: string;
    let deck: Deck;
    let api: Api;
    let base: BaseImage | undefined;
    let canary: Awaited<ReturnType<typeof startCanary>>;
    let alice: TestUser;
    let bob: TestUser;
    const secret = `alpha-secret-${process.pid}-${Date.now()}`;
    // App names unique to the run: Docker container names are shared by every deck on one engine.
    const tag = randomBytes(3).toString("hex");
    const appA = `alpha-${tag}`;
    const appB = `bravo-${tag}`;
    let pushB: Awaited<ReturnType<typeof gitAs>>;
    let repoB: string;

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-hostile-"));
      canary = await startCanary();
      const env: Record<string, string> = {};
      if (runtime === "docker") {
        base = await buildBaseImage();
        env.DECK_RUNTIME = "docker";
        env.DECK_BASE_IMAGE = base.tag;
      }
      deck = await Deck.start({ backend: { name: "embedded" }, env });
      api = apiClient(deck);
      alice = await addUser(api, work, { email: "alice@alpha.example" });
      bob = await addUser(api, work, { email: "bob@bravo.example" });
      assert.equal((await api("POST", "/orgs", { slug: "alpha" }, { token: alice.accessToken })).status, 201);
      assert.equal((await api("POST", "/orgs", { slug: "bravo" }, { token: bob.accessToken })).status, 201);

      const repoA = await makeRepo(join(work, "alpha"), nodeApp("alpha-v1"));
      const pushA = await gitAs(deck, alice, repoA, { op: "push", via: "ssh", app: appA });
      assert.equal(pushA.code, 0, pushA.stderr);
      const set = await deck.ssh(`config:set ${appA} SECRET_TOKEN=${secret}`);
      assert.equal(set.code, 0, set.stderr);

      const report = await api("GET", `/apps/${appA}`);
      assert.equal(report.status, 200, report.text);
      const ps = await deck.ssh(`ps:report ${appA} --json`);
      const alphaPorts = [...ps.stdout.matchAll(/"port":\s*(\d+)/g)].map((m) => Number(m[1]));
      assert.ok(alphaPorts.length > 0, `org A's app has a port: ${ps.stdout}`);
      const pg = JSON.parse(readFileSync(join(deck.dataDir, "postgres", "state.json"), "utf8")) as { port: number };
      const serverPid = Number(readFileSync(join(deck.dataDir, "run", "server.pid"), "utf8").trim());

      const targets: Targets = {
        dataDir: deck.dataDir,
        serverPid,
        secretKey: "SECRET_TOKEN",
        ports: { "deck's database": pg.port, "deck's API": deck.ports.api, "deck's SSH": deck.ports.ssh, "org A's app": alphaPorts[0], "a host service": canary.port },
        hosts: hostAddresses(),
      };
      repoB = await makeRepo(join(work, "bravo"), hostileApp(targets));
      pushB = await gitAs(deck, bob, repoB, { op: "push", via: "ssh", app: appB });
    });

    after(async () => {
      await deck?.stop();
      await canary?.close();
      if (runtime === "docker") {
        for (const app of [appA, appB]) {
          const images = execFileSync("docker", ["images", "--quiet", "--filter", `label=deck.app=${app}`], { encoding: "utf8" }).split("\n").filter(Boolean);
          if (images.length) execFileSync("docker", ["rmi", "--force", ...new Set(images)], { stdio: "ignore" });
        }
      }
      await base?.remove();
      await rm(work, { recursive: true, force: true });
    });

    it("org B's build runs its attack and reaches nothing of org A or deck", () => {
      const output = pushB.stderr;
      assert.equal(pushB.code, 0, output);
      const done = /ATTACK-DONE tried=(\d+) uid=(-?\d+)/.exec(output);
      assert.ok(done, `the build's attack ran: ${output}`);
      assert.ok(Number(done[1]) > 50, `attempts made: ${done[1]}`);
      assert.deepEqual(output.split("\n").filter((l) => l.includes("ATTACK-FOUND")), []);
      assert.notEqual(Number(done[2]), 0, "the build does not run as root");
      // Nothing of deck's secrets in what the pusher saw.
      for (const file of readdirSync(join(deck.dataDir, "keys", "jwt"))) {
        const key = readFileSync(join(deck.dataDir, "keys", "jwt", file), "utf8").split("\n")[1] ?? "";
        if (key) assert.ok(!output.includes(key), `the push output holds a line of ${file}`);
      }
    });

    it("org B's running app reaches nothing of org A or deck", async () => {
      const r = await deck.get(appB, "/attack", { timeoutMs: 60_000 });
      assert.equal(r.status, 200, r.body);
      const result = JSON.parse(r.body) as { found: string[]; tried: number; uid: number };
      assert.ok(result.tried > 50, `attempts made: ${result.tried}`);
      // Should anything answer, what the host listens on at that port and its firewall tables say which way it got through.
      const seen = (argv: string[]) => spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" }).stdout;
      const why = result.found.map((f) => /:(\d+) \(/.exec(f)?.[1]).filter(Boolean)
        .map((port) => `${seen(["ss", "-ltnpH", `sport = :${port}`])}${seen(["nft", "list", "tables"])}${seen(["iptables-save", "-t", "nat"]).split("\n").filter((l) => l.includes(port!)).join("\n")}`)
        .concat(result.found.length ? [seen(["ip", "-4", "-br", "addr"]), seen(["ss", "-tnpH", "state", "established"]).split("\n").filter((l) => result.found.some((f) => l.includes(/:(\d+) \(/.exec(f)?.[1] ?? "-"))).join("\n"), seen(["nft", "list", "ruleset"])] : []);
      assert.deepEqual(result.found, [], why.join("\n"));
      assert.notEqual(result.uid, 0, "the app does not run as root");
      assert.equal(canary.connections(), 0, "the host service saw no connection from a tenant");
    });

    it("org A's app keeps serving, with its config, and deck keeps running", async () => {
      const r = await deck.get(appA);
      assert.equal(r.status, 200);
      assert.match(r.body, /alpha-v1/);
      const got = await deck.ssh(`config:get ${appA} SECRET_TOKEN`);
      assert.equal(got.code, 0, got.stderr);
      assert.equal(got.stdout.trim(), secret);
      assert.ok(deck.server && deck.server.exitCode === null, "the deck server is still running");
    });

    it("org B's requests and repositories cannot knock deck over or make it read host files", async () => {
      // The request line that once stopped the router for every app, over TLS and in plain text.
      for (const port of [deck.ports.https, deck.ports.http]) {
        const answer = await rawExchange(port, port === deck.ports.https, `GET / HTTP/2.0\r\nHost: ${appA}.localhost\r\n\r\n`);
        assert.match(answer, /^HTTP\/1\.1 505 /, `answer on port ${port}: ${answer}`);
      }
      // A malformed git URL before authentication.
      const git = await fetch(`http://127.0.0.1:${deck.ports.api}/git/%25/info/refs?service=git-upload-pack`.replace("%25", "%"));
      assert.equal(git.status, 400);
      // A Procfile committed as a link to deck's master key.
      execFileSync("ln", ["-sf", join(deck.dataDir, "keys", "master.key"), join(repoB, "Procfile")]);
      execFileSync("git", ["-C", repoB, "-c", "user.name=B", "-c", "user.email=b@bravo.example", "commit", "-qam", "link"]);
      const push = await gitAs(deck, bob, repoB, { op: "push", via: "ssh", app: appB });
      assert.notEqual(push.code, 0);
      assert.match(push.stderr, /Procfile is a symbolic link/);
      const key = readFileSync(join(deck.dataDir, "keys", "master.key"), "utf8").trim();
      assert.ok(!push.stderr.includes(key.slice(0, 16)), "the key's content is not in the push output");
      // Org A's app still serves, and so does org B's last good release.
      assert.equal((await deck.get(appA)).status, 200);
      assert.equal((await deck.get(appB)).body, "tenant b\n");
    });

    it("org A's config is nowhere in deck's data dir in clear", () => {
      assert.deepEqual(filesContaining(deck.dataDir, secret), []);
    });

    it("the two apps run under different unprivileged users", async () => {
      const uidOf = async (name: string) => {
        const ps = await deck.ssh(`ps:report ${name} --json`);
        const pid = Number(/"pid":\s*(\d+)/.exec(ps.stdout)?.[1]);
        if (runtime === "docker") {
          const id = execFileSync("docker", ["ps", "-q", "--filter", `label=deck.app=${name}`], { encoding: "utf8" }).trim().split("\n")[0];
          return execFileSync("docker", ["exec", id, "/usr/bin/node", "-e", "console.log(process.getuid())"], { encoding: "utf8" }).trim();
        }
        // The recorded pid may be the sandbox's launcher: the app is the `node server.js` below it.
        const rows = execFileSync("ps", ["-e", "-o", "pid=,ppid=,uid=,args="], { encoding: "utf8" }).trim().split("\n").map((l) => {
          const [p, pp, u, ...args] = l.trim().split(/\s+/);
          return { pid: Number(p), ppid: Number(pp), uid: u, args: args.join(" ") };
        });
        const family = new Set([pid]);
        for (let grew = true; grew; ) {
          grew = false;
          for (const row of rows) if (family.has(row.ppid) && !family.has(row.pid)) (family.add(row.pid), (grew = true));
        }
        const app = rows.find((row) => family.has(row.pid) && /^(\S*\/)?node server\.js$/.test(row.args));
        assert.ok(app, `the app process of ${name} below pid ${pid}`);
        return app.uid;
      };
      const [a, b] = [await uidOf(appA), await uidOf(appB)];
      assert.notEqual(a, "0");
      assert.notEqual(b, "0");
      assert.notEqual(a, b);
    });
  });
}
