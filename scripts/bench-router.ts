/**
 * `npm run bench:router`: deck's router against nginx, HAProxy, Caddy and no proxy at all. One run on
 * this machine; every number is printed next to its baselines from the same run (its ratio to nginx
 * above all), as Markdown tables, ending with the targets and whether each was met.
 *
 * Layout on a 2-core machine: the proxy under test is pinned to core 0 (taskset); the load
 * generators (wrk, this script) and the upstreams are pinned to core 1. Each proxy is started
 * as users run it: deck's router as its own process (router/main.ts) with its default settings
 * except DECK_RATE_LIMIT=0 (the default 1,000 requests/s per client would throttle a load generator
 * on one address); nginx from Debian with one worker and a keep-alive upstream pool; HAProxy and
 * Caddy from Debian with one thread, keep-alive upstream connections and no access log
 * (bench-router-peers.ts). A last section gives every proxy and the load both cores, as a 2-core
 * server has them: nginx with 2 workers, HAProxy with 2 threads, Caddy with GOMAXPROCS=2.
 *
 * Needs nginx and wrk (Debian: apt-get install -y nginx-light wrk); HAProxy and Caddy for their rows
 * (apt-get install -y haproxy caddy: without them their rows say "not installed" and the rest runs).
 * BENCH_SECONDS sets the length of each request-rate run (default 3, at least 2), BENCH_SWITCHES
 * the number of blue-green switches (default 20, the issue's number; fewer for a quick look).
 * About 8 minutes in all.
 */
import { execFileSync, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Route } from "../core/index.ts";
import { createRouterControl, probeRouter, type RouterControlClient } from "../router/control-client.ts";
import { routerPaths } from "../router/paths.ts";
import { saveRoutesFile } from "../router/routes-file.ts";
import {
  acceptedConnections, alive, childPids, freePort, get, has, median, nginxProxyConf, nginxStaticConf, percentile,
  Processes, rssMiB, sleep, SteadyLoad, waitAnswers, wrk, wrkScript, type NginxSite, type SteadyLoadResult, type WrkResult,
} from "./bench-router-tools.ts";
import { NOT_INSTALLED, PEER_KINDS, peerTitle, peerVersions, startPeer, type Peer, type PeerKind, type PeerSite } from "./bench-router-peers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TSX_LOADER = import.meta.resolve("tsx");
const UPSTREAM_SCRIPT = join(ROOT, "scripts", "bench-upstream.mjs");
const PROXY_CORE = "0";
const LOAD_CORE = "1";
/** The 2-core section: proxy, load and upstreams all on both. */
const BOTH_CORES = "0,1";
const SECONDS = Math.max(2, Number(process.env.BENCH_SECONDS ?? 3));
const ROUNDS = 3;
const TRANSFER_SECONDS = 2;
const ROUTE_CHANGES = 20;
const SWITCHES = Number(process.env.BENCH_SWITCHES ?? 20);
const STEADY_RATE = 300;
const DRAIN_DEADLINE_MS = 30_000;
const MiB = 1024 * 1024;

/** The settings the router runs with here, printed with the results. */
const ROUTER_ENV = { DECK_RATE_LIMIT: "0" } as const;

const STARTED = Date.now();
const progress = (line: string) => process.stderr.write(`bench:router: ${String(Math.round((Date.now() - STARTED) / 1000)).padStart(3)} s  ${line}\n`);
const loadAverage = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

interface DeckRouter {
  name: string;
  child: ChildProcess;
  port: number;
  dataDir: string;
  control: RouterControlClient;
}

interface Nginx {
  child: ChildProcess;
  dir: string;
  conf: string;
  port: number;
  portNoLog: number;
  sites: NginxSite[];
  workers: number;
}

interface Setup {
  dir: string;
  procs: Processes;
  staticPort: number;
  filesPort: number;
  nginx: Nginx;
  deck: DeckRouter;
  deckNoLog: DeckRouter;
  /** HAProxy and Caddy on the proxy core, one thread each, no access log. */
  peers: Peer[];
}

const route = (app: string, host: string, port: number): Route => ({ app, hosts: [host], upstreams: [`127.0.0.1:${port}`] });

async function startUpstream(procs: Processes, name: string, core = LOAD_CORE): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const child = procs.start(core, [process.execPath, UPSTREAM_SCRIPT, String(port), name]);
  await waitAnswers(port, "upstream", name);
  return { child, port };
}

interface DeckRouterOptions {
  name: string;
  accessLog: "on" | "off";
  routes: Route[];
  core?: string;
  /** Settings on top of ROUTER_ENV. */
  env?: Record<string, string>;
}

async function startDeckRouter(s: Pick<Setup, "dir" | "procs">, o: DeckRouterOptions): Promise<DeckRouter> {
  const { name, accessLog, routes } = o;
  const dataDir = join(s.dir, name);
  await mkdir(dataDir, { recursive: true });
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...ROUTER_ENV,
    ...o.env,
    DECK_ACCESS_LOG: accessLog,
    DECK_DATA_DIR: dataDir,
    DECK_HOST: "127.0.0.1",
    DECK_HTTP_PORT: String(port),
    DECK_HTTPS_PORT: String(await freePort()),
  };
  // A router on its own: no config file, no shared database or Redis from the caller's environment.
  for (const k of ["DECK_CONFIG", "DATABASE_URL", "REDIS_URL"]) delete env[k];
  const logFile = join(dataDir, "router.log");
  const child = s.procs.start(o.core ?? PROXY_CORE, [process.execPath, "--import", TSX_LOADER, join(ROOT, "router", "main.ts")], { env, cwd: dataDir, logFile });
  const socket = routerPaths(dataDir).socket;
  const until = Date.now() + 30_000;
  while (!(await probeRouter(socket, 500))) {
    if (child.exitCode !== null || Date.now() > until) {
      // A router that died before writing its log leaves none: the error then says so with no lines.
      const log = await readFile(logFile, "utf8").catch(() => "");
      throw new Error(`deck's router (${name}) did not start:\n${log.split("\n").slice(-15).join("\n")}`);
    }
    await sleep(50);
  }
  const control = createRouterControl(socket);
  await control.replaceAll(routes);
  return { name, child, port, dataDir, control };
}

function nginxCommand(n: Nginx, ...args: string[]): void {
  execFileSync("nginx", ["-c", n.conf, "-e", join(n.dir, "error.log"), ...args], { stdio: ["ignore", "ignore", "pipe"] });
}

/** Writes the configuration with `bg.localhost` pointing at `bgPort` and reloads nginx. */
async function reloadNginx(n: Nginx, bgPort: number): Promise<void> {
  n.sites = n.sites.map((site) => (site.host === "bg.localhost" ? { ...site, upstream: bgPort } : site));
  await writeFile(n.conf, nginxProxyConf({ dir: n.dir, port: n.port, portNoLog: n.portNoLog, sites: n.sites, workers: n.workers }));
  nginxCommand(n, "-s", "reload");
}

/** Waits until the given (old) worker processes have exited: how nginx finishes draining after a reload. */
async function waitWorkersGone(pids: number[], deadlineMs: number): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  while (pids.some(alive)) {
    if (Date.now() > until) return false;
    await sleep(20);
  }
  return true;
}

/** A new folder under `parent` that nginx's workers (an unprivileged user) can write their temp and log files in. */
async function nginxDir(parent: string, name: string): Promise<string> {
  const dir = join(parent, name);
  await mkdir(dir, { recursive: true });
  chmodSync(dir, 0o777);
  return dir;
}

/** The static upstream (nginx answering "hello world"), its port once it answers. */
async function startStatic(procs: Processes, dir: string, core: string, workers: number): Promise<number> {
  const port = await freePort();
  await writeFile(join(dir, "nginx.conf"), nginxStaticConf(dir, port, workers));
  procs.start(core, ["nginx", "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")]);
  await waitAnswers(port, "upstream", "hello world");
  return port;
}

/** nginx as the proxy in front of `sites`, with and without its access log, once both ports answer. */
async function startNginxProxy(procs: Processes, o: { dir: string; core: string; workers: number; sites: NginxSite[] }): Promise<Nginx> {
  const conf = join(o.dir, "nginx.conf");
  const [port, portNoLog] = [await freePort(), await freePort()];
  await writeFile(conf, nginxProxyConf({ dir: o.dir, port, portNoLog, sites: o.sites, workers: o.workers }));
  const child = procs.start(o.core, ["nginx", "-c", conf, "-e", join(o.dir, "error.log")]);
  await waitAnswers(port, "app.localhost", "hello world");
  await waitAnswers(portNoLog, "app.localhost", "hello world");
  return { child, dir: o.dir, conf, port, portNoLog, sites: o.sites, workers: o.workers };
}

async function setUp(procs: Processes): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), "deck-bench-router-"));
  // nginx workers run as an unprivileged user and need their temp and log paths.
  chmodSync(dir, 0o755);
  const staticPort = await startStatic(procs, await nginxDir(dir, "static"), LOAD_CORE, 1);
  const files = await startUpstream(procs, "files");
  const bg = await startUpstream(procs, "bg-0");

  const sites: NginxSite[] = [
    { host: "app.localhost", upstream: staticPort },
    { host: "files.localhost", upstream: files.port, bodies: true },
    { host: "bg.localhost", upstream: bg.port },
  ];
  const nginx = await startNginxProxy(procs, { dir: await nginxDir(dir, "nginx"), core: PROXY_CORE, workers: 1, sites });

  const routes = [route("app", "app.localhost", staticPort), route("files", "files.localhost", files.port), route("bg", "bg.localhost", bg.port)];
  const deck = await startDeckRouter({ dir, procs }, { name: "deck", accessLog: "on", routes });
  const deckNoLog = await startDeckRouter({ dir, procs }, { name: "deck-nolog", accessLog: "off", routes });
  for (const r of [deck, deckNoLog]) await waitAnswers(r.port, "app.localhost", "hello world");
  const peers = await startPeers(procs, { dir, core: PROXY_CORE, threads: 1, sites: [sites[0], sites[1]] });
  return { dir, procs, staticPort, filesPort: files.port, nginx, deck, deckNoLog, peers };
}

/** HAProxy and Caddy in front of the given sites; one that is not installed comes back without a port. */
async function startPeers(procs: Processes, o: { dir: string; core: string; threads: number; sites: PeerSite[] }): Promise<Peer[]> {
  const peers: Peer[] = [];
  for (const kind of PEER_KINDS) {
    const ready = { host: "app.localhost", expect: "hello world" };
    peers.push(await startPeer(kind, { procs, core: o.core, dir: join(o.dir, kind), port: await freePort(), sites: o.sites, threads: o.threads, ready }));
  }
  return peers;
}

// ---------------------------------------------------------------------------------------------
// Measurements

/** The names of the rows that others are compared with. */
const DIRECT = "direct to upstream";
const NGINX = "nginx";
const NGINX_NO_LOG = "nginx, access log off";
const DECK = "deck router";
const DECK_NO_LOG = "deck router, access log off";

/** One path the load goes through: straight to the upstream, or through a proxy. */
interface Target {
  name: string;
  /** Undefined for a proxy that is not installed: its rows say so. */
  port: number | undefined;
  /** The name of the nginx row it is compared with (nginx with its access log, or without). */
  base: string;
  /** The processes of a proxy, whose memory is its RSS; undefined for the direct path. */
  pids?: () => number[];
}

/** A process and the processes it started (nginx's master and workers, deck's supervisor and workers). */
const processTree = (child: ChildProcess) => [child.pid!, ...childPids(child.pid!)];
const rssOf = (pids: number[]) => pids.reduce((sum, pid) => sum + rssMiB(pid), 0);

const nginxTarget = (name: string, port: number, n: Nginx): Target => ({ name, port, base: name, pids: () => processTree(n.child) });
const deckTarget = (name: string, base: string, r: DeckRouter): Target => ({ name, port: r.port, base, pids: () => processTree(r.child) });
const peerTargets = (peers: Peer[], base: string, suffix: (kind: PeerKind) => string): Target[] =>
  peers.map((p) => ({ name: `${peerTitle(p.kind)}${suffix(p.kind)}`, port: p.running?.port, base, pids: p.running && (() => processTree(p.running!.child)) }));

interface Row {
  name: string;
  base: string;
  /** False for a proxy that is not installed: it has no runs. */
  installed: boolean;
  runs: WrkResult[];
}

const rowsFor = (targets: Target[]): Row[] => targets.map((t) => ({ name: t.name, base: t.base, installed: t.port !== undefined, runs: [] }));

interface RateRow extends Row {
  /**
   * New connections the static upstream accepted in the middle of the measured runs, and the
   * requests served meanwhile; undefined for the direct path.
   */
  upstream?: { connections: number; requests: number };
  rss?: number;
}

/**
 * The best of several runs: other work on this shared machine only ever slows a run down, so the
 * fastest run is the closest to what the proxy itself can do. All of a row's numbers come from it.
 */
const best = (runs: WrkResult[]): WrkResult => runs.reduce((a, b) => (b.rps > a.rps ? b : a));
const errorsOf = (runs: WrkResult[]) => runs.reduce((n, r) => n + r.httpErrors + r.socketErrors, 0);

interface RateOptions {
  /** Where wrk runs, and with how many threads. */
  core: string;
  threads: number;
  /** The static upstream, whose accepted connections are counted. */
  staticPort: number;
  script: string;
  label: string;
}

async function measureRate(targets: Target[], o: RateOptions): Promise<RateRow[]> {
  const rows: RateRow[] = rowsFor(targets).map((row, i) => ({ ...row, upstream: targets[i].pids ? { connections: 0, requests: 0 } : undefined }));
  const live = targets.flatMap((t, i) => (t.port === undefined ? [] : [{ port: t.port, row: rows[i] }]));
  const run = (port: number, seconds: number) => wrk({ core: o.core, threads: o.threads, port, host: "app.localhost", connections: 50, seconds, script: o.script });
  progress(`${o.label}: warming up`);
  for (const t of live) await run(t.port, 2);
  // Upstream connections are counted from 0.5 s after a run starts to 0.5 s before it ends: wrk
  // stops with requests in flight, and a proxy must close the upstream connections of those.
  const window = SECONDS - 1;
  for (let round = 1; round <= ROUNDS; round++) {
    progress(`${o.label}: round ${round} of ${ROUNDS}`);
    // Interleaved, so drift in the machine's load spreads over every path alike.
    for (const { port, row } of live) {
      const running = run(port, SECONDS);
      await sleep(500);
      const before = await acceptedConnections(o.staticPort);
      await sleep(window * 1000);
      const after = await acceptedConnections(o.staticPort);
      const result = await running;
      row.runs.push(result);
      if (row.upstream) {
        row.upstream.connections += after - before;
        row.upstream.requests += Math.round(result.rps * window);
      }
    }
  }
  for (const [i, t] of targets.entries()) if (t.pids && t.port !== undefined) rows[i].rss = rssOf(t.pids());
  return rows;
}

interface HalfRate {
  rate: number;
  rows: Row[];
}

async function measureHalfRate(s: Setup, targets: Target[], nginxMax: number): Promise<HalfRate> {
  const rate = Math.round(nginxMax / 2);
  const script = join(s.dir, "fixed-rate.lua");
  await writeFile(script, wrkScript({ rate }));
  const run = (port: number) => wrk({ core: LOAD_CORE, port, host: "app.localhost", connections: 50, seconds: SECONDS, script });
  const rows = rowsFor(targets);
  for (let round = 1; round <= ROUNDS; round++) {
    progress(`fixed rate ${rate}/s: round ${round} of ${ROUNDS}`);
    for (const [i, t] of targets.entries()) if (t.port !== undefined) rows[i].runs.push(await run(t.port));
  }
  return { rate, rows };
}

interface TransferRow extends Row {
  download: number[];
  upload: number[];
  errors: number;
}

interface TransferOptions {
  dir: string;
  core: string;
  threads: number;
  label: string;
}

async function measureTransfers(targets: Target[], o: TransferOptions): Promise<TransferRow[]> {
  const download = join(o.dir, "done.lua");
  const upload = join(o.dir, "upload.lua");
  await writeFile(download, wrkScript());
  await writeFile(upload, wrkScript({ uploadBytes: 10 * MiB }));
  const rows: TransferRow[] = rowsFor(targets).map((row) => ({ ...row, download: [], upload: [], errors: 0 }));
  for (let round = 1; round <= ROUNDS; round++) {
    progress(`${o.label}: round ${round} of ${ROUNDS}`);
    for (const [i, t] of targets.entries()) {
      if (t.port === undefined) continue;
      const common = { core: o.core, threads: o.threads, port: t.port, host: "files.localhost", connections: 4, seconds: TRANSFER_SECONDS };
      const d = await wrk({ ...common, path: "/1m", script: download });
      const u = await wrk({ ...common, path: "/upload", script: upload });
      rows[i].download.push(d.rps); // MiB/s: one MiB per request
      rows[i].upload.push(u.rps * 10);
      rows[i].errors += errorsOf([d, u]);
    }
  }
  return rows;
}

interface RouteCount {
  one: WrkResult[];
  many: WrkResult[];
  replaceAllMs: number[];
  rssMany: number;
}

async function measureRouteCount(s: Setup, script: string): Promise<RouteCount> {
  const many = Array.from({ length: 1000 }, (_, i) => {
    const name = `r${String(i).padStart(4, "0")}`;
    return route(name, `${name}.localhost`, s.staticPort);
  });
  const middle = many[500];
  const out: RouteCount = { one: [], many: [], replaceAllMs: [], rssMany: 0 };
  const run = () => wrk({ core: LOAD_CORE, port: s.deck.port, host: middle.hosts[0], connections: 50, seconds: SECONDS, script });
  const saved = await s.deck.control.routes();
  for (let round = 1; round <= ROUNDS; round++) {
    progress(`1 route vs 1,000: round ${round} of ${ROUNDS}`);
    await s.deck.control.replaceAll([middle]);
    out.one.push(await run());
    const t0 = performance.now();
    await s.deck.control.replaceAll(many);
    out.replaceAllMs.push(performance.now() - t0);
    out.many.push(await run());
  }
  out.rssMany = rssOf(processTree(s.deck.child));
  await s.deck.control.replaceAll(saved);
  return out;
}

interface RouteChange {
  deck: number[];
  /** How long the control API took to answer each PUT (the change is live when it answers). */
  deckPut: number[];
  /** Saving a routes file of the same size on the same disk, timed alone (part of every change). */
  deckSave: number[];
  nginx: number[];
}

/**
 * Polls GET / back to back over one keep-alive connection (a new one when the proxy closes it, as
 * an nginx worker retiring after a reload does) until the answer comes from upstream `name`.
 */
async function pollUntil(port: number, name: string, agent: http.Agent): Promise<number> {
  const until = Date.now() + 10_000;
  for (;;) {
    const r = await get(port, "bg.localhost", "/", agent);
    if (r?.status === 200 && r.body === `${name}\n`) return performance.now();
    if (Date.now() > until) throw new Error(`port ${port} never answered with upstream ${name}`);
  }
}

/** Time to save a routes file of this size on this disk (written, flushed to disk, renamed). */
async function timeRoutesFileSave(dir: string, routes: Route[]): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < ROUTE_CHANGES; i++) {
    const t0 = performance.now();
    await saveRoutesFile(join(dir, "routes-probe.json"), routes);
    times.push(performance.now() - t0);
  }
  return times;
}

async function measureRouteChange(s: Setup): Promise<RouteChange> {
  const a = await startUpstream(s.procs, "a");
  const b = await startUpstream(s.procs, "b");
  const out: RouteChange = { deck: [], deckPut: [], deckSave: [], nginx: [] };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const saved = await s.deck.control.routes();
  out.deckSave = await timeRoutesFileSave(s.deck.dataDir, saved);
  progress(`route change: ${ROUTE_CHANGES} changes on deck's router`);
  await s.deck.control.setRoute(route("bg", "bg.localhost", a.port));
  await waitAnswers(s.deck.port, "bg.localhost", "a\n");
  for (let i = 0; i < ROUTE_CHANGES; i++) {
    const [to, name] = i % 2 === 0 ? [b.port, "b"] : [a.port, "a"];
    const t0 = performance.now();
    const put = s.deck.control.setRoute(route("bg", "bg.localhost", to)).then(() => performance.now() - t0);
    const t1 = await pollUntil(s.deck.port, name, agent);
    out.deckPut.push(await put);
    out.deck.push(t1 - t0);
  }
  await s.deck.control.replaceAll(saved);

  progress(`route change: ${ROUTE_CHANGES} reloads of nginx`);
  const previousBg = s.nginx.sites.find((site) => site.host === "bg.localhost")!.upstream;
  await reloadNginx(s.nginx, a.port);
  await waitAnswers(s.nginx.port, "bg.localhost", "a\n");
  for (let i = 0; i < ROUTE_CHANGES; i++) {
    const [to, name] = i % 2 === 0 ? [b.port, "b"] : [a.port, "a"];
    const oldWorkers = childPids(s.nginx.child.pid!);
    const t0 = performance.now();
    await reloadNginx(s.nginx, to);
    out.nginx.push((await pollUntil(s.nginx.port, name, agent)) - t0);
    // Not timed: the next change starts with only the current worker, as the first did.
    await waitWorkersGone(oldWorkers, 10_000);
  }
  await reloadNginx(s.nginx, previousBg);
  await waitAnswers(s.nginx.port, "bg.localhost", "bg-0\n");
  agent.destroy();
  await s.procs.stop(a.child);
  await s.procs.stop(b.child);
  return out;
}

interface BlueGreen {
  proxy: string;
  switches: number;
  load: SteadyLoadResult;
  errors: number;
  drainMs: number[];
  deadlineMisses: number;
}

/**
 * Deploys under steady load: each switch starts a new upstream process, waits until it answers,
 * points the proxy at it, waits for the old one to drain (deadline 30 s), then SIGTERMs the old one.
 */
async function measureBlueGreen(s: Setup, proxy: "deck" | "nginx"): Promise<BlueGreen> {
  const port = proxy === "deck" ? s.deck.port : s.nginx.port;
  const saved = proxy === "deck" ? await s.deck.control.routes() : [];
  const savedBg = s.nginx.sites.find((site) => site.host === "bg.localhost")!.upstream;
  let current = await startUpstream(s.procs, `${proxy}-0`);
  const switchTo = async (to: number): Promise<boolean> => {
    if (proxy === "deck") {
      const olds = (await s.deck.control.routes()).find((r) => r.app === "bg")?.upstreams ?? [];
      await s.deck.control.setRoute(route("bg", "bg.localhost", to));
      // As deck's deploy drains (deploy/activate.ts drainAndStop): poll the in-flight count.
      const until = Date.now() + DRAIN_DEADLINE_MS;
      for (const upstream of olds) {
        while ((await s.deck.control.inflight(upstream)) > 0) {
          if (Date.now() > until) return false;
          await sleep(100);
        }
      }
      return true;
    }
    const oldWorkers = childPids(s.nginx.child.pid!);
    await reloadNginx(s.nginx, to);
    return waitWorkersGone(oldWorkers, DRAIN_DEADLINE_MS);
  };
  await switchTo(current.port);
  await waitAnswers(port, "bg.localhost", `${proxy}-0\n`);
  const load = new SteadyLoad(port, "bg.localhost", STEADY_RATE);
  load.start();
  await sleep(1000);
  const drainMs: number[] = [];
  let deadlineMisses = 0;
  for (let i = 1; i <= SWITCHES; i++) {
    progress(`blue-green under load, ${proxy}: switch ${i} of ${SWITCHES}`);
    const next = await startUpstream(s.procs, `${proxy}-${i}`);
    const t0 = performance.now();
    if (!(await switchTo(next.port))) deadlineMisses++;
    drainMs.push(performance.now() - t0);
    await s.procs.stop(current.child);
    current = next;
  }
  await sleep(1000);
  const result = await load.stop();
  if (proxy === "deck") await s.deck.control.replaceAll(saved);
  else await reloadNginx(s.nginx, savedBg);
  await s.procs.stop(current.child);
  return { proxy, switches: SWITCHES, load: result, errors: load.errorCount(), drainMs, deadlineMisses };
}

interface TwoCores {
  rate: RateRow[];
  transfers: TransferRow[];
}

/** True once deck's configuration has a setting for the number of router workers that serve. */
function hasRouterWorkersSetting(): boolean {
  const dir = join(ROOT, "config");
  return readdirSync(dir)
    .filter((name) => name.endsWith(".ts") && !name.endsWith(".test.ts"))
    .some((name) => readFileSync(join(dir, name), "utf8").includes("DECK_ROUTER_WORKERS"));
}

/**
 * Every proxy given both cores, as on a 2-core server, sharing them with the load and the upstreams:
 * nginx with 2 workers, HAProxy with 2 threads, Caddy with GOMAXPROCS=2, deck's router with 2
 * workers once it has that setting (with one serving worker until then). None writes an access
 * log. A fresh set of processes, so nothing from the one-core runs (connections, pools) carries over.
 */
async function measureTwoCores(procs: Processes, parent: string): Promise<TwoCores> {
  const dir = join(parent, "two-cores");
  await mkdir(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const staticPort = await startStatic(procs, await nginxDir(dir, "static"), BOTH_CORES, 2);
  const files = await startUpstream(procs, "files", BOTH_CORES);
  const sites: NginxSite[] = [
    { host: "app.localhost", upstream: staticPort },
    { host: "files.localhost", upstream: files.port, bodies: true },
  ];
  const nginx = await startNginxProxy(procs, { dir: await nginxDir(dir, "nginx"), core: BOTH_CORES, workers: 2, sites });
  const workers = hasRouterWorkersSetting();
  const deck = await startDeckRouter(
    { dir, procs },
    {
      name: "deck-two-cores",
      accessLog: "off",
      routes: [route("app", "app.localhost", staticPort), route("files", "files.localhost", files.port)],
      core: BOTH_CORES,
      env: workers ? { DECK_ROUTER_WORKERS: "2" } : {},
    },
  );
  await waitAnswers(deck.port, "app.localhost", "hello world");
  const peers = await startPeers(procs, { dir, core: BOTH_CORES, threads: 2, sites });

  const nginxName = `${NGINX}, 2 workers`;
  const proxies: Target[] = [
    nginxTarget(nginxName, nginx.portNoLog, nginx),
    deckTarget(`${DECK}, ${workers ? "2 workers (DECK_ROUTER_WORKERS=2)" : "1 worker (DECK_ROUTER_WORKERS not yet supported)"}`, nginxName, deck),
    ...peerTargets(peers, nginxName, (kind) => (kind === "haproxy" ? ", 2 threads (nbthread 2)" : ", GOMAXPROCS=2")),
  ];
  const direct = (port: number): Target => ({ name: DIRECT, port, base: nginxName });
  const script = join(dir, "done.lua");
  await writeFile(script, wrkScript());
  const rate = await measureRate([direct(staticPort), ...proxies], { core: BOTH_CORES, threads: 2, staticPort, script, label: "2 cores, request rate" });
  const transfers = await measureTransfers([direct(files.port), ...proxies], { dir, core: BOTH_CORES, threads: 2, label: "2 cores, transfers" });
  return { rate, transfers };
}

// ---------------------------------------------------------------------------------------------
// Report

const f = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "—");
const ratio = (a: number, b: number) => `${f(a / b)}×`;
const int = (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : "—");

function versions(): string {
  const nginxV = /nginx\/(\S+)/.exec(spawnSync("nginx", ["-v"], { encoding: "utf8" }).stderr)?.[1] ?? "?";
  return `${cpus().length} cores (${cpus()[0]?.model.trim() ?? "?"}), Node.js ${process.versions.node}, nginx ${nginxV}, ${peerVersions()}`;
}

interface Results {
  rate: RateRow[];
  half: HalfRate;
  transfers: TransferRow[];
  routes: RouteCount;
  change: RouteChange;
  blueGreen: BlueGreen[];
  twoCores: TwoCores;
  accessLogBytes: number;
  loadBefore: string;
  loadAfter: string;
  seconds: number;
}

const byName = <T extends Row>(rows: T[], name: string): T => rows.find((r) => r.name === name)!;
const rps = (row: Row) => best(row.runs).rps;
/** A row whose proxy is not installed: the reason in its first cell, dashes in the rest. */
const notInstalled = (name: string, cells: number) => `| ${name} | ${[NOT_INSTALLED, ...Array<string>(cells - 1).fill("—")].join(" | ")} |`;
const per10k = (row: RateRow) => (row.upstream === undefined ? NaN : (row.upstream.connections / row.upstream.requests) * 10_000);
/** The run with the lowest p99, for the same reason as best(). */
const calmest = (runs: WrkResult[]) => runs.reduce((a, b) => (b.p99 < a.p99 ? b : a));
/** Below 95% of the rate asked, the proxy could not keep up: its latencies are a saturated proxy's. */
const sustained = (x: WrkResult, rate: number) => x.rps >= 0.95 * rate;
const dl = (t: TransferRow) => Math.max(...t.download);
const ul = (t: TransferRow) => Math.max(...t.upload);

function rateTable(rows: RateRow[]): string[] {
  const direct = byName(rows, DIRECT);
  const line = (row: RateRow) => {
    if (!row.installed) return notInstalled(row.name, 9);
    const b = best(row.runs);
    const connections = row.upstream === undefined ? "—" : `${f(per10k(row))} (${row.upstream.connections} in ${row.upstream.requests})`;
    return `| ${row.name} | ${int(b.rps)} | ${ratio(b.rps, rps(byName(rows, row.base)))} | ${ratio(b.rps, rps(direct))} | ${f(b.p50)} | ${f(b.p99)} | ${f(b.p999)} | ${connections} | ${row.rss === undefined ? "—" : f(row.rss, 0)} | ${errorsOf(row.runs)} |`;
  };
  return [
    "| path | requests/s | vs nginx | vs direct | p50 ms | p99 ms | p99.9 ms | new upstream connections per 10k requests | RSS MiB | errors |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map(line),
  ];
}

function halfRateTable(h: HalfRate): string[] {
  const achieved = (x: WrkResult) => (sustained(x, h.rate) ? int(x.rps) : `${int(x.rps)} (${Math.round((x.rps / h.rate) * 100)}%: cannot keep up)`);
  const line = (row: Row) => {
    if (!row.installed) return notInstalled(row.name, 6);
    const x = calmest(row.runs);
    return `| ${row.name} | ${achieved(x)} | ${f(x.p50)} | ${f(x.p99)} | ${f(x.p999)} | ${ratio(x.p99, calmest(byName(h.rows, row.base).runs).p99)} | ${errorsOf(row.runs)} |`;
  };
  return [`| path | achieved requests/s | p50 ms | p99 ms | p99.9 ms | p99 vs nginx | errors (${ROUNDS} runs) |`, "|---|---|---|---|---|---|---|", ...h.rows.map(line)];
}

function transferTable(rows: TransferRow[]): string[] {
  const direct = byName(rows, DIRECT);
  const line = (t: TransferRow) => {
    if (!t.installed) return notInstalled(t.name, 7);
    const base = byName(rows, t.base);
    return `| ${t.name} | ${f(dl(t), 0)} | ${ratio(dl(t), dl(base))} | ${ratio(dl(t), dl(direct))} | ${f(ul(t), 0)} | ${ratio(ul(t), ul(base))} | ${ratio(ul(t), ul(direct))} | ${t.errors} |`;
  };
  return ["| path | 1 MiB downloads MiB/s | vs nginx | vs direct | 10 MiB uploads MiB/s | vs nginx | vs direct | errors |", "|---|---|---|---|---|---|---|---|", ...rows.map(line)];
}

function twoCoreTable(t: TwoCores): string[] {
  const line = (row: RateRow, i: number) => {
    if (!row.installed) return notInstalled(row.name, 9);
    const [x, base] = [t.transfers[i], byName(t.transfers, row.base)];
    const b = best(row.runs);
    return `| ${row.name} | ${int(b.rps)} | ${ratio(b.rps, rps(byName(t.rate, row.base)))} | ${f(b.p99)} | ${f(dl(x), 0)} | ${ratio(dl(x), dl(base))} | ${f(ul(x), 0)} | ${ratio(ul(x), ul(base))} | ${row.rss === undefined ? "—" : f(row.rss, 0)} | ${errorsOf(row.runs) + x.errors} |`;
  };
  return [
    "| path | requests/s | vs nginx | p99 ms | 1 MiB downloads MiB/s | vs nginx | 10 MiB uploads MiB/s | vs nginx | RSS MiB | errors |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...t.rate.map(line),
  ];
}

/** Each target as one line: "target …: met (…)" or "target …: not met (…)". */
function targetLines(r: Results): string[] {
  const [nginx, deck] = [byName(r.rate, NGINX), byName(r.rate, DECK)];
  const rateRatio = rps(deck) / rps(nginx);
  const noLogRatio = rps(byName(r.rate, DECK_NO_LOG)) / rps(byName(r.rate, NGINX_NO_LOG));
  const [tNginx, tDeck] = [byName(r.transfers, NGINX), byName(r.transfers, DECK)];
  const [dlRatio, ulRatio] = [dl(tDeck) / dl(tNginx), ul(tDeck) / ul(tNginx)];
  const [halfNginx, halfDeck] = [calmest(byName(r.half.rows, NGINX).runs), calmest(byName(r.half.rows, DECK).runs)];
  const halfRatio = halfDeck.p99 / halfNginx.p99;
  const deckBg = r.blueGreen.find((b) => b.proxy === "deck")!;
  const changeMedian = median(r.change.deck);
  const routesRatio = best(r.routes.many).rps / best(r.routes.one).rps;
  const targets: [string, string, boolean][] = [
    ["requests/s ≥ 0.6× nginx, one core each", `${f(rateRatio)}×, both with their access log; ${f(noLogRatio)}× with neither`, rateRatio >= 0.6],
    ["1 MiB downloads ≥ 1.0× nginx", `${f(dlRatio)}×: ${f(dl(tDeck), 0)} vs ${f(dl(tNginx), 0)} MiB/s`, dlRatio >= 1],
    ["10 MiB uploads ≥ 1.0× nginx", `${f(ulRatio)}×: ${f(ul(tDeck), 0)} vs ${f(ul(tNginx), 0)} MiB/s`, ulRatio >= 1],
    [
      `p99 at half of nginx's maximum rate ≤ 2× nginx's`,
      `${f(halfRatio)}×: ${f(halfDeck.p99)} vs ${f(halfNginx.p99)} ms at ${r.half.rate} requests/s${sustained(halfDeck, r.half.rate) ? "" : `; deck's router served only ${int(halfDeck.rps)} of them`}`,
      halfRatio <= 2 && sustained(halfDeck, r.half.rate),
    ],
    ["≤ 1 new upstream connection per 10k requests", f(per10k(deck)), per10k(deck) <= 1],
    [`0 errors across ${SWITCHES} blue-green switches, every slow request completed`, `${deckBg.errors} errors; ${deckBg.load.slowOk} of ${deckBg.load.slowSent} slow requests answered 200`, deckBg.errors === 0 && deckBg.load.slowOk === deckBg.load.slowSent],
    ["route change ≤ 10 ms", `median ${f(changeMedian)} ms, max ${f(Math.max(...r.change.deck))} ms`, changeMedian <= 10],
    ["1,000 routes ≥ 0.97× the requests/s of 1 route", `${f(routesRatio)}×`, routesRatio >= 0.97],
  ];
  return targets.map(([target, value, met]) => `- target ${target}: ${met ? "met" : "**not met**"} (${value})`);
}

function report(r: Results): string[] {
  const oneRps = best(r.routes.one).rps;
  const manyRps = best(r.routes.many).rps;
  const changeRow = (name: string, how: string, xs: number[]) => `| ${name} | ${how} | ${f(median(xs))} | ${f(percentile(xs, 90))} | ${f(Math.max(...xs))} |`;
  const bgRow = (b: BlueGreen) => {
    const kinds = [...b.load.errors].map(([k, n]) => `${n} ${k}`).concat(b.load.unfinished ? [`${b.load.unfinished} unanswered`] : []);
    return `| ${b.proxy === "deck" ? "deck router" : "nginx"} | ${b.switches} | ${b.load.sent} | ${b.errors}${kinds.length ? ` (${kinds.join(", ")})` : ""} | ${b.load.slowSent} | ${b.load.slowOk} | ${f(median(b.drainMs) / 1000)} | ${f(Math.max(...b.drainMs) / 1000)} | ${b.deadlineMisses} |`;
  };
  const routerEnv = Object.entries(ROUTER_ENV).map(([k, v]) => `${k}=${v}`).join(" ");
  return [
    `${new Date().toISOString().slice(0, 10)}, \`npm run bench:router\` on ${versions()}; ${r.seconds} s in all. Load average (1, 5, 15 min) before the run ${r.loadBefore}, after ${r.loadAfter}: other work on the machine shares both cores.`,
    "",
    `Proxy under test pinned to core 0; wrk, the benchmark's own clients and the upstreams on core 1 (the last section excepted). deck's router runs with its defaults except \`${routerEnv}\` (its access log, \`DECK_ACCESS_LOG=on\` by default, is on unless a row says otherwise: it wrote ${f(r.accessLogBytes / MiB, 0)} MiB here). nginx: one worker, \`proxy_http_version 1.1\`, keep-alive upstream pool, its default access log (combined format) unless a row says otherwise. HAProxy: \`nbthread 1\`, \`http-reuse always\`, keep-alive to the upstreams, no log. Caddy: \`reverse_proxy\` with a keep-alive pool, \`GOMAXPROCS=1\`, no access log, admin endpoint and automatic HTTPS off. Every "vs nginx" is against nginx in the same run: with its access log for deck's router, without it for the rows that say "access log off".`,
    "",
    `**Request rate**: wrk, 1 thread, 50 keep-alive connections, ${SECONDS} s runs, ${ROUNDS} interleaved runs per row, each row's numbers from its best run (the most requests/s: other work on this machine only ever slows a run down). The upstream answers \`hello world\` (nginx serving from memory, so the upstream is not the bottleneck). p99.9 from wrk's histogram (its Lua \`done\` hook). Upstream connections: counted by the upstream (stub_status accepts) from 0.5 s after the start to 0.5 s before the end of each measured run (wrk stops with requests in flight, whose upstream connections a proxy has to close), requests in that window from the run's rate. RSS: VmRSS after the runs, all of a proxy's processes (nginx: master + worker; deck's router: supervisor + serving worker + standby worker).`,
    "",
    ...rateTable(r.rate),
    "",
    `**At a fixed ${r.half.rate} requests/s** (half of nginx's maximum above): wrk, 50 keep-alive connections sharing one schedule of ${r.half.rate} request slots a second (its Lua \`delay\` hook), ${SECONDS} s runs; ${ROUNDS} runs each, the one with the lowest p99 shown.`,
    "",
    ...halfRateTable(r.half),
    "",
    `**Transfers**: wrk, 4 keep-alive connections, ${TRANSFER_SECONDS} s runs, the best of ${ROUNDS}; the upstream is a Node.js server that sends 1 MiB from memory and reads each 10 MiB upload (a POST from wrk's Lua script) to the end before answering. nginx streams uploads (\`proxy_request_buffering off\`), as HAProxy and Caddy do by default. HAProxy and Caddy write no access log, nginx and deck's router their default one: one line per MiB moved makes no measurable difference.`,
    "",
    ...transferTable(r.transfers),
    "",
    `**Route table size**: deck's router with 1 route, then 1,000 (loaded with \`PUT /routes\`), requests to the 501st host; wrk as above, ${ROUNDS} alternating runs with each table, the best of each.`,
    "",
    "| routes | requests/s | vs 1 route | p99 ms | `PUT /routes` ms | RSS MiB |",
    "|---|---|---|---|---|---|",
    `| 1 | ${int(oneRps)} | 1.00× | ${f(best(r.routes.one).p99)} | — | — |`,
    `| 1,000 | ${int(manyRps)} | ${f(manyRps / oneRps)}× | ${f(best(r.routes.many).p99)} | ${f(median(r.routes.replaceAllMs), 1)} | ${f(r.routes.rssMany, 0)} |`,
    "",
    `**Route change**: ${ROUTE_CHANGES} changes alternating between two upstreams; time from issuing the change until the first request through the proxy reaches the new upstream (polled back to back over a keep-alive connection, so the time includes up to one request's round trip).`,
    "",
    "| proxy | change | median ms | p90 ms | max ms |",
    "|---|---|---|---|---|",
    changeRow("deck router", "`PUT /routes/:app` on the control socket", r.change.deck),
    changeRow("deck router", "(the PUT's own answer: saved to the routes file and live)", r.change.deckPut),
    changeRow("deck router", "(of which: saving the routes file, timed alone)", r.change.deckSave),
    changeRow("nginx", "rewrite the upstream, `nginx -s reload`", r.change.nginx),
    "",
    `**Blue-green under load**: ${STEADY_RATE} requests/s (Node.js client, keep-alive pool), every 20th request to a path the upstream answers after 2 s. Each switch starts a new upstream process, waits until it answers, switches, waits for the old upstream to drain (deck: \`GET /inflight?upstream=\` on the control socket until 0, as deck's deploy does; nginx: until the old worker processes exit), deadline 30 s, then SIGTERMs the old upstream (which exits at once).`,
    "",
    "| proxy | switches | requests | errors | slow requests | slow answered 200 | switch + drain, median s | switch + drain, max s | drain deadline missed |",
    "|---|---|---|---|---|---|---|---|---|",
    ...r.blueGreen.map(bgRow),
    "",
    `**Both cores**: every proxy given both cores, as on a 2-core server, with a fresh set of processes. The load (wrk, 2 threads) and the upstreams (nginx with 2 workers, the Node.js file server) share the same two cores, so the absolute numbers are lower than above; the ratios are what matter. No proxy writes an access log here. Request rate as above (50 connections, best of ${ROUNDS}), transfers as above (4 connections, best of ${ROUNDS}); errors are those of all the runs.`,
    "",
    ...twoCoreTable(r.twoCores),
    "",
    "**Targets** (deck's router, one core, against nginx on one core in the same run)",
    "",
    ...targetLines(r),
  ];
}

async function accessLogBytes(s: Setup): Promise<number> {
  // No access log (it is off, or nothing was logged yet): zero bytes.
  const st = await stat(join(s.deck.dataDir, "logs", "access.log")).catch(() => undefined);
  return st?.size ?? 0;
}

/** The whole benchmark; the Markdown lines of its report. */
export async function routerBench(): Promise<string[]> {
  const missing = ["nginx", "wrk", "taskset"].filter((c) => !has(c));
  if (missing.length) return [`bench:router: missing ${missing.join(", ")}; install with: apt-get install -y nginx-light wrk util-linux`];
  // This script (the route-change poller and the blue-green load) stays off the proxies' core.
  const cores = /list:\s*(\S+)/.exec(execFileSync("taskset", ["-c", "-p", String(process.pid)], { encoding: "utf8" }))?.[1] ?? "0-1023";
  execFileSync("taskset", ["-a", "-c", "-p", LOAD_CORE, String(process.pid)], { stdio: "ignore" });
  const procs = new Processes();
  const onSignal = () => void procs.stopAll().then(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let dir: string | undefined;
  try {
    const loadBefore = loadAverage();
    const s = await setUp(procs);
    dir = s.dir;
    const script = join(s.dir, "done.lua");
    await writeFile(script, wrkScript());
    const noLog = ", access log off";
    const rate = await measureRate(
      [
        { name: DIRECT, port: s.staticPort, base: NGINX },
        nginxTarget(NGINX, s.nginx.port, s.nginx),
        deckTarget(DECK, NGINX, s.deck),
        nginxTarget(NGINX_NO_LOG, s.nginx.portNoLog, s.nginx),
        deckTarget(DECK_NO_LOG, NGINX_NO_LOG, s.deckNoLog),
        ...peerTargets(s.peers, NGINX_NO_LOG, () => noLog),
      ],
      { core: LOAD_CORE, threads: 1, staticPort: s.staticPort, script, label: "request rate" },
    );
    const half = await measureHalfRate(
      s,
      [
        nginxTarget(NGINX, s.nginx.port, s.nginx),
        deckTarget(DECK, NGINX, s.deck),
        nginxTarget(NGINX_NO_LOG, s.nginx.portNoLog, s.nginx),
        deckTarget(DECK_NO_LOG, NGINX_NO_LOG, s.deckNoLog),
        ...peerTargets(s.peers, NGINX_NO_LOG, () => noLog),
      ],
      rps(byName(rate, NGINX)),
    );
    const transfers = await measureTransfers(
      [{ name: DIRECT, port: s.filesPort, base: NGINX }, nginxTarget(NGINX, s.nginx.port, s.nginx), deckTarget(DECK, NGINX, s.deck), ...peerTargets(s.peers, NGINX, () => "")],
      { dir: s.dir, core: LOAD_CORE, threads: 1, label: "transfers" },
    );
    // The variants without an access log and the other proxies have served their purpose; core 0 is
    // the main router's and nginx's alone.
    for (const child of [s.deckNoLog.child, ...s.peers.flatMap((p) => (p.running ? [p.running.child] : []))]) await procs.stop(child);
    const routes = await measureRouteCount(s, script);
    const change = await measureRouteChange(s);
    const blueGreen = [await measureBlueGreen(s, "deck"), await measureBlueGreen(s, "nginx")];
    const logBytes = await accessLogBytes(s);
    await procs.stopAll();
    const twoCores = await measureTwoCores(procs, s.dir);
    return report({ rate, half, transfers, routes, change, blueGreen, twoCores, accessLogBytes: logBytes, loadBefore, loadAfter: loadAverage(), seconds: Math.round((Date.now() - STARTED) / 1000) });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await procs.stopAll();
    if (dir) await rm(dir, { recursive: true, force: true }).catch((e: Error) => console.error(`could not remove ${dir}: ${e.message}`));
    execFileSync("taskset", ["-a", "-c", "-p", cores, String(process.pid)], { stdio: "ignore" });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const lines = await routerBench();
  process.stdout.write(`${lines.join("\n")}\n`);
  progress("done");
}
