/**
 * What the router counts per app: requests by status class, bytes in and out, and a latency
 * histogram, exposed in the Prometheus text format (prom-client's registry), plus bandwidth totals
 * that the deck server drains periodically into PostgreSQL (the `bandwidth_usage` table, for billing).
 *
 * The hot path is one Map lookup and a few additions on plain numbers; the Prometheus series are
 * built from those numbers only when /metrics is read.
 */
import { Counter, Gauge, Registry } from "prom-client";
import { accumulateUsage, type AppUsage } from "../core/index.ts";

export type { AppUsage };

const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/** Seconds; spans a cached asset (1 ms) to a slow report (10 s). */
export const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Everything counted for one app since the router started. */
interface AppCounts {
  byClass: number[];
  bytesIn: number;
  bytesOut: number;
  /** Non-cumulative: buckets[i] counts durations in (LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]; the last slot is +Inf. */
  buckets: number[];
  count: number;
  sum: number;
}

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

/** A metric prom-client's registry renders: name, help, type, and its samples when scraped. */
function collected(name: string, help: string, type: "counter" | "histogram", samples: () => Sample[]) {
  return { name, help, type, aggregator: "sum" as const, get: async () => ({ name, help, type, values: samples(), aggregator: "sum" as const }) };
}

export class Metering {
  readonly registry = new Registry();
  private readonly rejected: Counter<"app" | "reason">;
  private readonly counts = new Map<string, AppCounts>();
  private pending = new Map<string, AppUsage>();

  constructor(gauges: { connections: () => number; inflight: () => number } = { connections: () => 0, inflight: () => 0 }) {
    const registers = [this.registry];
    const perApp = (f: (app: string, c: AppCounts) => Sample[]) => () => [...this.counts].flatMap(([app, c]) => f(app, c));
    const metrics = [
      collected("deck_router_requests_total", "Requests answered by the router, by app and status class", "counter",
        perApp((app, c) => CLASSES.map((code, i) => ({ labels: { app, code }, value: c.byClass[i] })))),
      collected("deck_router_received_bytes_total", "Bytes received from clients (headers and bodies), by app", "counter",
        perApp((app, c) => [{ labels: { app }, value: c.bytesIn }])),
      collected("deck_router_sent_bytes_total", "Bytes sent to clients (headers and bodies), by app", "counter",
        perApp((app, c) => [{ labels: { app }, value: c.bytesOut }])),
      collected("deck_router_request_duration_seconds", "Time from a request's arrival until its response was sent, by app", "histogram",
        perApp((app, c) => {
          const name = "deck_router_request_duration_seconds";
          const out: Sample[] = [];
          let cumulative = 0;
          LATENCY_BUCKETS.forEach((le, i) => {
            cumulative += c.buckets[i];
            out.push({ labels: { le, app }, value: cumulative, metricName: `${name}_bucket` });
          });
          out.push({ labels: { le: "+Inf", app }, value: c.count, metricName: `${name}_bucket` });
          out.push({ labels: { app }, value: c.sum, metricName: `${name}_sum` });
          out.push({ labels: { app }, value: c.count, metricName: `${name}_count` });
          return out;
        })),
    ];
    for (const m of metrics) this.registry.registerMetric(m as never);
    this.rejected = new Counter({ name: "deck_router_rejected_total", help: "Requests the router answered itself instead of forwarding, by app and reason", labelNames: ["app", "reason"], registers });
    new Gauge({ name: "deck_router_open_connections", help: "Client connections open on the router", registers, collect() { this.set(gauges.connections()); } });
    new Gauge({ name: "deck_router_inflight_requests", help: "Requests and WebSocket tunnels open to upstreams", registers, collect() { this.set(gauges.inflight()); } });
  }

  /** One finished exchange (or WebSocket tunnel) of `app`. */
  record(app: string, status: number, bytesIn: number, bytesOut: number, seconds: number): void {
    let c = this.counts.get(app);
    if (c === undefined) {
      c = { byClass: [0, 0, 0, 0, 0], bytesIn: 0, bytesOut: 0, buckets: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0), count: 0, sum: 0 };
      this.counts.set(app, c);
    }
    const cls = (status / 100) | 0;
    c.byClass[cls >= 1 && cls <= 5 ? cls - 1 : 4]++;
    c.bytesIn += bytesIn;
    c.bytesOut += bytesOut;
    let b = 0;
    while (b < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[b]) b++;
    c.buckets[b]++;
    c.count++;
    c.sum += seconds;
    let u = this.pending.get(app);
    if (u === undefined) {
      u = { app, requests: 0, bytesIn: 0, bytesOut: 0 };
      this.pending.set(app, u);
    }
    u.requests++;
    u.bytesIn += bytesIn;
    u.bytesOut += bytesOut;
  }

  /** A request the router answered itself (rate limited, too large, maintenance, ...). */
  reject(app: string, reason: string): void {
    this.rejected.inc({ app, reason });
  }

  /** Bandwidth since the previous drain; the counts start again from zero. */
  drain(): AppUsage[] {
    const out = [...this.pending.values()];
    this.pending = new Map();
    return out;
  }

  /** Puts drained usage back (its save failed), so the next drain carries it. */
  restore(usage: readonly AppUsage[]): void {
    for (const u of usage) accumulateUsage(this.pending, u);
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
