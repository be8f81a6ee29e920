/**
 * What the router counts per app: requests by status class, bytes in and out, and a latency
 * histogram, exposed in the Prometheus text format (prom-client's registry), plus bandwidth totals
 * that the deck server drains periodically into PostgreSQL (the `bandwidth_usage` table, for billing).
 *
 * The hot path is one Map lookup and a few additions on plain numbers; the Prometheus series are
 * built from those numbers only when /metrics is read.
 */
import { randomUUID } from "node:crypto";
import { unlink } from "node:fs/promises";
import { Counter, Gauge, Registry } from "prom-client";
import { accumulateUsage, HOUR_MS, hourOf, LATENCY_BOUNDS, type AppUsage, type UsageBatch } from "../core/index.ts";
import { readJsonFile, writeJsonFileAtomically } from "./json-file.ts";

export type { AppUsage, UsageBatch };

const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/** Seconds; spans a cached asset (1 ms) to a slow report (10 s). */
export const LATENCY_BUCKETS = LATENCY_BOUNDS;

/** Everything counted for one app since the router started. */
export interface AppCounts {
  byClass: number[];
  bytesIn: number;
  bytesOut: number;
  /** Non-cumulative: buckets[i] counts durations in (LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]; the last slot is +Inf. */
  buckets: number[];
  count: number;
  sum: number;
}

/** What GET /metering/counters answers. */
export interface RouterCounters {
  /** Changes when the router restarts (the counts start from zero again). */
  instance: string;
  /** Upper bounds in seconds of the latency buckets (`AppCounts.buckets` has one more slot: +Inf). */
  buckets: number[];
  apps: Record<string, AppCounts>;
  /** Requests and tunnels open to each upstream `HOST:PORT` right now. */
  inflight?: Record<string, number>;
}

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

/** A metric prom-client's registry renders: name, help, type, and its samples when scraped. */
function collected(name: string, help: string, type: "counter" | "histogram", samples: () => Sample[]) {
  return { name, help, type, aggregator: "sum" as const, get: async () => ({ name, help, type, values: samples(), aggregator: "sum" as const }) };
}

/** What a stopping router leaves for the next start: the unacknowledged batch and what came after. */
interface UnsavedUsage {
  held: UsageBatch | null;
  pending: AppUsage[];
}

export class Metering {
  readonly registry = new Registry();
  private readonly rejected: Counter<"app" | "reason">;
  private readonly counts = new Map<string, AppCounts>();
  /** This clock hour's bandwidth by app: the hot path's one lookup. */
  private current = new Map<string, AppUsage>();
  private currentHour = "";
  private currentHourEnds = 0;
  /** Earlier hours' bandwidth not yet handed over, by hour and app. */
  private earlier = new Map<string, AppUsage>();
  /** The batch handed over for saving and not yet acknowledged: handed over again until it is. */
  private held: UsageBatch | null = null;
  private readonly instance = randomUUID();
  private batches = 0;

  /**
   * `gauges` are read at each scrape; `chargeOpen` (if given) adds the bytes that long-lived
   * exchanges (WebSocket tunnels) moved so far, before every scrape and batch, so an open tunnel's
   * traffic is not held back until it closes.
   */
  constructor(
    gauges: { connections: () => number; inflight: () => number } = { connections: () => 0, inflight: () => 0 },
    private readonly chargeOpen: () => void = () => {},
  ) {
    const registers = [this.registry];
    const perApp = (f: (app: string, c: AppCounts) => Sample[]) => () => [...this.counts].flatMap(([app, c]) => f(app, c));
    const metrics = [
      collected("deck_router_requests_total", "Requests answered by the router, by app and status class", "counter",
        perApp((app, c) => CLASSES.map((code, i) => ({ labels: { app, code }, value: c.byClass[i] })))),
      collected("deck_router_received_bytes_total", "Bytes received from clients (headers and bodies), by app", "counter",
        perApp((app, c) => [{ labels: { app }, value: c.bytesIn }])),
      collected("deck_router_sent_bytes_total", "Bytes sent to clients (headers and bodies), by app", "counter",
        perApp((app, c) => [{ labels: { app }, value: c.bytesOut }])),
      collected("deck_router_request_duration_seconds", "Time from a request's arrival until the app's response head (the router's own answers: until sent), by app", "histogram",
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

  /**
   * Every app's counts since this router started, copied, with an id of this router's run: a reader
   * computing rates from two snapshots knows the counts started again when the id changed.
   */
  counters(): RouterCounters {
    const apps: Record<string, AppCounts> = {};
    for (const [app, c] of this.counts) apps[app] = { ...c, byClass: [...c.byClass], buckets: [...c.buckets] };
    return { instance: this.instance, buckets: LATENCY_BUCKETS, apps };
  }

  private countsOf(app: string): AppCounts {
    let c = this.counts.get(app);
    if (c === undefined) {
      c = { byClass: [0, 0, 0, 0, 0], bytesIn: 0, bytesOut: 0, buckets: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0), count: 0, sum: 0 };
      this.counts.set(app, c);
    }
    return c;
  }

  private usageOf(app: string): AppUsage {
    const now = Date.now();
    if (now >= this.currentHourEnds) this.startHour(now);
    let u = this.current.get(app);
    if (u === undefined) {
      u = { app, hour: this.currentHour, requests: 0, bytesIn: 0, bytesOut: 0 };
      this.current.set(app, u);
    }
    return u;
  }

  /** Bytes an open exchange of `app` (a WebSocket tunnel) moved since it was last charged; its request is recorded when it ends. */
  addBytes(app: string, bytesIn: number, bytesOut: number): void {
    if (bytesIn === 0 && bytesOut === 0) return;
    const c = this.countsOf(app);
    c.bytesIn += bytesIn;
    c.bytesOut += bytesOut;
    const u = this.usageOf(app);
    u.bytesIn += bytesIn;
    u.bytesOut += bytesOut;
  }

  /** One finished exchange (or WebSocket tunnel) of `app`; `seconds` until its answer. */
  record(app: string, status: number, bytesIn: number, bytesOut: number, seconds: number): void {
    const c = this.countsOf(app);
    const cls = (status / 100) | 0;
    c.byClass[cls >= 1 && cls <= 5 ? cls - 1 : 4]++;
    c.bytesIn += bytesIn;
    c.bytesOut += bytesOut;
    let b = 0;
    while (b < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[b]) b++;
    c.buckets[b]++;
    c.count++;
    c.sum += seconds;
    const u = this.usageOf(app);
    u.requests++;
    u.bytesIn += bytesIn;
    u.bytesOut += bytesOut;
  }

  /** A request the router answered itself (rate limited, too large, maintenance, ...). */
  reject(app: string, reason: string): void {
    this.rejected.inc({ app, reason });
  }

  /** Moves this hour's counts in with the earlier ones: everything not handed over, in one map. */
  private foldCurrent(): void {
    for (const u of this.current.values()) accumulateUsage(this.earlier, u);
    this.current = new Map();
  }

  private startHour(now: number): void {
    this.foldCurrent();
    this.currentHour = hourOf(now);
    this.currentHourEnds = Math.floor(now / HOUR_MS) * HOUR_MS + HOUR_MS;
  }

  /** Everything counted and not yet handed over, per app and hour; the counts start again from zero. */
  private takePending(): AppUsage[] {
    this.foldCurrent();
    const out = [...this.earlier.values()];
    this.earlier = new Map();
    return out;
  }

  /**
   * Bandwidth to save: the batch handed over before, as long as it is not acknowledged (its save may
   * have failed, or its answer was lost), else a new batch of everything counted since. Empty batches
   * have no id and are not held.
   */
  takeBatch(): UsageBatch {
    if (this.held !== null) return this.held;
    this.chargeOpen();
    const usage = this.takePending();
    if (usage.length === 0) return { id: null, usage: [] };
    this.held = { id: `${this.instance}.${++this.batches}`, usage };
    return this.held;
  }

  /** The batch `id` is saved: it is not handed over again. False when it is not the batch held. */
  acknowledge(id: string): boolean {
    if (this.held === null || this.held.id !== id) return false;
    this.held = null;
    return true;
  }

  /** Writes what is not saved yet to `file` (or removes the file when nothing is), for the next start. */
  async saveUnsaved(file: string): Promise<number> {
    this.chargeOpen();
    // Copied, and kept in memory too: this router may go on counting (a node whose database came back).
    this.foldCurrent();
    const unsaved: UnsavedUsage = { held: this.held, pending: [...this.earlier.values()].map((u) => ({ ...u })) };
    const n = unsaved.pending.length + (unsaved.held?.usage.length ?? 0);
    if (n === 0) await unlink(file).catch(() => {});
    else await writeJsonFileAtomically(file, unsaved);
    return n;
  }

  /**
   * Takes back what an earlier router left in `file` (see saveUnsaved) and removes the file. A held
   * batch keeps its id, so a batch saved just before that router stopped is not added twice.
   */
  async loadUnsaved(file: string): Promise<{ entries: number; skipped?: number } | { error: string }> {
    const read = await readJsonFile(file);
    if (!read.ok) return { error: read.message };
    if (read.missing) return { entries: 0 };
    const value = read.value as Partial<UnsavedUsage> | null;
    const valid = (u: unknown): u is AppUsage => {
      const x = u as AppUsage;
      return typeof x === "object" && x !== null && typeof x.app === "string" && typeof x.hour === "string" && !Number.isNaN(Date.parse(x.hour))
        && [x.requests, x.bytesIn, x.bytesOut].every((n) => Number.isSafeInteger(n) && n >= 0);
    };
    const held = value?.held;
    if (typeof value !== "object" || value === null || !Array.isArray(value.pending) || (held != null && (typeof held.id !== "string" || !Array.isArray(held.usage)))) {
      return { error: `${file}: not a metering file deck wrote` };
    }
    // An entry that does not read as counts is left out; the others are still saved.
    let skipped = 0;
    const keep = (list: unknown[]) => list.filter((u) => valid(u) || (skipped++, false)) as AppUsage[];
    const pending = keep(value.pending);
    if (held) {
      const usage = keep(held.usage);
      // A router starts with nothing held, so this is the only held batch.
      if (this.held === null) this.held = { id: held.id, usage };
      else for (const u of usage) accumulateUsage(this.earlier, u);
    }
    for (const u of pending) accumulateUsage(this.earlier, u);
    await unlink(file).catch(() => {});
    const entries = pending.length + (this.held?.usage.length ?? 0);
    return skipped > 0 ? { entries, skipped } : { entries };
  }

  metrics(): Promise<string> {
    this.chargeOpen();
    return this.registry.metrics();
  }
}
