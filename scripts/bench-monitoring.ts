/**
 * `npm run bench -- monitoring`: what monitoring costs, measured in one run.
 *
 * 1. The sample store at 1,000 apps (each with 2 processes): time to write one round of samples
 *    (3,000 rows) against the 10-second interval it has, the minute rollup, and the table's size per
 *    row extrapolated to 48 hours of 10-second rows plus 30 days of minutes and 13 months of hours.
 * 2. The router's requests/s through a real deck server with its collector reading the router's
 *    counters every second (10 times more often than the default) against the same server with
 *    sampling every 86,400 seconds (effectively off), same app, same client, same run.
 */
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ProcessInfo, ProcessStats } from "../core/index.ts";
import { MetricsCollector, type RouterCountersReading } from "../monitor/collector.ts";
import { insertApp, insertOrganization, insertUser, q } from "../store/queries/index.ts";
import { openTestDatabase } from "../test/helpers/database.ts";
import { Deck, makeRepo, nodeApp } from "../test/helpers/deck.ts";

const APPS = 1000;

async function sampleStore(): Promise<string[]> {
  const t = await openTestDatabase({ name: "embedded" });
  try {
    const db = t.db.pool;
    const user = await insertUser(db, { email: "bench@example.com", isAdmin: true });
    const org = await insertOrganization(db, { name: "Bench", slug: "bench" });
    for (let i = 1; i <= APPS; i++) await insertApp(db, { name: `app-${i}`, orgId: org.id, createdBy: user.id });
    const apps = await db.any(q`SELECT id, name FROM apps ORDER BY id`);
    // Each app's live generation: a deployment row it points at.
    for (const a of apps) {
      const dep = await db.oneFirst(q`INSERT INTO deployments (app_id, kind, status) VALUES (${a.id}, 'push', 'succeeded') RETURNING id`);
      await db.query(q`UPDATE apps SET live_deployment_id = ${dep} WHERE id = ${a.id}`);
    }
    const live = await db.any(q`SELECT name, live_deployment_id FROM apps`);
    let tick = 0;
    const processes = (): ProcessInfo[] => live.flatMap((a) => [1, 2].map((i) => ({
      id: `${a.name}.g${a.live_deployment_id}.web.${i}`, app: String(a.name), release: 1, generation: Number(a.live_deployment_id), type: "web", index: i,
      port: 10_000 + i, state: "running" as const, restarts: 0, startedAt: new Date(0).toISOString(),
    })));
    const procs = processes();
    const collector = new MetricsCollector({
      db, intervalSeconds: 10, log: () => {}, source: "bench",
      sources: {
        processes: async () => procs,
        stats: async (): Promise<ProcessStats[]> => procs.map((p) => ({ id: p.id, cpuSeconds: tick * 0.1, rssBytes: 60e6, memoryLimitBytes: 512 * 1024 * 1024 })),
        routerCounters: async (): Promise<RouterCountersReading> => ({
          instance: "bench",
          apps: Object.fromEntries(live.map((a) => [String(a.name), { byClass: [0, tick * 100, 0, tick * 3, tick], bytesIn: tick * 5e4, bytesOut: tick * 1e6, buckets: [tick * 10, tick * 40, tick * 30, tick * 10, tick * 5, tick * 4, tick, 0, 0, 0, 0, 0, 0], count: tick * 104 }])),
          inflight: {},
        }),
      },
    });
    const t0 = Date.UTC(2026, 0, 1, 0, 0, 1);
    const times: number[] = [];
    // 5 rounds in one minute, then the round that also sums that minute.
    for (tick = 0; tick < 6; tick++) {
      const start = performance.now();
      await collector.tick(t0 + tick * 10_000);
      times.push(performance.now() - start);
    }
    tick = 6;
    const rollStart = performance.now();
    await collector.tick(t0 + 60_000);
    const withRollup = performance.now() - rollStart;
    const rows = Number(await db.oneFirst(q`SELECT count(*) FROM metric_samples WHERE resolution = 10`));
    const bytes = Number(await db.oneFirst(q`SELECT pg_total_relation_size('metric_samples')`));
    const perRow = bytes / Number(await db.oneFirst(q`SELECT count(*) FROM metric_samples`));
    const steady = times.slice(2);
    const round = steady.reduce((a, b) => a + b, 0) / steady.length;
    const rowsPerRound = rows / 6;
    const tenSecondRows = rowsPerRound * 48 * 360;
    // Rollups keep the app as a whole only (one row per app).
    const minuteRows = APPS * 30 * 1440;
    const hourRows = APPS * 396 * 24;
    const gb = (n: number) => `${((n * perRow) / 1024 ** 3).toFixed(1)} GB`;
    await collector.stop();
    return [
      `Sample store at ${APPS.toLocaleString("en-US")} apps with 2 processes each (${rowsPerRound.toLocaleString("en-US")} rows per round), embedded PostgreSQL on this machine`,
      "",
      "| measure | value | vs its budget |",
      "|---|---|---|",
      `| one round of samples (read, compute, write ${rowsPerRound.toLocaleString("en-US")} rows; mean of 4) | ${round.toFixed(0)} ms | ${((round / 10_000) * 100).toFixed(1)}% of the 10 s interval |`,
      `| the round that also sums the last minute | ${withRollup.toFixed(0)} ms | ${((withRollup / 10_000) * 100).toFixed(1)}% of the 10 s interval |`,
      `| write rate | ${((rowsPerRound / round) * 1000).toFixed(0)} rows/s while writing; ${(rowsPerRound / 10).toFixed(0)} rows/s sustained | |`,
      `| size per row (table and indexes) | ${perRow.toFixed(0)} bytes | |`,
      `| kept at steady state: 48 h of 10 s rows / 30 days of minutes / 13 months of hours | ${gb(tenSecondRows)} / ${gb(minuteRows)} / ${gb(hourRows)} | |`,
    ];
  } finally {
    await t.cleanup();
  }
}

/** Requests/s of keep-alive GETs through deck's router for `ms`, `concurrency` at once. */
async function load(port: number, host: string, ms: number, concurrency = 32): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let done = 0;
  const end = Date.now() + ms;
  const worker = async () => {
    while (Date.now() < end) {
      await new Promise<void>((resolve, reject) => {
        http.get({ host: "127.0.0.1", port, path: "/", headers: { host }, agent }, (res) => {
          res.resume();
          res.on("end", () => {
            done += 1;
            resolve();
          });
        }).on("error", reject);
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return done / (ms / 1000);
}

async function routerWithSampling(): Promise<string[]> {
  const work = await mkdtemp(join(tmpdir(), "deck-bench-mon-"));
  const measure = async (interval: string) => {
    const deck = await Deck.start({ backend: { name: "embedded" }, env: { DECK_METRICS_INTERVAL: interval, DECK_UPTIME_INTERVAL: "86400" } });
    try {
      const push = await deck.push(await makeRepo(join(work, `app-${interval}`), nodeApp("b1")), "bench");
      if (push.code !== 0) throw new Error(`push failed: ${push.stderr}`);
      await load(deck.ports.http, "bench.localhost", 2_000);
      const runs = [];
      for (let i = 0; i < 3; i++) runs.push(await load(deck.ports.http, "bench.localhost", 4_000));
      return runs.sort((a, b) => a - b)[1]!;
    } finally {
      await deck.stop();
    }
  };
  try {
    const off = await measure("86400");
    const on = await measure("1");
    return [
      "Router requests/s with the metrics collector reading its counters every second vs effectively off (same machine, same run; keep-alive GETs, 32 at once, median of 3 × 4 s)",
      "",
      "| case | requests/s | vs off |",
      "|---|---|---|",
      `| sampling off (DECK_METRICS_INTERVAL=86400) | ${off.toFixed(0)} | 1.00× |`,
      `| sampling every second (10× the default rate) | ${on.toFixed(0)} | ${(on / off).toFixed(3)}× |`,
    ];
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export async function monitoringBench(): Promise<string[]> {
  return [...(await sampleStore()), "", ...(await routerWithSampling())];
}
