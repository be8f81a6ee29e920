/**
 * Monitoring arithmetic, no I/O: samples of an app summed into periods, percentiles from latency
 * histograms, and sparklines.
 */

/** Upper bounds (seconds) of the router's latency buckets; a histogram has one more slot, +Inf. */
export const LATENCY_BOUNDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One stored row of measurements (store's metric_samples), for an app or one of its processes. */
export interface MetricSample {
  /** Start of the period, ms since the epoch. */
  at: number;
  seconds: number;
  process: string;
  release: number | null;
  cpuSeconds: number | null;
  rssBytes: number | null;
  memoryLimitBytes: number | null;
  restarts: number;
  connections: number | null;
  requests: number;
  status2xx: number;
  status3xx: number;
  status4xx: number;
  status5xx: number;
  bytesIn: number;
  bytesOut: number;
  /** Requests per latency bucket (LATENCY_BOUNDS, then +Inf); null when nothing was counted. */
  latency: number[] | null;
}

/** Adds the counts of `s` (restarts, requests, status classes, bytes, the latency histogram) to `out`. */
function addCounts(out: MetricSample, s: MetricSample): void {
    out.restarts += s.restarts;
    out.requests += s.requests;
    out.status2xx += s.status2xx;
    out.status3xx += s.status3xx;
    out.status4xx += s.status4xx;
    out.status5xx += s.status5xx;
    out.bytesIn += s.bytesIn;
    out.bytesOut += s.bytesOut;
    if (s.latency) out.latency = out.latency ? out.latency.map((n, i) => n + (s.latency![i] ?? 0)) : [...s.latency];
}

/** `samples` of one series (one process, or the app) summed into one row covering them all. */
export function sumSamples(samples: readonly MetricSample[], at: number, process: string): MetricSample {
  const out: MetricSample = {
    at, seconds: 0, process, release: null, cpuSeconds: null, rssBytes: null, memoryLimitBytes: null, restarts: 0, connections: null,
    requests: 0, status2xx: 0, status3xx: 0, status4xx: 0, status5xx: 0, bytesIn: 0, bytesOut: 0, latency: null,
  };
  let latest = -Infinity;
  for (const s of samples) {
    out.seconds += s.seconds;
    if (s.cpuSeconds !== null) out.cpuSeconds = (out.cpuSeconds ?? 0) + s.cpuSeconds;
    if (s.rssBytes !== null) out.rssBytes = Math.max(out.rssBytes ?? 0, s.rssBytes);
    if (s.connections !== null) out.connections = Math.max(out.connections ?? 0, s.connections);
    if (s.at >= latest) {
      latest = s.at;
      if (s.release !== null) out.release = s.release;
      if (s.memoryLimitBytes !== null) out.memoryLimitBytes = s.memoryLimitBytes;
    }
    addCounts(out, s);
  }
  return out;
}

/**
 * Rows of the same series and period written by different machines (a deck server's processes and
 * router, each router node's traffic) as one: counts, memory, CPU and connections add up, since each
 * machine measured different processes and requests.
 */
export function mergeSources(rows: readonly MetricSample[]): MetricSample {
  const first = rows[0]!;
  const out: MetricSample = { ...first, latency: first.latency ? [...first.latency] : null };
  const add = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : a + b);
  for (const s of rows.slice(1)) {
    out.seconds = Math.max(out.seconds, s.seconds);
    out.release ??= s.release;
    out.cpuSeconds = add(out.cpuSeconds, s.cpuSeconds);
    out.rssBytes = add(out.rssBytes, s.rssBytes);
    out.memoryLimitBytes = add(out.memoryLimitBytes, s.memoryLimitBytes);
    out.connections = add(out.connections, s.connections);
    addCounts(out, s);
  }
  return out;
}

/** Rows ordered by period: each period's rows of one series (several sources) merged into one, in order. */
export function mergeSourceRows<T extends MetricSample>(rows: readonly T[], keyOf: (row: T) => string = (r) => r.process): T[] {
  const groups = new Map<string, T[]>();
  for (const r of rows) {
    const key = `${r.at}\u0000${keyOf(r)}`;
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  return [...groups.values()].map((g) => (g.length === 1 ? g[0]! : ({ ...g[0]!, ...mergeSources(g) } as T)));
}

/**
 * The `q` quantile (0.95) of a latency histogram, in milliseconds, interpolated inside its bucket;
 * null without requests. Past the last bound it answers the last bound (the histogram knows no more).
 */
export function quantileMs(histogram: readonly number[] | null, q: number): number | null {
  if (!histogram) return null;
  const total = histogram.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    const n = histogram[i]!;
    if (n > 0 && seen + n >= rank) {
      if (i >= LATENCY_BOUNDS.length) return LATENCY_BOUNDS.at(-1)! * 1000;
      const lower = i === 0 ? 0 : LATENCY_BOUNDS[i - 1]!;
      const upper = LATENCY_BOUNDS[i]!;
      return (lower + ((upper - lower) * (rank - seen)) / n) * 1000;
    }
    seen += n;
  }
  return LATENCY_BOUNDS.at(-1)! * 1000;
}

/** What a period of an app looks like to a person: rates, shares and percentiles. */
export interface MetricPoint {
  at: string;
  seconds: number;
  release: number | null;
  requestsPerSecond: number;
  /** Share of requests answered 5xx, 0–1; null without requests. */
  errorRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  /** CPU cores used on average over the period. */
  cpu: number | null;
  rssBytes: number | null;
  memoryLimitBytes: number | null;
  /** RSS as a share of the limit, 0–1. */
  memoryUse: number | null;
  restarts: number;
  connections: number | null;
  bytesInPerSecond: number;
  bytesOutPerSecond: number;
}

export function toPoint(s: MetricSample): MetricPoint {
  const per = (n: number) => (s.seconds > 0 ? n / s.seconds : 0);
  return {
    at: new Date(s.at).toISOString(),
    seconds: s.seconds,
    release: s.release,
    requestsPerSecond: per(s.requests),
    errorRate: s.requests > 0 ? s.status5xx / s.requests : null,
    p50Ms: quantileMs(s.latency, 0.5),
    p95Ms: quantileMs(s.latency, 0.95),
    p99Ms: quantileMs(s.latency, 0.99),
    cpu: s.cpuSeconds === null || s.seconds === 0 ? null : s.cpuSeconds / s.seconds,
    rssBytes: s.rssBytes,
    memoryLimitBytes: s.memoryLimitBytes,
    memoryUse: s.rssBytes !== null && s.memoryLimitBytes ? s.rssBytes / s.memoryLimitBytes : null,
    restarts: s.restarts,
    connections: s.connections,
    bytesInPerSecond: per(s.bytesIn),
    bytesOutPerSecond: per(s.bytesOut),
  };
}

/**
 * One series' samples summed into steps of `stepSeconds` from `fromMs` to `toMs` (a step without
 * samples is absent: a gap, not a zero).
 */
export function bucketSamples(samples: readonly MetricSample[], fromMs: number, toMs: number, stepSeconds: number): MetricSample[] {
  const step = stepSeconds * 1000;
  const groups = new Map<number, MetricSample[]>();
  for (const s of samples) {
    if (s.at < fromMs || s.at >= toMs) continue;
    const start = fromMs + Math.floor((s.at - fromMs) / step) * step;
    const g = groups.get(start);
    if (g) g.push(s);
    else groups.set(start, [s]);
  }
  return [...groups.entries()].sort((a, b) => a[0] - b[0]).map(([at, g]) => sumSamples(g, at, g[0]!.process));
}

const BARS = "▁▂▃▄▅▆▇█";

/** A one-line chart of `values` (null = a gap, drawn as a space), scaled to their own maximum. */
export function sparkline(values: readonly (number | null)[]): string {
  const present = values.filter((v): v is number => v !== null);
  const max = Math.max(0, ...present);
  return values.map((v) => (v === null ? " " : max === 0 ? BARS[0] : BARS[Math.min(BARS.length - 1, Math.floor((v / max) * (BARS.length - 1) + 0.5))])).join("");
}
