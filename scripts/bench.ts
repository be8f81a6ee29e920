/**
 * `npm run bench`: one run on this machine, every number next to its baseline from the same run.
 *
 * 1. Router: requests/s and p99 for the same upstream reached directly, through nginx (keep-alive
 *    upstream, proxy_http_version 1.1) and through deck's router, each proxy pinned to one core
 *    (taskset), load from wrk on the other core with the upstream.
 * 2. Push to live: time from `git push` to the new version answering through the router, for a small
 *    Node.js app with a lockfile and one dependency, cold (empty cache) and warm, against the same
 *    steps done by hand (checkout, npm ci from a warm cache, start, wait until it answers).
 *
 * Needs nginx and wrk (Debian: apt-get install -y nginx-light wrk) for part 1; without them part 1
 * reports what is missing and part 2 still runs.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";

import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { saveRoutesFile } from "../router/index.ts";
import { runBuild } from "../builder/index.ts";
import { commitFiles, Deck, freePort, makeRepo } from "../test/helpers/deck.ts";
import { GO_APP, PYTHON_APP, RUST_APP } from "../test/helpers/sample-apps.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DURATION = process.env.BENCH_SECONDS ?? "10";
const children: ChildProcess[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function has(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
}

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const c = spawn(cmd, args, { env, stdio: ["ignore", "ignore", "inherit"] });
  children.push(c);
  return c;
}

async function waitFor(port: number, host = "127.0.0.1", path = "/"): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path, headers: { host }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing answered on port ${port} (${host})`);
}

interface WrkResult { rps: number; p50: number; p99: number }

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === "us" ? 0.001 : m[2] === "s" ? 1000 : 1);
}

function wrk(port: number, host: string, cpu: string): WrkResult {
  const out = execFileSync("taskset", ["-c", cpu, "wrk", "-t1", "-c50", `-d${DURATION}s`, "--latency", "-H", `Host: ${host}`, `http://127.0.0.1:${port}/`], { encoding: "utf8" });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? "");
  const p99 = toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? "");
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out);
  if (errors) throw new Error(`wrk against port ${port} reported ${errors[0]}: the numbers would not be comparable`);
  return { rps, p50, p99 };
}

/** p99 at a fixed request rate (hey: 50 workers, each rate-limited), so queueing at saturation does not dominate. */
function heyAtRate(port: number, host: string, rps: number, cpu: string): { p50: number; p99: number; rps: number } {
  const workers = 50;
  const out = execFileSync("taskset", ["-c", cpu, "hey", "-z", `${DURATION}s`, "-c", String(workers), "-q", String(Math.max(1, Math.round(rps / workers))), "-host", host, `http://127.0.0.1:${port}/`], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const pct = (p: string) => Number(new RegExp(`${p}% in ([\\d.]+) secs`).exec(out)?.[1]) * 1000;
  const bad = /\[(?!200\])\d+\]\s+\d+ responses/.exec(out) || /Error distribution/.exec(out);
  if (bad) throw new Error(`hey against port ${port} saw errors: ${out.slice(out.indexOf("Status code"))}`);
  return { p50: pct("50"), p99: pct("99"), rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]) };
}

async function routerBench(): Promise<string[]> {
  const missing = ["nginx", "wrk", "hey", "taskset"].filter((c) => !has(c));
  if (missing.length) return [`router: skipped, missing ${missing.join(", ")} (apt-get install -y nginx-light wrk hey)`];
  const dir = await mkdtemp(join(tmpdir(), "deck-bench-"));
  const upstreamPort = await freePort();
  // The upstream: a static responder on core 1 (shared with wrk); proxies get core 0 to themselves.
  start("taskset", ["-c", "1", process.execPath, "-e", `require("http").createServer((q, s) => { s.writeHead(200, {"content-type": "text/plain", "content-length": "12"}); s.end("hello world\\n"); }).listen(${upstreamPort}, "127.0.0.1")`]);
  await waitFor(upstreamPort);

  const nginxPort = await freePort();
  const conf = join(dir, "nginx.conf");
  await mkdir(join(dir, "nginx"), { recursive: true });
  await writeFile(conf, `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx/body; proxy_temp_path ${dir}/nginx/proxy;
  fastcgi_temp_path ${dir}/nginx/fcgi; uwsgi_temp_path ${dir}/nginx/uwsgi; scgi_temp_path ${dir}/nginx/scgi;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 128; }
  server {
    listen 127.0.0.1:${nginxPort};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`);
  start("taskset", ["-c", "0", "nginx", "-c", conf, "-e", join(dir, "nginx-error.log")]);
  await waitFor(nginxPort, "app.localhost");

  const routerPort = await freePort();
  const dataDir = join(dir, "deck");
  await mkdir(join(dataDir, "run"), { recursive: true });
  await saveRoutesFile(join(dataDir, "run", "routes.json"), [{ app: "app", hosts: ["app.localhost"], upstreams: [`127.0.0.1:${upstreamPort}`] }]);
  start("taskset", ["-c", "0", process.execPath, "--import", "tsx", join(ROOT, "router", "main.ts")], { ...process.env, DECK_DATA_DIR: dataDir, DECK_HTTP_PORT: String(routerPort), DECK_HOST: "127.0.0.1", DECK_CONFIG: "" });
  await waitFor(routerPort, "app.localhost");

  // Warm-up, then one measured run each.
  for (const p of [upstreamPort, nginxPort, routerPort]) execFileSync("taskset", ["-c", "1", "wrk", "-t1", "-c50", "-d2s", "-H", "Host: app.localhost", `http://127.0.0.1:${p}/`], { stdio: "ignore" });
  const direct = wrk(upstreamPort, "app.localhost", "1");
  const nginx = wrk(nginxPort, "app.localhost", "1");
  const deck = wrk(routerPort, "app.localhost", "1");
  const half = Math.round(nginx.rps / 2);
  const nginxHalf = heyAtRate(nginxPort, "app.localhost", half, "1");
  const deckHalf = heyAtRate(routerPort, "app.localhost", half, "1");
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  const row = (name: string, r: WrkResult) => `| ${name} | ${Math.round(r.rps)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${(r.rps / nginx.rps).toFixed(2)}× | ${(r.p99 / nginx.p99).toFixed(2)}× |`;
  return [
    `Router: wrk -t1 -c50 -d${DURATION}s, proxy pinned to core 0, upstream and wrk on core 1`,
    "",
    "| path | requests/s | p50 ms | p99 ms | throughput vs nginx | p99 vs nginx |",
    "|---|---|---|---|---|---|",
    row("direct to upstream", direct),
    row("nginx (keep-alive upstream)", nginx),
    row("deck router", deck),
    "",
    `At a fixed ${half} requests/s (half of nginx's maximum; hey, 50 keep-alive workers):`,
    "",
    "| path | achieved requests/s | p50 ms | p99 ms | p99 vs nginx |",
    "|---|---|---|---|---|",
    `| nginx | ${Math.round(nginxHalf.rps)} | ${nginxHalf.p50.toFixed(2)} | ${nginxHalf.p99.toFixed(2)} | 1.00× |`,
    `| deck router | ${Math.round(deckHalf.rps)} | ${deckHalf.p50.toFixed(2)} | ${deckHalf.p99.toFixed(2)} | ${(deckHalf.p99 / nginxHalf.p99).toFixed(2)}× |`,
  ];
}

const APP_FILES = (version: string): Record<string, string> => ({
  "package.json": JSON.stringify({ name: "bench-app", version: "1.0.0", private: true, dependencies: { ms: "2.1.3" }, scripts: { start: "node server.js" } }, null, 2),
  "server.js": `const ms = require("ms"); require("http").createServer((q, s) => s.end("${version} " + ms(60000) + "\\n")).listen(process.env.PORT);\n`,
  Procfile: "web: node server.js\n",
});

async function answers(port: number, host: string, expect: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/", headers: { host }, agent: false }, (res) => {
      let b = "";
      res.on("data", (c) => (b += c));
      res.on("end", () => resolve(b.startsWith(expect)));
    });
    req.on("error", () => resolve(false));
  });
}

/** Seconds from the start of `git push` until the router serves the new version (polled meanwhile). */
async function pushToLive(deck: Deck, repo: string, version: string): Promise<number> {
  const t0 = performance.now();
  let live = 0;
  const poll = (async () => {
    while (!(await answers(deck.ports.http, "bench.localhost", version))) await sleep(5);
    live = performance.now();
  })();
  const push = await deck.push(repo, "bench");
  if (push.code !== 0) throw new Error(`push failed: ${push.stderr}`);
  await poll;
  if (process.env.BENCH_VERBOSE) for (const l of push.lines) process.stdout.write(`${Math.round(l.at - (Date.now() - (performance.now() - t0)))} ${l.text}\n`);
  return (live - t0) / 1000;
}

/** The same steps by hand: push to a bare repository, check out, install from a warm cache, start, first answer. */
async function byHand(repo: string, bare: string, cache: string, version: string): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), "deck-byhand-"));
  const port = await freePort();
  const t0 = performance.now();
  execFileSync("git", ["-C", repo, "push", "-q", "--force", bare, "HEAD:refs/heads/main"]);
  execFileSync("sh", ["-c", `git --git-dir="${bare}" archive main | tar -x -C "${dir}"`]);
  execFileSync("npm", ["ci", "--cache", cache, "--prefer-offline", "--no-audit", "--no-fund"], { cwd: dir, stdio: "ignore" });
  const app = spawn(process.execPath, ["server.js"], { cwd: dir, env: { ...process.env, PORT: String(port) }, stdio: "ignore" });
  while (!(await answers(port, "localhost", version))) await sleep(10);
  const s = (performance.now() - t0) / 1000;
  app.kill("SIGKILL");
  await rm(dir, { recursive: true, force: true });
  return s;
}

async function pushBench(): Promise<string[]> {
  const work = await mkdtemp(join(tmpdir(), "deck-bench-push-"));
  const deck = await Deck.start({ backend: { name: "embedded" } });
  try {
    const repo = await makeRepo(join(work, "app"), APP_FILES("b1"));
    execFileSync("npm", ["install", "--package-lock-only", "--no-audit", "--no-fund"], { cwd: repo, stdio: "ignore" });
    await commitFiles(repo, {}, "lockfile");
    const cold = await pushToLive(deck, repo, "b1");
    const warm: number[] = [];
    for (let i = 2; i <= 4; i++) {
      await commitFiles(repo, APP_FILES(`b${i}`), `v${i}`);
      warm.push(await pushToLive(deck, repo, `b${i}`));
    }
    const cache = join(work, "npm-cache");
    const bare = join(work, "by-hand.git");
    execFileSync("git", ["init", "-q", "--bare", bare]);
    await byHand(repo, bare, cache, "b4"); // fills the by-hand cache
    const hand: number[] = [];
    for (let i = 5; i <= 7; i++) {
      await commitFiles(repo, APP_FILES("b4"), `by hand ${i}`);
      hand.push(await byHand(repo, bare, cache, "b4"));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const w = median(warm);
    const h = median(hand);
    return [
      "Push to live (small Node.js app, lockfile, one dependency): from `git push` to the new version answering through the router",
      "",
      "| case | seconds | vs by-hand floor |",
      "|---|---|---|",
      `| by hand: git push to a local bare repo + checkout + npm ci (warm cache) + start + first answer (median of 3) | ${h.toFixed(2)} | 1.00× |`,
      `| deck, cold (first push, empty cache) | ${cold.toFixed(2)} | ${(cold / h).toFixed(2)}× |`,
      `| deck, warm (median of 3 pushes) | ${w.toFixed(2)} | ${(w / h).toFixed(2)}× |`,
    ];
  } finally {
    await deck.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/** Cold (empty cache) and warm (cache kept, app code changed) build times per language, with runBuild. */
async function buildBench(): Promise<string[]> {
  const work = await mkdtemp(join(tmpdir(), "deck-bench-builds-"));
  const nodeFiles = APP_FILES("n1");
  const apps: [string, Record<string, string>, string][] = [
    ["Node.js (npm ci, 1 dependency)", nodeFiles, "server.js"],
    ["Python (venv + pip)", PYTHON_APP, "app.py"],
    ["Go (go build)", GO_APP, "main.go"],
    ["Rust (cargo build --release)", RUST_APP, "src/main.rs"],
  ];
  const rows: string[] = [];
  try {
    for (const [label, files, changed] of apps) {
      const src = await makeRepo(join(work, `src-${rows.length}`), files);
      if (files === nodeFiles) {
        execFileSync("npm", ["install", "--package-lock-only", "--no-audit", "--no-fund"], { cwd: src, stdio: "ignore" });
        await commitFiles(src, {}, "lockfile");
      }
      const bare = join(work, `repo-${rows.length}.git`);
      execFileSync("git", ["clone", "-q", "--bare", src, bare]);
      const cache = join(work, `cache-${rows.length}`);
      const once = async (n: number): Promise<number> => {
        const sha = execFileSync("git", ["--git-dir", bare, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
        const r = await runBuild({ app: "bench", commitSha: sha, repoDir: bare, gitEnv: {}, slugDir: join(work, `slug-${rows.length}-${n}`), cacheDir: cache, env: {}, timeoutMs: 600_000, onLine: () => {} });
        if (!r.ok) throw new Error(`${label} build failed: ${r.message}`);
        return r.durationMs / 1000;
      };
      const cold = await once(1);
      // A code change, as on a typical push: dependencies and compiler caches are warm.
      await commitFiles(src, { [changed]: `${files[changed]}\n${changed.endsWith(".py") ? "#" : "//"} change\n` }, "change");
      execFileSync("git", ["-C", src, "push", "-q", bare, "HEAD:refs/heads/main"]);
      const warm = await once(2);
      rows.push(`| ${label} | ${cold.toFixed(2)} | ${warm.toFixed(2)} | ${(warm / cold).toFixed(2)}× |`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return ["Builds (runBuild, process runtime): cold = empty cache, warm = cache kept and the app's code changed", "", "| language | cold s | warm s | warm/cold |", "|---|---|---|---|", ...rows];
}

try {
  const which = process.argv[2];
  const lines: string[] = [];
  if (!which || which === "router") lines.push(...(await routerBench()), "");
  if (!which || which === "push") lines.push(...(await pushBench()), "");
  if (!which || which === "builds") lines.push(...(await buildBench()));
  process.stdout.write(`${lines.join("\n")}\n`);
} finally {
  for (const c of children) c.kill("SIGTERM");
}
