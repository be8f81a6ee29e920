import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isDeckError } from "../core/errors.ts";
import { IMAGE_REF_FILE, type ProcessSpec } from "../core/interfaces.ts";
import { buildBaseImage, dockerSkipReason, type BaseImage } from "../test/helpers/base-image.ts";
import { createDockerClient, LogDemuxer, sinceParameter, timestampNanos } from "./docker-client.ts";
import {
  containerCmd, containerEnv, containerName, CONTAINER_PORT, containerUser, DockerRuntime, FALLBACK_USER, processContainerBody, processFilter, releaseContainerBody,
  releaseContainerName, resolveImage, type ContainerContext,
} from "./docker-runtime.ts";
import { appNetworkBody, appNetworkName, buildNetworkBody, firewallRuleset, firewallTableFor, removeDockerFirewall } from "./docker-network.ts";
import { findFreePort } from "./free-port.ts";
import { processId } from "./process-runtime.ts";

// The test app, passed in the environment and run with `node -e "$APP_JS"`, so that the base image alone runs it.
const APP_JS = `
const http = require("http");
const fs = require("fs");
const server = http.createServer((req, res) => {
  if (req.url.startsWith("/log/")) { console.log("line " + req.url.slice(5)); return res.end("ok"); }
  if (req.url === "/exit") { res.end("bye"); setTimeout(() => process.exit(3), 20); return; }
  let memory = null;
  try { memory = fs.readFileSync("/sys/fs/cgroup/memory/memory.limit_in_bytes", "utf8").trim(); } catch {}
  res.end(JSON.stringify({ port: process.env.PORT, greeting: process.env.GREETING, path: process.env.PATH, home: process.env.HOME, memory }));
});
server.listen(Number(process.env.PORT), () => console.log("listening on " + process.env.PORT));
process.on("SIGTERM", () => { fs.writeSync(1, "stopping on SIGTERM\\n"); process.exit(0); });
`;
const COMMAND = 'node -e "$APP_JS"';

const HARDENED = { CapDrop: ["ALL"], SecurityOpt: ["no-new-privileges"] };

describe("docker runtime: pure parts", () => {
  const ctx = (extra: Partial<ContainerContext> = {}): ContainerContext => ({
    image: { image: "sha256:abc" }, scope: "scope1", network: "deck-scope1-shop", user: "65534:65534", limits: {}, ...extra,
  });

  it("builds the container body: hardened, on the app's network, 127.0.0.1-only port, limits, init, restart policy, labels", () => {
    const spec: ProcessSpec = {
      app: "shop", release: 4, generation: 17, type: "web", index: 2, command: "node server.js", cwd: "/data/apps/shop/slugs/9",
      env: { PATH: "/usr/sbin:/usr/bin", HOME: "/data/apps/shop/slugs/9", GREETING: "hi", PORT: "1" }, port: 41000, logFile: "/data/logs/shop.log",
    };
    assert.deepEqual(processContainerBody(spec, ctx({ user: "2001:2001", limits: { memoryBytes: 512 * 1024 ** 2, cpus: 1.5, pidsLimit: 300 } })), {
      Image: "sha256:abc",
      Cmd: ["/bin/sh", "-c", "exec node server.js"],
      Env: ["GREETING=hi", `PORT=${CONTAINER_PORT}`, "TINI_KILL_PROCESS_GROUP=1"],
      Labels: {
        "deck.scope": "scope1", "deck.id": "shop.g17.web.2", "deck.app": "shop", "deck.release": "4", "deck.generation": "17",
        "deck.type": "web", "deck.index": "2", "deck.log": "/data/logs/shop.log", "deck.port": "41000",
      },
      User: "2001:2001",
      ExposedPorts: { [`${CONTAINER_PORT}/tcp`]: {} },
      HostConfig: {
        Init: true,
        LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
        NetworkMode: "deck-scope1-shop",
        ...HARDENED,
        PidsLimit: 300,
        Memory: 512 * 1024 ** 2,
        NanoCpus: 1_500_000_000,
        RestartPolicy: { Name: "unless-stopped" },
        PortBindings: { [`${CONTAINER_PORT}/tcp`]: [{ HostIp: "127.0.0.1", HostPort: "41000" }] },
      },
    });
    // Published on DECK_UPSTREAM_HOST when the deploy names one, and labelled with it for adoption.
    const onPrivate = processContainerBody({ ...spec, host: "10.0.0.5" }, ctx());
    assert.deepEqual(onPrivate.HostConfig.PortBindings, { [`${CONTAINER_PORT}/tcp`]: [{ HostIp: "10.0.0.5", HostPort: "41000" }] });
    assert.equal(onPrivate.Labels["deck.host"], "10.0.0.5");
    assert.equal(onPrivate.HostConfig.PidsLimit, 512, "a pids limit even when none is configured");
  });

  it("gives a release command the same hardening, on the app's network, without a port or restarts", () => {
    const body = releaseContainerBody(
      { app: "shop", release: 4, command: "node migrate.js", cwd: "/data/apps/shop/slugs/9", env: { HOME: "/data/apps/shop/slugs/9", DB: "x" } },
      ctx({ image: { image: "sha256:abc", appDir: "/app" }, limits: { memoryBytes: 1024 ** 3, pidsLimit: 64 } }),
    );
    assert.deepEqual(body, {
      Image: "sha256:abc",
      Cmd: ["/bin/sh", "-c", "exec node migrate.js"],
      Env: ["HOME=/app", "DB=x", "TINI_KILL_PROCESS_GROUP=1"],
      Labels: { "deck.scope": "scope1", "deck.app": "shop", "deck.release": "4", "deck.type": "release" },
      User: "65534:65534",
      HostConfig: {
        Init: true,
        LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
        NetworkMode: "deck-scope1-shop",
        ...HARDENED,
        PidsLimit: 64,
        Memory: 1024 ** 3,
        RestartPolicy: { Name: "no" },
      },
    });
  });

  it("names each deck's containers after its scope, so two decks on one engine never ask for the same name", () => {
    assert.equal(containerName("3f2a9c", "shop.g17.web.2"), "deck-3f2a9c-shop.g17.web.2");
    assert.notEqual(containerName("3f2a9c", "shop.g17.web.2"), containerName("77b0e1", "shop.g17.web.2"));
    assert.equal(containerName("test 1/x", "a.g1.web.1"), "deck-test_1_x-a.g1.web.1", "only characters Docker allows in a name");
    assert.equal(releaseContainerName("3f2a9c", "shop", 4, "0a1b2c"), "deck-3f2a9c-shop.release.v4-0a1b2c");
    // Found by label, not name: containers started under the older name `deck-<id>` carry the same labels.
    assert.deepEqual(processFilter("3f2a9c", "shop.g17.web.2"), ["deck.scope=3f2a9c", "deck.id=shop.g17.web.2"]);
  });

  it("runs as the image's own non-root user, else as the app's uid, else as nobody: never root", () => {
    assert.equal(containerUser("4321:4321"), "4321:4321");
    assert.equal(containerUser("app", { uid: 20001, gid: 20001 }), "app", "a Dockerfile's USER is honoured");
    for (const root of ["", " ", "root", "0", "0:0", "root:staff"]) {
      assert.equal(containerUser(root, { uid: 20001, gid: 20002 }), "20001:20002", `image user ${JSON.stringify(root)}`);
      assert.equal(containerUser(root), "65534:65534", `image user ${JSON.stringify(root)}`);
    }
  });

  it("puts each app on a bridge network of its own and each build on one made for it, with deck's interface prefix", () => {
    assert.deepEqual(appNetworkBody("scope1", "shop"), {
      Name: "deck-scope1-shop",
      Driver: "bridge",
      CheckDuplicate: true,
      Labels: { "deck.scope": "scope1", "deck.app": "shop", "deck.network": "app" },
      Options: { "com.docker.network.bridge.name": appNetworkBody("scope1", "shop").Options["com.docker.network.bridge.name"], "com.docker.network.bridge.enable_icc": "true" },
    });
    const bridge = appNetworkBody("scope1", "shop").Options["com.docker.network.bridge.name"];
    assert.match(bridge, /^deckd[0-9a-f]{10}$/, "15 characters at most, and the prefix the firewall matches");
    assert.notEqual(appNetworkBody("scope1", "blog").Options["com.docker.network.bridge.name"], bridge);
    assert.notEqual(appNetworkBody("scope2", "shop").Options["com.docker.network.bridge.name"], bridge);
    assert.equal(appNetworkName("scope1", "shop"), "deck-scope1-shop");
    const build = buildNetworkBody("shop", "0a1b2c3d4e");
    assert.equal(build.Name, "deck-build-shop-0a1b2c3d4e");
    assert.match(build.Options["com.docker.network.bridge.name"], /^deckd[0-9a-f]{10}$/);
    assert.equal(build.Options["com.docker.network.bridge.enable_icc"], "false");
    assert.notEqual(buildNetworkBody("shop").Name, buildNetworkBody("shop").Name, "one network per build");
  });

  it("writes one nftables table that refuses new connections from deck bridges to the host and to link-local addresses", () => {
    assert.equal(firewallRuleset("deck_docker"), [
      "table inet deck_docker",
      "delete table inet deck_docker",
      "table inet deck_docker {",
      "  chain input {",
      "    type filter hook input priority filter; policy accept;",
      '    iifname "deckd*" ct state established,related accept',
      '    iifname "deckd*" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept',
      '    iifname "deckd*" reject with icmpx type admin-prohibited',
      "  }",
      "  chain forward {",
      "    type filter hook forward priority filter; policy accept;",
      '    iifname "deckd*" ip daddr 169.254.0.0/16 reject with icmpx type admin-prohibited',
      '    iifname "deckd*" ip6 daddr fe80::/10 reject with icmpx type admin-prohibited',
      "  }",
      "}",
      "",
    ].join("\n"));
    assert.equal(firewallTableFor("3f2a9c"), "deck_docker_3f2a9c", "one table per deck on the host");
    assert.equal(firewallTableFor("test-1.x"), "deck_docker_test_1_x");
  });

  it("runs a simple command with exec (the app, not the shell, gets SIGTERM) and a compound one as written", () => {
    assert.deepEqual(containerCmd("  npm start "), ["/bin/sh", "-c", "exec npm start"]);
    assert.deepEqual(containerCmd('node -e "$APP_JS"'), ["/bin/sh", "-c", 'exec node -e "$APP_JS"']);
    for (const compound of ["cd web && node app.js", "migrate; node app.js", "node a.js | tee log", "node a.js > out", "(node a.js)", "echo `date`", "a\nb"]) {
      assert.deepEqual(containerCmd(compound), ["/bin/sh", "-c", compound]);
    }
    assert.equal(containerCmd("   "), undefined);
  });

  it("runs the image's own command when the Procfile command is empty, and keeps a HOME that is not the host path", () => {
    const body = processContainerBody(
      { app: "a", release: 1, generation: 1, type: "worker", index: 1, command: " ", cwd: "/x", env: { HOME: "/home/app" }, logFile: "/l" },
      ctx({ image: { image: "img" } }),
    );
    assert.equal(body.Cmd, undefined);
    assert.equal(body.HostConfig.PortBindings, undefined);
    assert.deepEqual(containerEnv({ HOME: "/home/app" }, "/x", undefined), ["HOME=/home/app", "TINI_KILL_PROCESS_GROUP=1"]);
  });

  it("maps host paths into a packaged slug to where the image holds it, PATH entries included", () => {
    const env = { PATH: "/data/slugs/3/.venv/bin:/usr/bin:/bin", HOME: "/data/slugs/3", VIRTUAL_ENV: "/data/slugs/3/.venv", LANG: "C.UTF-8" };
    assert.deepEqual(containerEnv(env, "/data/slugs/3", 4000, "/app"), [
      "PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/app", "VIRTUAL_ENV=/app/.venv", "LANG=C.UTF-8",
      `PORT=${CONTAINER_PORT}`, "TINI_KILL_PROCESS_GROUP=1",
    ]);
  });

  it("splits multiplexed log frames into timestamped lines, across chunk boundaries", () => {
    const frame = (stream: number, text: string) => {
      const payload = Buffer.from(text);
      const header = Buffer.alloc(8);
      header[0] = stream;
      header.writeUInt32BE(payload.length, 4);
      return Buffer.concat([header, payload]);
    };
    const all = Buffer.concat([
      frame(1, "2024-05-01T12:00:00.5Z hello\n"),
      frame(2, "2024-05-01T12:00:01.000000001Z oops: ünïcode\n"),
      frame(1, "2024-05-01T12:00:02Z part"),
      frame(1, "2024-05-01T12:00:02Z ial\n"),
    ]);
    const demux = new LogDemuxer();
    const lines = [...demux.push(all.subarray(0, 5)), ...demux.push(all.subarray(5, 40)), ...demux.push(all.subarray(40))];
    assert.deepEqual(lines.map((l) => [l.stream, l.text]), [["stdout", "hello"], ["stderr", "oops: ünïcode"], ["stdout", "partial"]]);
    assert.equal(lines[0].time, "2024-05-01T12:00:00.5Z");
  });

  it("compares engine timestamps to the nanosecond and turns them into the logs `since` parameter", () => {
    const a = timestampNanos("2024-05-01T12:00:00.000000001Z")!;
    const b = timestampNanos("2024-05-01T12:00:00.5Z")!;
    assert.ok(a < b);
    assert.equal(sinceParameter(a), "1714564800.000000001");
    assert.equal(sinceParameter(b), "1714564800.500000000");
    assert.equal(timestampNanos("garbage"), undefined);
  });

  it("finds the image in the artifact dir, or says how to get one", () => {
    const dir = mkdtempSync(join(tmpdir(), "deck-imgref-"));
    try {
      assert.throws(() => resolveImage({ app: "a", cwd: dir }), (e) => isDeckError(e) && e.code === "image_missing");
      writeFileSync(join(dir, IMAGE_REF_FILE), JSON.stringify({ image: "sha256:feed", tag: "deck/a:build-1" }));
      assert.deepEqual(resolveImage({ app: "a", cwd: dir }), { image: "sha256:feed" });
      assert.deepEqual(resolveImage({ app: "a", cwd: dir, image: "other" }), { image: "other" });
      writeFileSync(join(dir, IMAGE_REF_FILE), JSON.stringify({ image: "sha256:feed", tag: "deck/a:build-1", appDir: "/app" }));
      assert.deepEqual(resolveImage({ app: "a", cwd: dir }), { image: "sha256:feed", appDir: "/app" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const skip = dockerSkipReason();

describe("DockerRuntime on a real engine", { skip }, () => {
  const client = createDockerClient();
  const scope = `test-${randomBytes(6).toString("hex")}`;
  // A table of the test's own: removing it afterwards leaves a real deck's table on this host alone.
  const firewallTable = `deck_test_${randomBytes(4).toString("hex")}`;
  let base: BaseImage;
  let root: string;
  let stateDir: string;
  let logFile: string;
  let runtime: DockerRuntime;
  let generation = 0;

  async function webSpec(extra: Partial<ProcessSpec> = {}): Promise<ProcessSpec> {
    generation += 1;
    return {
      app: "demo", release: 2, generation, type: "web", index: 1, command: COMMAND, cwd: root,
      env: { PATH: "/host/only/bin", HOME: root, GREETING: "hello", APP_JS }, port: await findFreePort(), logFile, image: base.tag, ...extra,
    };
  }

  async function get(port: number, path = "/", host = "127.0.0.1"): Promise<string | undefined> {
    try {
      const res = await fetch(`http://${host}:${port}${path}`, { signal: AbortSignal.timeout(2000) });
      return await res.text();
    } catch {
      return undefined;
    }
  }

  async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await check();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const logText = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "deck-docker-runtime-"));
    stateDir = join(root, "state");
    logFile = join(root, "logs", "demo.log");
    mkdirSync(stateDir);
    base = await buildBaseImage();
    runtime = new DockerRuntime({ client, stateDir, scope, firewallTable, memoryBytes: 256 * 1024 ** 2, cpus: 1 });
  });

  after(async () => {
    await runtime?.close();
    for (const c of await client.listContainers([`deck.scope=${scope}`]).catch(() => [])) await client.removeContainer(c.id);
    for (const n of await client.listNetworks([`deck.scope=${scope}`]).catch(() => [])) await client.removeNetwork(n.id);
    await removeDockerFirewall(firewallTable);
    await base?.remove();
    rmSync(root, { recursive: true, force: true });
  });

  it("runs a web process that answers on 127.0.0.1 only, with its env and memory limit, and logs its output", async () => {
    const spec = await webSpec();
    const info = await runtime.start(spec);
    assert.equal(info.id, `demo.g${spec.generation}.web.1`);
    assert.equal(info.state, "running");
    assert.equal(info.port, spec.port);
    const body = JSON.parse(await waitFor("the app to answer", () => get(spec.port!))) as Record<string, string | null>;
    assert.equal(body.port, String(CONTAINER_PORT));
    assert.equal(body.greeting, "hello");
    assert.equal(body.path, "/usr/local/bin:/usr/bin:/bin", "the image's PATH, not the host's");
    assert.notEqual(body.home, root, "no host path as HOME inside the container");
    if (body.memory !== null) assert.equal(body.memory, String(256 * 1024 ** 2));

    const external = Object.values(networkInterfaces()).flat().find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    if (external) assert.equal(await get(spec.port!, "/", external), undefined, `port ${spec.port} must not answer on ${external}`);

    const log = await waitFor("the app's output in the log", () => (logText().includes("listening on") ? logText() : undefined));
    assert.match(log, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z app\\[web\\.1\\]: listening on ${CONTAINER_PORT}$`, "m"));
    assert.match(log, new RegExp(`Z deck\\[web\\.1\\]: Starting container deck-${scope}-demo\\.g\\d+\\.web\\.1 `, "m"));
    assert.deepEqual((await runtime.list("demo")).map((p) => p.id), [info.id]);
    assert.deepEqual(await runtime.list("other-app"), []);
    assert.ok(await client.inspectNetwork(appNetworkName(scope, "demo")), "the app's network exists while it has a container");
    await assert.rejects(runtime.start(spec), (e) => isDeckError(e) && e.code === "process_exists");

    // The app runs under `sh -c`, yet it gets the SIGTERM itself (and at once), and its last words reach the log.
    const t0 = Date.now();
    await runtime.stop(info.id, 10_000);
    assert.ok(Date.now() - t0 < 6000, `stop took ${Date.now() - t0}ms`);
    assert.match(logText(), /Z app\[web\.1\]: stopping on SIGTERM$/m);
    assert.equal(await client.inspectContainer(containerName(scope, info.id)), undefined, "the container is removed");
    assert.equal(await get(spec.port!), undefined);
    assert.deepEqual(await runtime.list("demo"), []);
    assert.equal(await client.inspectNetwork(appNetworkName(scope, "demo")), undefined, "the network goes with the app's last container");
  });

  it("leaves containers running for a new runtime instance, which adopts them and resumes the log without repeating lines", async () => {
    const spec = await webSpec();
    const info = await runtime.start(spec);
    await waitFor("the app to answer", () => get(spec.port!));
    await get(spec.port!, "/log/before-restart");
    await waitFor("the first line", () => (logText().includes("line before-restart") ? true : undefined));
    await runtime.close(); // deck stops; the container keeps running

    await get(spec.port!, "/log/while-deck-was-down");
    const second = new DockerRuntime({ client, stateDir, scope, firewallTable });
    runtime = second;
    const listed = await second.list("demo");
    assert.deepEqual(listed.map((p) => [p.id, p.port, p.state]), [[info.id, spec.port, "running"]]);
    await get(spec.port!, "/log/after-restart");
    await waitFor("the later lines", () => (logText().includes("line after-restart") ? true : undefined));
    const count = (text: string) => logText().split("\n").filter((l) => l.endsWith(`app[web.1]: ${text}`)).length;
    assert.equal(count("line before-restart"), 1);
    assert.equal(count("line while-deck-was-down"), 1);
    assert.equal(count("line after-restart"), 1);
    await second.stop(info.id, 5000);
  });

  it("runs the same app, type and index for two decks on one engine, each listing and stopping only its own", async () => {
    const otherScope = `test-${randomBytes(6).toString("hex")}`;
    const other = new DockerRuntime({ client, stateDir: join(root, "state-other"), scope: otherScope, firewallTable });
    try {
      const spec = await webSpec();
      const twin: ProcessSpec = { ...spec, port: await findFreePort(), logFile: join(root, "logs", "other.log") };
      const mine = await runtime.start(spec);
      const theirs = await other.start(twin);
      assert.equal(theirs.id, mine.id, "one process id in both decks");
      await waitFor("this deck's process to answer", () => get(spec.port!));
      await waitFor("the other deck's process to answer", () => get(twin.port!));
      assert.deepEqual((await runtime.list("demo")).map((p) => [p.id, p.port]), [[mine.id, spec.port]]);
      assert.deepEqual((await other.list("demo")).map((p) => [p.id, p.port]), [[theirs.id, twin.port]]);

      await runtime.stop(mine.id, 5000);
      assert.equal(await get(spec.port!), undefined, "this deck's process is gone");
      assert.ok(await get(twin.port!), "the other deck's process with the same id runs on");
      assert.deepEqual((await other.list("demo")).map((p) => [p.id, p.state]), [[theirs.id, "running"]]);
      await other.stop(theirs.id, 5000);
      assert.deepEqual(await other.list(), []);
    } finally {
      await other.close();
      for (const c of await client.listContainers([`deck.scope=${otherScope}`]).catch(() => [])) await client.removeContainer(c.id);
      for (const n of await client.listNetworks([`deck.scope=${otherScope}`]).catch(() => [])) await client.removeNetwork(n.id);
    }
  });

  it("adopts, refuses to duplicate and stops a container started under the older unscoped name", async () => {
    // Container names are engine-wide and the old ones carry no scope: an app name of the test's own.
    const app = `old-${randomBytes(3).toString("hex")}`;
    const spec = await webSpec({ app });
    const id = processId(spec);
    // What a deck started before names carried the scope: `deck-<id>`, with the labels deck reads.
    await client.createNetwork(appNetworkBody(scope, app));
    const body = processContainerBody(spec, { image: { image: base.tag }, scope, network: appNetworkName(scope, app), user: FALLBACK_USER, limits: {} });
    await client.startContainer(await client.createContainer(`deck-${id}`, body));

    await runtime.close();
    const restarted = new DockerRuntime({ client, stateDir, scope, firewallTable });
    runtime = restarted;
    assert.deepEqual((await restarted.adopt()).filter((p) => p.app === app).map((p) => [p.id, p.port]), [[id, spec.port]]);
    await waitFor("the adopted process to answer", () => get(spec.port!));
    await assert.rejects(restarted.start(spec), (e) => isDeckError(e) && e.code === "process_exists", "the same process is not started twice");

    await restarted.stop(id, 5000);
    assert.equal(await client.inspectContainer(`deck-${id}`), undefined, "the old container is removed");
    assert.equal(await get(spec.port!), undefined);
    assert.deepEqual(await restarted.list(app), []);
    assert.equal(await client.inspectNetwork(appNetworkName(scope, app)), undefined, "and the app's network with it");
  });

  it("has the engine restart a crashed process and reports the restart", async () => {
    const spec = await webSpec();
    const info = await runtime.start(spec);
    await waitFor("the app to answer", () => get(spec.port!));
    await get(spec.port!, "/exit");
    const restarted = await waitFor("a restart", async () => (await runtime.list("demo")).find((p) => p.id === info.id && p.restarts > 0));
    assert.equal(restarted.id, info.id);
    await waitFor("the app to answer again", () => get(spec.port!));
    await runtime.stop(info.id, 5000);
  });

  it("runs a one-off command to completion with its output and exit code, and stops one past its timeout", async () => {
    const lines: string[] = [];
    const ok = await runtime.runOnce({
      app: "demo", release: 2, command: 'echo "migrating $GREETING"; echo to-stderr >&2; exit 4', cwd: root, env: { GREETING: "db" },
      logFile, image: base.tag, timeoutMs: 20_000, onLine: (l) => lines.push(l),
    });
    assert.deepEqual(ok, { exitCode: 4, timedOut: false });
    assert.deepEqual(lines.sort(), ["migrating db", "to-stderr"]);
    assert.match(logText(), /Z app\[release\]: migrating db$/m);

    const t0 = Date.now();
    const slow = await runtime.runOnce({
      app: "demo", release: 2, command: 'node -e "setTimeout(() => {}, 30000)"', cwd: root, env: {}, logFile, image: base.tag, timeoutMs: 500, onLine: () => undefined,
    });
    assert.equal(slow.timedOut, true);
    assert.notEqual(slow.exitCode, 0);
    assert.ok(Date.now() - t0 < 10_000, `timeout took ${Date.now() - t0}ms`);
    assert.deepEqual(await client.listContainers([`deck.scope=${scope}`]), [], "one-off containers are removed");
    assert.deepEqual(await client.listNetworks([`deck.scope=${scope}`]), [], "and with them the app's network");
  });
});
