import { hostname as machineName } from "node:os";
import { followLog } from "../../deploy/index.ts";
import type { Db } from "../../store/queries/index.ts";
import { addDrainProgress, listAllLogDrains, type DrainProgress, type LogDrainRow } from "../../store/queries/logs.ts";
import { createTransport, type DrainTransport } from "./drain-transport.ts";
import { parseDrainUrl } from "./drain-url.ts";
import { parseAppLogLine, parseRouterLine, type LogEntry } from "./log-line.ts";
import { createOutboundPolicy, type OutboundPolicy } from "../notify/index.ts";

/**
 * Ships every app's log lines to the app's drains (drains:add), as they are written.
 *
 * Each drain follows the app's log from the moment this server sees the drain (and, when its sources
 * include `router`, the router's access log for the app's own requests) and holds what it has not sent
 * yet in a buffer of its own, at most `bufferLines` lines: a drain that is down is retried with backoff
 * (1 s doubling to a minute) and, once its buffer is full, newer lines are dropped and counted. Each line
 * is sent once per drain, in the order it was read: a batch is sent again only when it failed, with the
 * same `X-Deck-Batch` id for HTTPS receivers. HTTPS batches go when they hold 500 lines or their first
 * line waited a second; syslog lines go as soon as the connection takes them.
 *
 * What each drain delivered and dropped, and its last error, is added to its row every few seconds
 * (drains:list shows it). Lines written while no deck server runs, and lines still buffered when it
 * stops (counted as dropped), are not shipped. Only this server's files are read: router nodes on other
 * machines keep their own access logs.
 */

export interface DrainShipperOptions {
  db: Db;
  /** The app's log file (deps.paths.appLog). */
  appLog(app: string): string;
  /** The router's access log (routerAccessLog(dataDir)). */
  accessLog: string;
  log(line: string): void;
  /** HOSTNAME in syslog messages (default: this machine's name). */
  hostname?: string;
  /** Addresses or CIDR ranges drains may reach although private or loopback (DECK_OUTBOUND_ALLOW). */
  outboundAllow?: readonly string[];
  /** A CA trusted besides the system ones, for receivers with a private CA. */
  ca?: string | Buffer;
  /** Lines held per drain (default 10,000). */
  bufferLines?: number;
  /** Lines per HTTPS batch (default 500) and how long a batch waits to fill (default 1 s). */
  batchLines?: number;
  batchMs?: number;
  /** Retry backoff bounds (default 1 s to 60 s). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** How often the drain list is read again (default 5 s) and counters saved (default 2 s). */
  refreshMs?: number;
  reportMs?: number;
  /** How often followed files are checked (default 200 ms). */
  followMs?: number;
  /** Connect and answer timeout (default 10 s). */
  timeoutMs?: number;
}

type Settings = Required<Pick<DrainShipperOptions, "bufferLines" | "batchLines" | "batchMs" | "backoffMinMs" | "backoffMaxMs" | "followMs">>;

export class DrainShipper {
  readonly #options: DrainShipperOptions;
  readonly #policy: OutboundPolicy;
  readonly #settings: Settings;
  readonly #drains = new Map<number, ActiveDrain>();
  #timers: NodeJS.Timeout[] = [];
  #refreshing: Promise<void> | null = null;

  constructor(options: DrainShipperOptions) {
    this.#options = options;
    this.#policy = createOutboundPolicy(options.outboundAllow ?? []);
    this.#settings = {
      bufferLines: options.bufferLines ?? 10_000, batchLines: options.batchLines ?? 500, batchMs: options.batchMs ?? 1000,
      backoffMinMs: options.backoffMinMs ?? 1000, backoffMaxMs: options.backoffMaxMs ?? 60_000, followMs: options.followMs ?? 200,
    };
  }

  /** Starts shipping every drain there is, and picks up added and removed drains from then on. */
  async start(): Promise<void> {
    await this.refresh();
    const every = (ms: number, work: () => Promise<void>, what: string) => {
      const t = setInterval(() => void work().catch((e: unknown) => this.#options.log(`log drains: ${what} failed: ${(e as Error).message}`)), ms);
      t.unref();
      this.#timers.push(t);
    };
    every(this.#options.refreshMs ?? 5000, () => this.refresh(), "reading the drain list");
    every(this.#options.reportMs ?? 2000, () => this.report(), "saving drain counters");
  }

  /** Stops every drain (what they still hold is counted as dropped) and saves the counters. */
  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#refreshing;
    await Promise.all([...this.#drains.values()].map((d) => d.stop()));
    await this.report();
    this.#drains.clear();
  }

  /** Reads the drain list: starts new drains, stops removed ones. */
  refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      try {
        const rows = await listAllLogDrains(this.#options.db);
        const ids = new Set(rows.map((r) => r.id));
        for (const [id, drain] of this.#drains) {
          if (ids.has(id)) continue;
          this.#drains.delete(id);
          await drain.stop();
        }
        // Resolved once every new drain follows its files: lines written from then on are shipped.
        await Promise.all(rows.filter((row) => !this.#drains.has(row.id)).map((row) => this.#startDrain(row)));
      } finally {
        this.#refreshing = null;
      }
    })();
    return this.#refreshing;
  }

  /** Adds what each drain did since the last report to its row. */
  async report(): Promise<void> {
    for (const drain of [...this.#drains.values()]) {
      const p = drain.takeProgress();
      if (p.delivered === 0 && p.dropped === 0 && p.error === null) continue;
      await addDrainProgress(this.#options.db, drain.id, p);
    }
  }

  async #startDrain(row: LogDrainRow): Promise<void> {
    const target = parseDrainUrl(row.url);
    if (!target.ok) {
      this.#options.log(`log drains: drain ${row.id} of ${row.app} is not usable: ${target.message}`);
      return;
    }
    const transport = createTransport(target.value, {
      app: row.app, hostname: this.#options.hostname ?? machineName(), policy: this.#policy, ca: this.#options.ca, timeoutMs: this.#options.timeoutMs ?? 10_000,
    });
    const drain = new ActiveDrain(row, transport, target.value.kind === "https", this.#settings, this.#options.log);
    this.#drains.set(row.id, drain);
    const sources = new Set(row.sources);
    const following: Promise<void>[] = [];
    if (sources.has("app") || sources.has("deck")) {
      following.push(drain.follow(this.#options.appLog(row.app), (line) => {
        const e = parseAppLogLine(line);
        return e && sources.has(e.source) ? e : null;
      }));
    }
    if (sources.has("router")) following.push(drain.follow(this.#options.accessLog, (line) => parseRouterLine(line, row.app)));
    drain.startSending();
    await Promise.all(following);
  }
}

/** One drain while it ships: its followers, its buffer, its sender. */
class ActiveDrain {
  readonly id: number;
  readonly #label: string;
  readonly #stopper = new AbortController();
  readonly #work: Promise<void>[] = [];
  /** Lines read and not yet sent, oldest first (the batch being sent is at the front). */
  #queue: LogEntry[] = [];
  /** When the oldest queued line was read (a batch waits at most batchMs for more). */
  #oldestAt = 0;
  #wake: (() => void) | null = null;
  #progress: DrainProgress = { delivered: 0, dropped: 0, error: null, deliveredAt: null };
  #failing = false;

  constructor(
    row: LogDrainRow,
    private readonly transport: DrainTransport,
    private readonly batched: boolean,
    private readonly settings: Settings,
    private readonly log: (line: string) => void,
  ) {
    this.id = row.id;
    this.#label = `drain ${row.id} of ${row.app}`;
  }

  /** Follows `file` from its end; resolved once the follower has its place. */
  follow(file: string, parse: (line: string) => LogEntry | null): Promise<void> {
    return new Promise((ready) => {
      this.#work.push(followLog(file, (line) => {
        const e = parse(line);
        if (e) this.#offer(e);
      }, this.#stopper.signal, { intervalMs: this.settings.followMs, onReady: ready }).catch((e: unknown) => {
        this.log(`log drains: ${this.#label} stopped following ${file}: ${(e as Error).message}`);
      }).finally(ready));
    });
  }

  #offer(e: LogEntry): void {
    if (this.#queue.length >= this.settings.bufferLines) {
      this.#progress.dropped++;
      return;
    }
    if (this.#queue.length === 0) this.#oldestAt = Date.now();
    this.#queue.push(e);
    this.#wake?.();
  }

  startSending(): void {
    this.#work.push(this.#sendLoop().catch((e: unknown) => this.log(`log drains: ${this.#label} stopped sending: ${(e as Error).message}`)));
  }

  async #sendLoop(): Promise<void> {
    const signal = this.#stopper.signal;
    let backoff = this.settings.backoffMinMs;
    let batch: LogEntry[] | null = null;
    while (!signal.aborted) {
      if (batch === null) {
        await this.#waitForBatch();
        if (signal.aborted) break;
        batch = this.#queue.slice(0, this.settings.batchLines);
      }
      try {
        await this.transport.send(batch);
      } catch (e) {
        const message = (e as Error).message;
        this.#progress.error = { message, at: new Date() };
        if (!this.#failing) this.log(`log drains: ${this.#label} failing: ${message}; retrying with backoff`);
        this.#failing = true;
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, this.settings.backoffMaxMs);
        continue;
      }
      this.#queue.splice(0, batch.length);
      if (this.#queue.length > 0) this.#oldestAt = Date.now();
      this.#progress.delivered += batch.length;
      this.#progress.deliveredAt = new Date();
      if (this.#failing) this.log(`log drains: ${this.#label} delivering again`);
      this.#failing = false;
      backoff = this.settings.backoffMinMs;
      batch = null;
    }
  }

  /** Until there are lines to send: for HTTPS, a full batch or one whose oldest line waited batchMs. */
  async #waitForBatch(): Promise<void> {
    const signal = this.#stopper.signal;
    while (!signal.aborted) {
      const n = this.#queue.length;
      if (n > 0 && (!this.batched || n >= this.settings.batchLines)) return;
      const waitMs = n === 0 ? null : this.#oldestAt + this.settings.batchMs - Date.now();
      if (waitMs !== null && waitMs <= 0) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#wake = null;
          signal.removeEventListener("abort", done);
          resolve();
        };
        const timer = waitMs === null ? undefined : setTimeout(done, waitMs);
        this.#wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }

  takeProgress(): DrainProgress {
    const p = this.#progress;
    this.#progress = { delivered: 0, dropped: 0, error: null, deliveredAt: null };
    return p;
  }

  async stop(): Promise<void> {
    this.#stopper.abort();
    this.#wake?.();
    this.transport.close();
    await Promise.all(this.#work);
    this.#progress.dropped += this.#queue.length;
    this.#queue = [];
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
