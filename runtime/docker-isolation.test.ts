/**
 * What a hostile app container can reach on a real engine: not the host's services (a listener on
 * 0.0.0.0, reached through the bridge gateway or the host's own address), not another app's container,
 * no capabilities or new privileges, no more processes than its pids limit; while DNS keeps working
 * and the app keeps serving. The probes are node one-liners: the test base image has node and sh only.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { lookup } from "node:dns/promises";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ProcessSpec } from "../core/interfaces.ts";
import { buildBaseImage, dockerSkipReason, type BaseImage } from "../test/helpers/base-image.ts";
import { createDockerClient } from "./docker-client.ts";
import { appNetworkName, dockerFirewallStatus, removeDockerFirewall } from "./docker-network.ts";
import { containerName, DockerRuntime } from "./docker-runtime.ts";
import { findFreePort } from "./free-port.ts";

/** Serves its own /proc/self/status, so a test sees who the app runs as. */
const APP_JS = `
require("http").createServer((req, res) => res.end(require("fs").readFileSync("/proc/self/status", "utf8")))
  .listen(Number(process.env.PORT));
`;

/** Connects to every TARGETS entry (`host:port`) and prints `host:port OUTCOME`: connected, or the error code. */
const PROBE_JS = `
const net = require("net");
const targets = process.env.TARGETS.split(" ");
let left = targets.length;
for (const target of targets) {
  const [host, port] = target.split(":");
  const socket = net.connect({ host, port: Number(port) });
  socket.setTimeout(4000);
  const done = (outcome) => { console.log(target + " " + outcome); socket.destroy(); if (--left === 0) process.exit(0); };
  socket.on("connect", () => done("connected"));
  socket.on("error", (e) => done(e.code));
  socket.on("timeout", () => done("timeout"));
}
`;

/** Resolves NAME and prints `resolved` or the error code. */
const DNS_JS = `require("dns").lookup(process.env.NAME, (e) => console.log(e ? e.code : "resolved"))`;

/** Starts long-lived children until the kernel refuses (or 400, so that a missing limit cannot hurt the host). */
const SPAWN_JS = `
const { spawn } = require("child_process");
let spawned = 0, refused = 0, code = "";
for (let i = 0; i < 400; i++) {
  const child = spawn("/bin/sh", ["-c", "read x"], { stdio: ["pipe", "ignore", "ignore"] });
  child.on("error", (e) => { code = e.code; });
  if (child.pid === undefined) refused++; else spawned++;
}
setImmediate(() => { console.log("spawned " + spawned + " refused " + refused + " " + code); process.exit(0); });
`;

const skip = dockerSkipReason();

describe("Docker app containers are isolated", { skip }, () => {
  const client = createDockerClient();
  const scope = `test-${randomBytes(6).toString("hex")}`;
  const firewallTable = `deck_test_${randomBytes(4).toString("hex")}`;
  let base: BaseImage;
  let userImage: string;
  let root: string;
  let runtime: DockerRuntime;
  let generation = 0;
  let hostListener: net.Server;
  let hostPort: number;
  // Container names are engine-wide: app names of the test's own.
  const suffix = randomBytes(3).toString("hex");
  const [alphaApp, bravoApp, charlieApp] = ["alpha", "bravo", "charlie"].map((a) => `${a}-${suffix}`);

  async function start(app: string, extra: Partial<ProcessSpec> = {}) {
    generation += 1;
    const spec: ProcessSpec = {
      app, release: 1, generation, type: "web", index: 1, command: 'node -e "$APP_JS"', cwd: root, env: { APP_JS },
      port: await findFreePort(), logFile: join(root, `${app}.log`), image: base.tag, ...extra,
    };
    const info = await runtime.start(spec);
    const status = await waitFor(`${app} to answer`, () => get(spec.port!));
    return { id: info.id, port: spec.port!, status, ip: docker("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", containerName(scope, info.id)) };
  }

  /** Runs `js` with node in a one-off container of `app`; its output lines. */
  async function runIn(app: string, js: string, env: Record<string, string> = {}, rt = runtime): Promise<string[]> {
    const lines: string[] = [];
    const result = await rt.runOnce({
      app, release: 1, command: 'node -e "$JS"', cwd: root, env: { JS: js, ...env }, logFile: join(root, `${app}.log`), image: base.tag,
      timeoutMs: 60_000, onLine: (l) => lines.push(l),
    });
    assert.deepEqual(result, { exitCode: 0, timedOut: false }, lines.join("\n"));
    return lines;
  }

  async function probe(app: string, targets: string[]): Promise<Record<string, string>> {
    const lines = await runIn(app, PROBE_JS, { TARGETS: targets.join(" ") });
    return Object.fromEntries(lines.map((l) => l.split(" ") as [string, string]));
  }

  async function get(port: number): Promise<string | undefined> {
    try {
      return await (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) })).text();
    } catch {
      return undefined;
    }
  }

  async function waitFor<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const value = await check();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  function docker(...args: string[]): string {
    return execFileSync("docker", args, { encoding: "utf8" }).trim();
  }

  function connectsFromHost(host: string, port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = net.connect({ host, port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
  }

  const field = (status: string, name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status)?.[1].trim();

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "deck-docker-isolation-"));
    mkdirSync(join(root, "state"));
    base = await buildBaseImage();
    userImage = `deck-test-user-${randomBytes(4).toString("hex")}:latest`;
    execFileSync("docker", ["build", "--quiet", "--tag", userImage, "-"], { input: `FROM ${base.tag}\nUSER 4321:4321\n`, stdio: ["pipe", "ignore", "pipe"] });
    runtime = new DockerRuntime({ client, stateDir: join(root, "state"), scope, firewallTable, memoryBytes: 256 * 1024 ** 2 });
    const protections = await runtime.prepare();
    assert.deepEqual(protections.map((p) => [p.name, p.on]), [["docker-containers", true], ["docker-network", true]], JSON.stringify(protections));
    assert.equal((await dockerFirewallStatus(firewallTable)).on, true, "deck doctor sees the table");
    hostListener = net.createServer((socket) => {
      socket.on("error", () => undefined); // probes hang up at once
      socket.end("host secret\n");
    });
    hostPort = await findFreePort();
    await new Promise<void>((resolve) => hostListener.listen(hostPort, "0.0.0.0", resolve));
  });

  after(async () => {
    hostListener?.close();
    await runtime?.close();
    for (const c of await client.listContainers([`deck.scope=${scope}`]).catch(() => [])) await client.removeContainer(c.id);
    for (const n of await client.listNetworks([`deck.scope=${scope}`]).catch(() => [])) await client.removeNetwork(n.id);
    await removeDockerFirewall(firewallTable);
    assert.equal((await dockerFirewallStatus(firewallTable)).on, false, "and sees it gone");
    if (userImage) await client.removeImage(userImage);
    await base?.remove();
    rmSync(root, { recursive: true, force: true });
  });

  it("runs app processes and release commands as non-root with no capabilities and no new privileges; an image's USER is honoured", async () => {
    const web = await start(alphaApp);
    assert.equal(field(web.status, "Uid")?.split(/\s+/)[0], "65534", "an image without USER runs as nobody");
    assert.equal(field(web.status, "CapEff"), "0000000000000000");
    assert.equal(field(web.status, "CapPrm"), "0000000000000000");
    assert.equal(field(web.status, "CapBnd"), "0000000000000000");
    assert.equal(field(web.status, "NoNewPrivs"), "1");

    const sandboxed = await start(alphaApp, { sandbox: { uid: 23456, gid: 23457 } });
    assert.equal(field(sandboxed.status, "Uid")?.split(/\s+/)[0], "23456", "the app's own uid");
    assert.equal(field(sandboxed.status, "Gid")?.split(/\s+/)[0], "23457");

    const declared = await start(alphaApp, { image: userImage, sandbox: { uid: 23456, gid: 23457 } });
    assert.equal(field(declared.status, "Uid")?.split(/\s+/)[0], "4321", "the image's USER wins");

    const release = (await runIn(alphaApp, `process.stdout.write(require("fs").readFileSync("/proc/self/status", "utf8"))`)).join("\n");
    assert.equal(field(release, "Uid")?.split(/\s+/)[0], "65534");
    assert.equal(field(release, "CapEff"), "0000000000000000");
    assert.equal(field(release, "NoNewPrivs"), "1");
    for (const p of [web, sandboxed, declared]) await runtime.stop(p.id, 5000);
  });

  it("refuses connections from a container to the host's services and to another app's container; its own app and DNS still work", async () => {
    const alpha = await start(alphaApp);
    const alphaPeer = await start(alphaApp);
    const bravo = await start(bravoApp);
    const gateway = docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", appNetworkName(scope, alphaApp));
    const hostAddress = Object.entries(networkInterfaces())
      .filter(([name]) => !/^(deckd|docker|br-|veth)/.test(name))
      .flatMap(([, addresses]) => addresses ?? [])
      .find((a) => a.family === "IPv4" && !a.internal)?.address;
    assert.ok(hostAddress, "a host address outside the container networks");
    assert.match(docker("network", "inspect", "--format", '{{index .Options "com.docker.network.bridge.name"}}', appNetworkName(scope, alphaApp)), /^deckd/);
    assert.notEqual(docker("inspect", "--format", "{{.HostConfig.NetworkMode}}", containerName(scope, alpha.id)), "default");

    // From the host, everything answers: what the container cannot reach is refused to it, not missing.
    for (const [host, port] of [["127.0.0.1", hostPort], [gateway, hostPort], [hostAddress, hostPort], [bravo.ip, 5000]] as const) {
      assert.equal(await connectsFromHost(host, port), true, `${host}:${port} answers on the host`);
    }
    const targets = { gateway: `${gateway}:${hostPort}`, host: `${hostAddress}:${hostPort}`, bravo: `${bravo.ip}:5000`, peer: `${alphaPeer.ip}:5000` };
    const outcome = await probe(alphaApp, Object.values(targets));
    assert.equal(outcome[targets.peer], "connected", "another process of the same app is reachable: the probe works");
    assert.equal(outcome[targets.gateway], "EHOSTUNREACH", "the host through the bridge gateway is refused");
    assert.equal(outcome[targets.host], "EHOSTUNREACH", "the host through its own address is refused");
    assert.notEqual(outcome[targets.bravo], "connected", "another app's container is not reachable");

    // The same from the other side.
    const back = await probe(bravoApp, [`${alpha.ip}:5000`]);
    assert.notEqual(back[`${alpha.ip}:5000`], "connected");

    const hostResolves = await lookup("deb.debian.org").then(() => true, () => false);
    if (hostResolves) assert.deepEqual(await runIn(alphaApp, DNS_JS, { NAME: "deb.debian.org" }), ["resolved"], "DNS works from the container");

    assert.equal(field((await get(alpha.port))!, "NoNewPrivs"), "1", "the app still serves on its published port");
    for (const p of [alpha, alphaPeer, bravo]) await runtime.stop(p.id, 5000);
  });

  it("stops a fork bomb at the container's pids limit, and the app keeps serving", async () => {
    const limited = new DockerRuntime({ client, stateDir: join(root, "state"), scope, firewallTable, pidsLimit: 64 });
    const web = await start(charlieApp);
    const [report] = await runIn(charlieApp, SPAWN_JS, {}, limited);
    const m = /^spawned (\d+) refused (\d+) (\S*)$/.exec(report);
    assert.ok(m, report);
    assert.ok(Number(m[1]) < 64, `${m[1]} processes started under a limit of 64`);
    assert.ok(Number(m[2]) > 0, report);
    assert.equal(m[3], "EAGAIN");
    assert.equal(docker("inspect", "--format", "{{.HostConfig.PidsLimit}}", containerName(scope, web.id)), "512", "the default limit on app processes");
    assert.ok(await get(web.port), "the app still answers");
    await runtime.stop(web.id, 5000);
    await limited.close();
  });
});
