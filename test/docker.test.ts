/**
 * DECK_RUNTIME=docker end to end: real pushes over SSH, real image builds on the local Docker engine,
 * containers served through deck's router. The base image is built locally (test/helpers/base-image.ts):
 * nothing is pulled from a registry. The database is the embedded one only: what runs on PostgreSQL here
 * is the same pipeline the other end-to-end suites already run against both backends.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { appNetworkName, createDockerClient, firewallTableFor, removeDockerFirewall, scopeFor } from "../runtime/index.ts";
import { buildBaseImage, dockerSkipReason, type BaseImage } from "./helpers/base-image.ts";
import { commitFiles, Deck, makeRepo, nodeApp } from "./helpers/deck.ts";

const skip = dockerSkipReason();

/** A Dockerfile app whose answer names its version and the container it runs in. */
function dockerfileApp(baseTag: string, version: string): Record<string, string> {
  return {
    Dockerfile: [
      `FROM ${baseTag}`,
      "WORKDIR /srv",
      "COPY server.js .",
      // Output, a pause, more output: proves the build streams to the pusher while it runs.
      `RUN node -e "console.log('compiling ${version}'); setTimeout(() => console.log('compiled ${version}'), 1500)"`,
      'CMD ["node", "server.js"]',
      "",
    ].join("\n"),
    "server.js": `const http = require("http");
const os = require("os");
const server = http.createServer((req, res) => res.end("${version} from " + os.hostname() + "\\n"));
server.listen(process.env.PORT, () => console.log("${version} listening on " + process.env.PORT));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`,
  };
}

/** Whether a TCP connection to host:port is accepted. */
function connectsTo(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

function nftTableExists(table: string): boolean {
  try {
    execFileSync("nft", ["list", "table", "inet", table], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function docker(...args: string[]): string {
  return execFileSync("docker", args, { encoding: "utf8" }).trim();
}

describe("DECK_RUNTIME=docker end to end", { skip }, () => {
  const client = createDockerClient();
  let base: BaseImage;
  let deck: Deck;
  let work: string;
  let scope: string;
  const apps = new Set<string>();

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-docker-work-"));
    base = await buildBaseImage();
    deck = await Deck.start({ backend: { name: "embedded" }, env: { DECK_RUNTIME: "docker", DECK_BASE_IMAGE: base.tag, DECK_APP_MEMORY: "256m", DECK_UPSTREAM_HOST: "127.0.0.2" } });
    scope = scopeFor(deck.dataDir);
  });

  after(async () => {
    await deck?.stop();
    if (scope) for (const c of await client.listContainers([`deck.scope=${scope}`]).catch(() => [])) await client.removeContainer(c.id);
    if (scope) for (const n of await client.listNetworks([`deck.scope=${scope}`]).catch(() => [])) await client.removeNetwork(n.id);
    // The firewall table of this test's deck (one per data dir), which no other deck uses.
    if (scope) await removeDockerFirewall(firewallTableFor(scope));
    for (const app of apps) {
      for (const id of new Set(docker("images", "--quiet", "--filter", `label=deck.app=${app}`).split("\n").filter(Boolean))) await client.removeImage(id);
    }
    await base?.remove();
    await rm(work, { recursive: true, force: true });
  });

  /** The one running container of an app's web process. */
  async function webContainer(app: string) {
    const running = (await client.listContainers([`deck.scope=${scope}`, `deck.app=${app}`, "deck.type=web"])).filter((c) => c.running);
    assert.equal(running.length, 1, `one web container of ${app}: ${JSON.stringify(running.map((c) => c.name))}`);
    return running[0];
  }

  it("builds a Dockerfile app pushed over SSH with live output, serves it from a container, redeploys without a failed request, rolls back without a rebuild", async () => {
    const app = "dockapp";
    apps.add(app);
    const repo = await makeRepo(join(work, app), dockerfileApp(base.tag, "v1"));
    const first = await deck.push(repo, app);
    assert.equal(first.code, 0, first.stderr);
    const compiling = first.lines.find((l) => l.text.trim().endsWith("compiling v1"));
    const compiled = first.lines.find((l) => l.text.trim().endsWith("compiled v1"));
    assert.ok(compiling && compiled, first.stderr);
    assert.ok(compiled.at - compiling.at >= 1000, "build lines reach the pusher as the engine writes them");
    assert.ok(first.endedAt - compiling.at >= 1000, "the first build line arrived well before the push ended");
    assert.match(first.stderr, /remote: -----> Dockerfile detected: building the image/);

    const v1 = await webContainer(app);
    const answer = await deck.get(app);
    assert.equal(answer.status, 200);
    assert.equal(answer.body, `v1 from ${v1.id.slice(0, 12)}\n`, "served by the container, through the router");
    // Published on DECK_UPSTREAM_HOST only: the router reached the container there, and nowhere else answers.
    const bindings = JSON.parse(docker("inspect", "--format", "{{json .HostConfig.PortBindings}}", v1.id)) as Record<string, { HostIp: string; HostPort: string }[]>;
    const published = Object.values(bindings).flat();
    assert.deepEqual(published.map((b) => b.HostIp), ["127.0.0.2"]);
    assert.equal((await connectsTo("127.0.0.2", Number(published[0].HostPort))), true);
    assert.equal((await connectsTo("127.0.0.1", Number(published[0].HostPort))), false, "not published on 127.0.0.1");
    assert.equal(docker("inspect", "--format", "{{.HostConfig.Memory}}", v1.id), String(256 * 1024 ** 2));
    // Hardened, on the app's own network, not as root (the Dockerfile declares no USER).
    const hardening = JSON.parse(docker("inspect", "--format", "{{json .HostConfig}}", v1.id)) as { CapDrop: string[]; SecurityOpt: string[]; PidsLimit: number; NetworkMode: string };
    assert.deepEqual([hardening.CapDrop, hardening.SecurityOpt, hardening.PidsLimit, hardening.NetworkMode], [["ALL"], ["no-new-privileges"], 512, appNetworkName(scope, app)]);
    assert.match(docker("inspect", "--format", "{{.Config.User}}", v1.id), /^[1-9]\d*:[1-9]\d*$/);
    assert.equal(nftTableExists(firewallTableFor(scope)), true, "deck's firewall table is in place");
    const v1Image = docker("inspect", "--format", "{{.Image}}", v1.id);

    // v2 under continuous load: every request answered, by v1 or v2.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const failures: string[] = [];
    const seen = new Map<string, number>();
    let stop = false;
    const load = async () => {
      while (!stop) {
        try {
          const r = await deck.get(app, "/", { agent, timeoutMs: 20_000 });
          const version = /^(v\d) from /.exec(r.body)?.[1];
          if (r.status !== 200 || !version) failures.push(`${r.status} ${r.body.slice(0, 80)}`);
          else seen.set(version, (seen.get(version) ?? 0) + 1);
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
    };
    const clients = [load(), load(), load()];
    await commitFiles(repo, dockerfileApp(base.tag, "v2"), "v2");
    const second = await deck.push(repo, app);
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(clients);
    agent.destroy();
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(failures, [], `${failures.length} failed requests during the redeploy`);
    assert.ok((seen.get("v1") ?? 0) > 0 && (seen.get("v2") ?? 0) > 0, JSON.stringify([...seen]));
    assert.match((await deck.get(app)).body, /^v2 from /);
    assert.equal(await client.inspectContainer(v1.id), undefined, "the old container is removed after the switch");

    const rollback = await deck.ssh(`rollback ${app}`);
    assert.equal(rollback.code, 0, rollback.stderr);
    assert.doesNotMatch(rollback.stdout + rollback.stderr, /Step \d|building the image/, "rollback does not rebuild");
    assert.match((await deck.get(app)).body, /^v1 from /);
    assert.equal(docker("inspect", "--format", "{{.Image}}", (await webContainer(app)).id), v1Image, "the previous image runs again");

    const logs = await deck.ssh(`logs ${app} -n 200`);
    assert.match(logs.stdout, /app\[web\.1\]: v2 listening on 5000/, "container output reaches the app log");
  });

  it("packages a Node.js buildpack app into an image and serves it; containers outlive a deck restart and are adopted", async () => {
    const app = "nodeapp";
    apps.add(app);
    const repo = await makeRepo(join(work, app), nodeApp("n1"));
    const push = await deck.push(repo, app);
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stderr, /remote: -----> Packaging the slug into an image FROM /);
    assert.match((await deck.get(app)).body, /^n1 /);
    const container = await webContainer(app);

    await deck.kill9();
    assert.match((await deck.get(app)).body, /^n1 /, "serving while deck is down");
    // Restarted with another DECK_UPSTREAM_HOST: the adopted container keeps the address it was
    // published on, and processes started from now on get the new one.
    deck.options.env!.DECK_UPSTREAM_HOST = "127.0.0.3";
    await deck.startServer();
    assert.match(deck.log(), /reconciled: \d+ process\(es\) adopted, 0 stray stopped/);
    assert.equal((await webContainer(app)).id, container.id, "the same container, adopted");
    const adopted = await deck.get(app);
    assert.equal(adopted.status, 200, adopted.body);
    assert.match(adopted.body, /^n1 /, "the adopted container is still reached at 127.0.0.2");
    const set = await deck.ssh(`config:set ${app} GREETING=adopted`);
    assert.equal(set.code, 0, set.stderr);
    assert.match((await deck.get(app)).body, /^n1 adopted /);
    const renewed = JSON.parse(docker("inspect", "--format", "{{json .HostConfig.PortBindings}}", (await webContainer(app)).id)) as Record<string, { HostIp: string }[]>;
    assert.deepEqual(Object.values(renewed).flat().map((b) => b.HostIp), ["127.0.0.3"]);

    // Per-app limits beat the server defaults for processes started after the change.
    const limit = await deck.ssh(`resource:limit ${app} --memory 256m --cpus 0.5`);
    assert.equal(limit.code, 0, limit.stderr);
    assert.match(limit.stdout, /memory 256m, cpus 0\.5/);
    assert.equal((await deck.ssh(`ps:restart ${app}`)).code, 0);
    const limited = JSON.parse(docker("inspect", (await webContainer(app)).id)) as { HostConfig: { Memory: number; NanoCpus: number } }[];
    assert.equal(limited[0].HostConfig.Memory, 256 * 1024 ** 2);
    assert.equal(limited[0].HostConfig.NanoCpus, 5e8);
    assert.match((await deck.ssh(`ps:report ${app}`)).stdout, /Limits:\s+memory 256m, cpus 0\.5/);
    assert.equal((await deck.ssh(`resource:limit ${app} --memory lots`)).code, 1);

    // Destroying the app removes its containers and its images.
    assert.equal((await deck.ssh(`apps:destroy ${app} --confirm ${app}`)).code, 0);
    assert.equal(docker("ps", "--all", "--quiet", "--filter", `label=deck.app=${app}`).trim(), "");
    assert.equal(docker("network", "ls", "--quiet", "--filter", `label=deck.app=${app}`).trim(), "", "its network is gone too");
    assert.equal(docker("images", "--quiet", "--filter", `label=deck.app=${app}`).trim(), "");
  });
});
