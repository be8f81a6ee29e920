/**
 * What deck measures about each app, every DECK_METRICS_INTERVAL seconds (10 by default): from the
 * runtime, each process's CPU time and memory (its cgroup: the app's own uid makes it exact; the engine
 * for Docker) and restarts; from the router, the app's requests by status class, bytes in and out, a
 * latency histogram and the requests open to each process. One row per app (`process` '') and one per
 * process of its live release go to `metric_samples` at 10-second resolution; every minute the app's
 * last minutes are summed into 1-minute rows and every hour into hourly rows (each process's own series
 * stays at 10 seconds); the retention job keeps 10-second rows 48 hours, 1-minute rows 30 days and hourly
 * rows 13 months.
 *
 * Counters are turned into amounts per period by taking differences of successive readings; a reading
 * after the router restarted (its run id changed) counts from zero.
 *
 * Several machines may measure the same app: each deck server its own processes and router, each router
 * node (`deck server --role router`) only its traffic. Each writes its 10-second rows under its own
 * `source`; readers add a period's rows together, and rollups hold every source's sum. A rollup waits
 * until every source has written its last row of the minute (one interval and a margin) and sums the
 * minute before it again, so a row that came late is counted.
 */
import type { DatabasePool } from "slonik";
import { mergeSourceRows, sumSamples, type MetricSample, type ProcessInfo, type ProcessStats } from "../core/index.ts";
import { deleteSamplesBefore, latestSampleAt, listApps, listSamplesBetween, saveSamples, type StoredSample } from "../store/queries/index.ts";

/** The router's counters as GET /metering/counters answers them (router/metering.ts RouterCounters). */
export interface RouterCountersReading {
  instance: string;
  apps: Record<string, { byClass: number[]; bytesIn: number; bytesOut: number; buckets: number[]; count: number }>;
  inflight?: Record<string, number>;
}

export interface CollectorSources {
  /** Every process the runtime runs. */
  processes(): Promise<ProcessInfo[]>;
  stats(): Promise<ProcessStats[]>;
  /** The router's counters; rejects when the router does not answer (its part of the sample is left out). */
  routerCounters(): Promise<RouterCountersReading>;
}

export interface MetricsCollectorOptions {
  db: DatabasePool;
  sources: CollectorSources;
  /** Seconds between samples (DECK_METRICS_INTERVAL). */
  intervalSeconds: number;
  log(line: string): void;
  /** Called after each sample is saved (alerts evaluate then). */
  onSample?(at: number): void;
  /** Names this machine's rows (see the top of this file). */
  source: string;
  /** Rollups and retention: deck servers do them; a router node only samples. Default true. */
  rollups?: boolean;
}

export const RETENTION_MS: Record<number, number> = { 10: 48 * 3600_000, 60: 30 * 86_400_000, 3600: 396 * 86_400_000 };

interface ProcessReading {
  cpuSeconds: number | null;
  restarts: number;
}

const hostPort = (p: ProcessInfo) => `${p.host ?? "127.0.0.1"}:${p.port}`;

export class MetricsCollector {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private last: { at: number; processes: Map<string, ProcessReading> } | null = null;
  /** The last reading the router answered: the next one's counts are taken from it (a failed read in between loses nothing). */
  private lastRouter: RouterCountersReading | null = null;
  /** The newest sample time saved: two ticks close together never share a slot. */
  private lastAt = 0;
  private routerWarned = false;
  private trouble = "";
  private rolledMinute = 0;
  private rolledHour = 0;
  private lastRetention = 0;

  constructor(private readonly options: MetricsCollectorOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.options.intervalSeconds * 1000);
    this.timer.unref();
    void this.tick();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One sample now (and the rollups and retention that are due); one at a time. */
  tick(now = Date.now()): Promise<void> {
    if (this.running) return this.running;
    const upkeep = this.options.rollups !== false;
    this.running = this.sample(now)
      .then(() => (upkeep ? this.rollUp(now) : undefined))
      .then(() => (upkeep ? this.retain(now) : undefined))
      .then(
        () => {
          if (this.trouble) this.options.log("metrics: sampling again");
          this.trouble = "";
        },
        (e: Error) => {
          // Once per kind of trouble (a database away for a while says so once, not every 10 seconds).
          if (e.message !== this.trouble) this.options.log(`metrics: ${e.message}`);
          this.trouble = e.message;
        },
      )
      .finally(() => (this.running = null));
    return this.running;
  }

  private async sample(now: number): Promise<void> {
    const { sources, db } = this.options;
    const [processes, stats, router] = await Promise.all([
      sources.processes(),
      sources.stats(),
      sources.routerCounters().then(
        (r) => {
          this.routerWarned = false;
          return r;
        },
        (e: Error) => {
          if (!this.routerWarned) this.options.log(`metrics: the router's counters are left out until it answers (${e.message})`);
          this.routerWarned = true;
          return null;
        },
      ),
    ]);
    const previous = this.last;
    const readings = new Map<string, ProcessReading>();
    const statsById = new Map(stats.map((s) => [s.id, s]));
    for (const p of processes) readings.set(p.id, { cpuSeconds: statsById.get(p.id)?.cpuSeconds ?? null, restarts: p.restarts });
    this.last = { at: now, processes: readings };
    // The router's counts are taken from its last answered reading of the same run; after a restart of
    // the router, from zero; with no earlier reading (deck just started), this one is only the baseline.
    const routerBase = router && this.lastRouter ? (router.instance === this.lastRouter.instance ? this.lastRouter : "restarted") : null;
    if (router) this.lastRouter = router;
    // The first reading only sets the baseline of the counters.
    if (!previous) return;
    const seconds = (now - previous.at) / 1000;
    if (seconds <= 0) return;
    const step = this.options.intervalSeconds * 1000;
    let at = now - (now % step);
    if (at <= this.lastAt) at = this.lastAt + step;
    this.lastAt = at;

    const apps = await listApps(db, "all");
    const samples: StoredSample[] = [];

    for (const app of apps) {
      const mine = processes.filter((p) => p.app === app.name);
      const live = mine.filter((p) => p.generation === app.liveDeploymentId);
      const processSamples: MetricSample[] = [];
      for (const p of mine) {
        const now1 = readings.get(p.id)!;
        const before = previous.processes.get(p.id);
        const st = statsById.get(p.id);
        const cpu = now1.cpuSeconds !== null && before?.cpuSeconds != null ? Math.max(0, now1.cpuSeconds - before.cpuSeconds) : null;
        const restarts = before ? Math.max(0, now1.restarts - before.restarts) : 0;
        processSamples.push({
          ...empty(at, seconds, p.generation === app.liveDeploymentId ? `${p.type}.${p.index}` : `${p.type}.${p.index}@${p.generation}`),
          release: p.release, cpuSeconds: cpu, rssBytes: st?.rssBytes ?? null, memoryLimitBytes: st?.memoryLimitBytes ?? null, restarts,
          connections: p.port && router?.inflight ? router.inflight[hostPort(p)] ?? 0 : null,
        });
      }
      // The app as a whole: its processes together (memory: the total), and the router's counts.
      const whole = sumSamples(processSamples, at, "");
      whole.seconds = seconds;
      whole.release = live[0]?.release ?? null;
      // Memory against the limit: the live release's processes (during a deploy the old ones drain beside them).
      const liveIds = new Set(live.map((p) => p.id));
      const liveRss = live.map((p) => statsById.get(p.id)?.rssBytes ?? null).filter((v): v is number => v !== null);
      whole.rssBytes = liveRss.length ? liveRss.reduce((a, n) => a + n, 0) : processSamples.some((s) => s.rssBytes !== null) && liveIds.size === 0 ? processSamples.reduce((a, s) => a + (s.rssBytes ?? 0), 0) : null;
      whole.memoryLimitBytes = live.length && live.every((p) => statsById.get(p.id)?.memoryLimitBytes != null)
        ? live.reduce((a, p) => a + statsById.get(p.id)!.memoryLimitBytes!, 0) : null;
      whole.connections = processSamples.some((s) => s.connections !== null) ? processSamples.reduce((a, s) => a + (s.connections ?? 0), 0) : null;
      const counts = routerBase ? router?.apps[app.name] : undefined;
      if (counts) {
        const base = routerBase === "restarted" ? undefined : routerBase?.apps[app.name];
        const d = (now2: number, before?: number) => Math.max(0, now2 - (before ?? 0));
        whole.status2xx = d(counts.byClass[1] ?? 0, base?.byClass[1]);
        whole.status3xx = d(counts.byClass[2] ?? 0, base?.byClass[2]);
        whole.status4xx = d(counts.byClass[3] ?? 0, base?.byClass[3]);
        whole.status5xx = d(counts.byClass[4] ?? 0, base?.byClass[4]);
        whole.requests = counts.byClass.reduce((a, n, i) => a + d(n, base?.byClass[i]), 0);
        whole.bytesIn = d(counts.bytesIn, base?.bytesIn);
        whole.bytesOut = d(counts.bytesOut, base?.bytesOut);
        const latency = counts.buckets.map((n, i) => d(n, base?.buckets[i]));
        whole.latency = latency.some((n) => n > 0) ? latency : null;
      }
      // An app with nothing running and no traffic has nothing to say.
      if (mine.length === 0 && whole.requests === 0 && whole.bytesOut === 0) continue;
      const source = this.options.source;
      samples.push({ ...whole, appId: app.id, resolution: 10, source });
      for (const s of processSamples) if (!s.process.includes("@")) samples.push({ ...s, appId: app.id, resolution: 10, source });
    }
    await saveSamples(db, samples);
    this.options.onSample?.(at);
  }

  /** Sums finished minutes into 1-minute rows and finished hours into hourly rows (idempotent). */
  private async rollUp(now: number): Promise<void> {
    // Every source's last row of a minute is in once an interval (and a margin) has passed.
    const settled = now - this.options.intervalSeconds * 1000 - 5_000;
    const minute = settled - (settled % 60_000);
    if (minute > this.rolledMinute) {
      // The minutes since the last rollup of this run, the one before it again (a late row), after a restart
      // from the last stored one; at most a day.
      const from = this.rolledMinute ? this.rolledMinute - 60_000 : Math.max(((await latestSampleAt(this.options.db, 60)) ?? minute - 60_000), minute - 86_400_000);
      await this.sumInto(10, 60, from, minute);
      this.rolledMinute = minute;
    }
    const hour = minute - (minute % 3_600_000);
    if (hour > this.rolledHour) {
      const from = this.rolledHour || Math.max(((await latestSampleAt(this.options.db, 3600)) ?? hour - 3_600_000), hour - 30 * 86_400_000);
      await this.sumInto(60, 3600, from, hour);
      this.rolledHour = hour;
    }
  }

  private async sumInto(fromResolution: number, toResolution: number, fromMs: number, toMs: number): Promise<void> {
    if (toMs <= fromMs) return;
    // Rollups are of the app as a whole: each process's own series is kept at 10 seconds, 48 hours.
    // Each period's rows from several sources become one first, then the periods are summed.
    const rows = mergeSourceRows((await listSamplesBetween(this.options.db, fromResolution, fromMs, toMs)).filter((r) => r.process === ""), (r) => String(r.appId));
    const groups = new Map<string, StoredSample[]>();
    const step = toResolution * 1000;
    for (const r of rows) {
      const start = r.at - (r.at % step);
      const key = `${r.appId}\u0000${start}`;
      const g = groups.get(key);
      if (g) g.push(r);
      else groups.set(key, [r]);
    }
    const out: StoredSample[] = [];
    for (const g of groups.values()) {
      const first = g[0]!;
      out.push({ ...sumSamples(g, first.at - (first.at % step), ""), appId: first.appId, resolution: toResolution, source: "" });
    }
    await saveSamples(this.options.db, out);
  }

  /** Drops what is past its resolution's retention, at most once every 10 minutes. */
  private async retain(now: number): Promise<void> {
    if (now - this.lastRetention < 600_000) return;
    this.lastRetention = now;
    for (const [resolution, keep] of Object.entries(RETENTION_MS)) await deleteSamplesBefore(this.options.db, Number(resolution), now - keep);
  }
}

function empty(at: number, seconds: number, process: string): MetricSample {
  return {
    at, seconds, process, release: null, cpuSeconds: null, rssBytes: null, memoryLimitBytes: null, restarts: 0, connections: null,
    requests: 0, status2xx: 0, status3xx: 0, status4xx: 0, status5xx: 0, bytesIn: 0, bytesOut: 0, latency: null,
  };
}
