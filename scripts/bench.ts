/**
 * `npm run bench`: one run on this machine, every number next to its baseline from the same run.
 *
 * 1. Router: `npm run bench:router` (scripts/bench-router.ts), deck's router against nginx and
 *    against the upstream reached directly. Needs nginx and wrk (Debian: apt-get install -y
 *    nginx-light wrk); without them it reports what is missing and the other parts still run.
 * 2. Push to live: time from `git push` to the new version answering through the router, for a small
 *    Node.js app with a lockfile and one dependency, cold (empty cache), warm, and warm when a builder
 *    node builds it, against the same steps done by hand (checkout, npm ci from a warm cache, start,
 *    wait until it answers).
 * 3. Builds: cold and warm build times per language.
 *
 * 4. Monitoring (scripts/bench-monitoring.ts): the sample store at 1,000 apps, and the router's
 *    requests/s with sampling on vs off.
 * 5. Billing (scripts/bench-billing.ts): rating one month for 10,000 apps (time and memory) against
 *    merely summing the same ledger entries.
 *
 * `npm run bench -- router|push|builds|monitoring|billing` runs one part.
 */
import { execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runBuild } from "../builder/index.ts";
import { embeddedDatabaseUrl } from "../store/index.ts";
import { BuilderNodeProcess } from "../test/helpers/builder-node.ts";
import { commitFiles, Deck, freePort, makeRepo } from "../test/helpers/deck.ts";
import { GO_APP, PYTHON_APP, RUST_APP } from "../test/helpers/sample-apps.ts";
import { billingBench } from "./bench-billing.ts";
import { monitoringBench } from "./bench-monitoring.ts";
import { routerBench } from "./bench-router.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
    const viaBuilder = await builderNodePushes(work);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const w = median(warm);
    const h = median(hand);
    const b = median(viaBuilder);
    return [
      "Push to live (small Node.js app, lockfile, one dependency): from `git push` to the new version answering through the router",
      "",
      "| case | seconds | vs by-hand floor |",
      "|---|---|---|",
      `| by hand: git push to a local bare repo + checkout + npm ci (warm cache) + start + first answer (median of 3) | ${h.toFixed(2)} | 1.00× |`,
      `| deck, cold (first push, empty cache) | ${cold.toFixed(2)} | ${(cold / h).toFixed(2)}× |`,
      `| deck, warm (median of 3 pushes) | ${w.toFixed(2)} | ${(w / h).toFixed(2)}× |`,
      `| deck, warm, built on a builder node (\`--role builder\`, same machine; median of 3 after a cold one) | ${b.toFixed(2)} | ${(b / h).toFixed(2)}× |`,
    ];
  } finally {
    await deck.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Warm pushes to a deck server that builds nothing itself (DECK_BUILD_CONCURRENCY=0), each built by a
 * builder node process on the same database: the cost of the exchange (source, output, artifact).
 */
async function builderNodePushes(work: string): Promise<number[]> {
  const deck = await Deck.start({ backend: { name: "embedded" }, env: { DECK_BUILD_CONCURRENCY: "0" } });
  let node: BuilderNodeProcess | undefined;
  try {
    const url = await embeddedDatabaseUrl(deck.dataDir);
    if (!url) throw new Error("the embedded database has no URL");
    node = await BuilderNodeProcess.start({ DATABASE_URL: url, DECK_MASTER_KEY: readFileSync(join(deck.dataDir, "keys", "master.key"), "utf8").trim(), DECK_BUILD_CONCURRENCY: "1" });
    const repo = await makeRepo(join(work, "via-builder"), APP_FILES("n1"));
    execFileSync("npm", ["install", "--package-lock-only", "--no-audit", "--no-fund"], { cwd: repo, stdio: "ignore" });
    await commitFiles(repo, {}, "lockfile");
    await pushToLive(deck, repo, "n1");
    const times: number[] = [];
    for (let i = 2; i <= 4; i++) {
      await commitFiles(repo, APP_FILES(`n${i}`), `v${i}`);
      times.push(await pushToLive(deck, repo, `n${i}`));
    }
    return times;
  } finally {
    await node?.remove();
    await deck.stop();
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

const which = process.argv[2];
const lines: string[] = [];
if (!which || which === "router") lines.push(...(await routerBench()), "");
if (!which || which === "push") lines.push(...(await pushBench()), "");
if (!which || which === "builds") lines.push(...(await buildBench()), "");
if (!which || which === "monitoring") lines.push(...(await monitoringBench()), "");
if (!which || which === "billing") lines.push(...(await billingBench()));
process.stdout.write(`${lines.join("\n")}\n`);
