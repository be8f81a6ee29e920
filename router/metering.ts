/**
 * What the router counts per app: requests by status class, bytes in and out, and a latency
 * histogram, exposed in the Prometheus text format (prom-client), plus bandwidth totals that the
 * deck server drains periodically into PostgreSQL (the `bandwidth_usage` table, for billing).
 *
 * The hot path touches one Map lookup and a few prom-client children cached per app.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

import { accumulateUsage, type AppUsage } from "../core/index.ts";

export type { AppUsage };

interface Counter5 {
  inc(value?: number): void;
}

interface AppMeters {
  byClass: Counter5[];
  bytesIn: Counter5;
  bytesOut: Counter5;
  duration: { observe(value: number): void };
}

const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/** Seconds; spans a cached asset (1 ms) to a slow report (10 s). */
export const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metering {
  readonly registry = new Registry();
  private readonly requests: Counter<"app" | "code">;
  private readonly bytesIn: Counter<"app">;
  private readonly bytesOut: Counter<"app">;
  private readonly duration: Histogram<"app">;
  private readonly rejected: Counter<"app" | "reason">;
  private readonly meters = new Map<string, AppMeters>();
  private pending = new Map<string, AppUsage>();

  constructor(gauges: { connections: () => number; inflight: () => number } = { connections: () => 0, inflight: () => 0 }) {
    const registers = [this.registry];
    this.requests = new Counter({ name: "deck_router_requests_total", help: "Requests answered by the router, by app and status class", labelNames: ["app", "code"], registers });
    this.bytesIn = new Counter({ name: "deck_router_received_bytes_total", help: "Bytes received from clients (headers and bodies), by app", labelNames: ["app"], registers });
    this.bytesOut = new Counter({ name: "deck_router_sent_bytes_total", help: "Bytes sent to clients (headers and bodies), by app", labelNames: ["app"], registers });
    this.duration = new Histogram({ name: "deck_router_request_duration_seconds", help: "Time from a request's arrival until its response was sent, by app", labelNames: ["app"], buckets: LATENCY_BUCKETS, registers });
    this.rejected = new Counter({ name: "deck_router_rejected_total", help: "Requests the router answered itself instead of forwarding, by app and reason", labelNames: ["app", "reason"], registers });
    new Gauge({ name: "deck_router_open_connections", help: "Client connections open on the router", registers, collect() { this.set(gauges.connections()); } });
    new Gauge({ name: "deck_router_inflight_requests", help: "Requests and WebSocket tunnels open to upstreams", registers, collect() { this.set(gauges.inflight()); } });
  }

  private metersFor(app: string): AppMeters {
    let m = this.meters.get(app);
    if (m === undefined) {
      m = {
        byClass: CLASSES.map((c) => this.requests.labels(app, c)),
        bytesIn: this.bytesIn.labels(app),
        bytesOut: this.bytesOut.labels(app),
        duration: this.duration.labels(app),
      };
      this.meters.set(app, m);
    }
    return m;
  }

  /** One finished exchange (or WebSocket tunnel) of `app`. */
  record(app: string, status: number, bytesIn: number, bytesOut: number, seconds: number): void {
    const m = this.metersFor(app);
    const cls = (status / 100) | 0;
    m.byClass[cls >= 1 && cls <= 5 ? cls - 1 : 4].inc();
    if (bytesIn > 0) m.bytesIn.inc(bytesIn);
    if (bytesOut > 0) m.bytesOut.inc(bytesOut);
    m.duration.observe(seconds);
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
