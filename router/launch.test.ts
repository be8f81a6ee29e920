import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test, type TestContext } from "node:test";
import { createRouterControl } from "./control-client.ts";
import { ensureRouter, stopRouter } from "./launch.ts";
import { routerPaths } from "./paths.ts";
import { freePort, send, startUpstream, waitFor } from "./test-support.ts";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Setup {
  dataDir: string;
  logFile: string;
  port: number;
  env: NodeJS.ProcessEnv;
  /** Every router pid seen; all are SIGKILLed after the test if still alive. */
  pids: Set<number>;
}

async function setup(t: TestContext): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), "deck-router-launch-"));
  const dataDir = join(dir, "data");
  const port = await freePort();
  const pids = new Set<number>();
  t.after(async () => {
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });
  const env: NodeJS.ProcessEnv = { ...process.env, DECK_HOST: "127.0.0.1", DECK_HTTP_PORT: String(port), DECK_HTTPS_PORT: String(await freePort()), DECK_DATA_DIR: dataDir };
  delete env.DECK_CONFIG;
  return { dataDir, logFile: join(dir, "logs", "router.log"), port, env, pids };
}

test("a restarted router serves its last route table; a running one is reused; stopRouter stops it", async (t) => {
  const s = await setup(t);
  const app = await startUpstream("hello from app", (req, res) => {
    setTimeout(() => res.end("hello from app"), req.url === "/slow" ? 500 : 0);
  });
  t.after(() => app.close());
  // Started from a directory outside the repository, as the deck server may be.
  const cwd = process.cwd();
  process.chdir(tmpdir());
  t.after(() => process.chdir(cwd));

  const first = await ensureRouter({ dataDir: s.dataDir, env: s.env, logFile: s.logFile });
  s.pids.add(first.pid);
  assert.equal(first.started, true);
  const again = await ensureRouter({ dataDir: s.dataDir, env: s.env, logFile: s.logFile });
  assert.deepEqual(again, { pid: first.pid, started: false });

  const control = createRouterControl(routerPaths(s.dataDir).socket);
  await control.setRoute({ app: "hello", hosts: ["hello.localhost"], upstreams: [app.address] });
  assert.equal((await send({ port: s.port, host: "hello.localhost" })).body, "hello from app");

  // A second router on the same data dir refuses to start while the first one answers.
  const main = fileURLToPath(new URL("./main.ts", import.meta.url));
  const second = spawnSync(process.execPath, ["--import", "tsx", main], { cwd, env: s.env, encoding: "utf8", timeout: 20_000 });
  assert.equal(second.status, 1);
  assert.match(second.stdout, new RegExp(`another router \\(pid ${first.pid}\\) already answers`));

  process.kill(first.pid, "SIGKILL");
  await waitFor(() => !isAlive(first.pid), 5_000, "the router to die");
  await assert.rejects(send({ port: s.port, host: "hello.localhost" }));

  const restarted = await ensureRouter({ dataDir: s.dataDir, env: s.env, logFile: s.logFile });
  s.pids.add(restarted.pid);
  assert.equal(restarted.started, true);
  assert.notEqual(restarted.pid, first.pid);
  const reply = await send({ port: s.port, host: "hello.localhost" });
  assert.equal(reply.status, 200, "the saved route is served without the deck server resending it");
  assert.equal(reply.body, "hello from app");

  // SIGTERM lets a request already in flight finish before the router exits.
  const slow = send({ port: s.port, host: "hello.localhost", path: "/slow" });
  await waitFor(async () => (await control.inflight(app.address)) === 1, 5_000, "the slow request to be in flight");
  assert.equal(await stopRouter(s.dataDir, 5_000), restarted.pid);
  // It was spawned from this process, so it lingers as a zombie until Node reaps it.
  await waitFor(() => !isAlive(restarted.pid), 2_000, "the stopped router to be reaped");
  assert.equal((await slow).body, "hello from app");
  assert.match(await readFile(s.logFile, "utf8"), /SIGTERM: stopping[\s\S]*stopped\n/);
  assert.equal(existsSync(routerPaths(s.dataDir).pidFile), false, "a clean stop removes the pid file");
  assert.equal(existsSync(routerPaths(s.dataDir).socket), false, "a clean stop removes the socket");
  assert.equal(await stopRouter(s.dataDir, 5_000), undefined, "nothing left to stop");
});

test("the router keeps serving after the deck server's whole process group is SIGKILLed", async (t) => {
  const s = await setup(t);
  const app = await startUpstream("still here");
  t.after(() => app.close());

  // A stand-in deck server in its own process group that starts the router and sets a route.
  const launch = new URL("./launch.ts", import.meta.url).href;
  const client = new URL("./control-client.ts", import.meta.url).href;
  const script = `
    const { ensureRouter } = await import(${JSON.stringify(launch)});
    const { createRouterControl } = await import(${JSON.stringify(client)});
    const r = await ensureRouter({ dataDir: ${JSON.stringify(s.dataDir)}, logFile: ${JSON.stringify(s.logFile)} });
    await createRouterControl(${JSON.stringify(routerPaths(s.dataDir).socket)}).setRoute({ app: "kept", hosts: ["kept.localhost"], upstreams: [${JSON.stringify(app.address)}] });
    console.log("ROUTER " + r.pid);
    setInterval(() => {}, 1000);
  `;
  const deck = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { env: s.env, detached: true, stdio: ["ignore", "pipe", "inherit"] });
  t.after(() => {
    if (deck.pid !== undefined && isAlive(deck.pid)) process.kill(-deck.pid, "SIGKILL");
  });
  let out = "";
  deck.stdout!.on("data", (d) => (out += d));
  await waitFor(() => /ROUTER \d+/.test(out), 20_000, "the stand-in deck server to start the router");
  const routerPid = Number(/ROUTER (\d+)/.exec(out)![1]);
  s.pids.add(routerPid);

  const exited = new Promise((r) => deck.once("exit", r));
  process.kill(-deck.pid!, "SIGKILL");
  await exited;
  assert.equal(isAlive(routerPid), true, "the router outlives the deck server");
  assert.equal((await send({ port: s.port, host: "kept.localhost" })).body, "still here");
  assert.equal(await stopRouter(s.dataDir, 5_000), routerPid);
});

test("SIGHUP or SIGUSR1 after logrotate renamed the access log: the router keeps serving and writes a new file", async (t) => {
  const s = await setup(t);
  const app = await startUpstream("rotated");
  t.after(() => app.close());
  const router = await ensureRouter({ dataDir: s.dataDir, env: s.env, logFile: s.logFile });
  s.pids.add(router.pid);
  await createRouterControl(routerPaths(s.dataDir).socket).setRoute({ app: "rot", hosts: ["rot.localhost"], upstreams: [app.address] });
  const file = routerPaths(s.dataDir).accessLog;
  const logged = async (f: string, path: string) => (await readFile(f, "utf8").catch(() => "")).includes(`"path":"${path}"`);
  for (const [n, signal] of (["SIGHUP", "SIGUSR1"] as const).entries()) {
    assert.equal((await send({ port: s.port, host: "rot.localhost", path: `/before-${n}` })).status, 200);
    await waitFor(() => logged(file, `/before-${n}`), 5_000, "the line before the rotation");
    await rename(file, `${file}.${n + 1}`);
    process.kill(router.pid, signal);
    await waitFor(async () => (await readFile(s.logFile, "utf8")).includes(`${signal}: reopening`), 5_000, "the router to reopen its log");
    assert.equal((await send({ port: s.port, host: "rot.localhost", path: `/after-${n}` })).status, 200, "still serving");
    await waitFor(() => logged(file, `/after-${n}`), 5_000, "the line after the rotation, in a new file");
    assert.equal(await logged(`${file}.${n + 1}`, `/after-${n}`), false);
  }
  assert.equal(isAlive(router.pid), true);
});

test("a killed worker is replaced by the standby: the port stays open and the saved routes are served", async (t) => {
  const s = await setup(t);
  const app = await startUpstream("back again");
  t.after(() => app.close());
  const router = await ensureRouter({ dataDir: s.dataDir, env: s.env, logFile: s.logFile });
  s.pids.add(router.pid);
  const control = createRouterControl(routerPaths(s.dataDir).socket);
  await control.setRoute({ app: "back", hosts: ["back.localhost"], upstreams: [app.address] });
  const first = await control.health();
  assert.equal(first.pid, router.pid, "/health names the supervisor as the router");
  assert.ok(first.worker !== undefined && first.worker !== router.pid, "a worker of its own serves");
  s.pids.add(first.worker);
  await waitFor(async () => /standby worker \d+ is ready/.test(await readFile(s.logFile, "utf8")), 30_000, "the standby worker to load");

  process.kill(first.worker, "SIGKILL");
  // Sent while no worker serves: the supervisor holds the connection for the next one.
  const reply = await send({ port: s.port, host: "back.localhost" });
  assert.equal(reply.status, 200);
  assert.equal(reply.body, "back again");
  const second = await control.health();
  assert.equal(second.pid, router.pid, "the same supervisor");
  assert.notEqual(second.worker, first.worker);
  s.pids.add(second.worker!);
  assert.match(await readFile(s.logFile, "utf8"), new RegExp(`serving worker ${first.worker} was killed by SIGKILL`));

  assert.equal(await stopRouter(s.dataDir, 10_000), router.pid);
  await waitFor(() => !isAlive(second.worker!), 5_000, "the worker to stop with its supervisor");
  await assert.rejects(send({ port: s.port, host: "back.localhost" }));
});
