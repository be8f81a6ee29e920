import { hostname as machineName } from "node:os";
import { followLog } from "../../deploy/index.ts";
import type { Db } from "../../store/queries/index.ts";
import {
  addDrainProgress, listAllLogDrains, type DrainFile, type DrainPosition, type DrainPositions, type DrainProgress, type ShippedLogDrainRow,
} from "../../store/queries/logs.ts";
import { createTransport, type DrainTransport } from "./drain-transport.ts";
import { parseDrainUrl } from "./drain-url.ts";
import { parseAppLogLine, parseRouterLine, type LogEntry } from "./log-line.ts";
import { createOutboundPolicy, type OutboundPolicy } from "../notify/index.ts";

/**
 * Ships every app's log lines to the app's drains (drains:add), as they are written.
 *
 * Each drain follows the app's log (and, when its sources include `router`, the router's access log for
 * the app's own requests) and holds what it has not sent yet in a buffer of its own, at most
 * `bufferLines` lines: a drain that is down is retried with backoff (1 s doubling to a minute) and, once
 * its buffer is full, newer lines are dropped and counted. Lines go in the order they were read; a batch
 * is sent again only when it failed, with the same `X-Deck-Batch` id for HTTPS receivers. HTTPS batches
 * go when they hold 500 lines or their first line waited a second; syslog lines go as soon as the
 * connection takes them.
 *
 * Every few seconds, and when deck stops, each drain's row gets what it delivered and dropped, its last
 * error (drains:list shows them), and where its delivered lines end in each file it follows. Positions
 * are kept per place (a machine and data dir): each deck server reads its own files, and router nodes on
 * other machines keep their own access logs. A deck server that starts goes on from its place's
 * positions, so lines written while no deck server ran, and lines still buffered when it stopped, are
 * shipped at the next start, in order, none twice (and so are lines dropped behind what it still held:
 * they are taken off the dropped count). A drain added since (no position yet) follows the files from
 * their end, and its place is saved at once.
 *
 * "Delivered" is as good as the receiver's word. An HTTPS batch is delivered when the receiver answered
 * 2xx; syslog has no acknowledgement, so a syslog line counts as delivered once the TCP/TLS connection
 * took it (lines in flight when a connection breaks are lost, RFC 5425 §4.1). At a clean stop a batch in
 * flight gets `stopGraceMs` to finish before the positions are saved, so nothing is sent twice. If deck
 * dies, or the grace runs out with a batch sent but not answered, what was delivered since the last save
 * (at most `reportMs` worth, or that one batch) is sent again at the next start, HTTPS batches under a
 * new `X-Deck-Batch` id: at least once across a crash. Not shipped: lines the retention job trimmed
 * away before a drain read them, and the unread end of a log the process supervisor moved aside (the
 * follower goes on with the new file from its start).
 */

export interface DrainShipperOptions {
  db: Db;
  /** The app's log file (deps.paths.appLog). */
  appLog(app: string): string;
  /** The router's access log (routerAccessLog(dataDir)). */
  accessLog: string;
  /**
   * The machine and data dir whose files this shipper reads (e.g. "HOST:/data/dir"): each drain's
   * positions are saved under it, so several deck servers on one database each go on from their own.
   */
  place: string;
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
  /** How long stop lets a batch in flight finish, so that it is not sent again at the next start (default 5 s). */
  stopGraceMs?: number;
}

type Settings = Required<Pick<DrainShipperOptions, "bufferLines" | "batchLines" | "batchMs" | "backoffMinMs" | "backoffMaxMs" | "followMs" | "stopGraceMs">>;

export class DrainShipper {
  readonly #options: DrainShipperOptions;
  readonly #policy: OutboundPolicy;
  readonly #settings: Settings;
  readonly #drains = new Map<number, ActiveDrain>();
  #timers: NodeJS.Timeout[] = [];
  #refreshing: Promise<void> | null = null;
  /** Reports run one after another: an older position saved after a newer one would repeat lines. */
  #reporting: Promise<void> = Promise.resolve();

  constructor(options: DrainShipperOptions) {
    this.#options = options;
    this.#policy = createOutboundPolicy(options.outboundAllow ?? []);
    this.#settings = {
      bufferLines: options.bufferLines ?? 10_000, batchLines: options.batchLines ?? 500, batchMs: options.batchMs ?? 1000,
      backoffMinMs: options.backoffMinMs ?? 1000, backoffMaxMs: options.backoffMaxMs ?? 60_000, followMs: options.followMs ?? 200,
      stopGraceMs: options.stopGraceMs ?? 5000,
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

  /**
   * Stops every drain and saves the counters and positions: what a drain still holds is not dropped but
   * read again from its saved position at the next start.
   */
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
        const rows = await listAllLogDrains(this.#options.db, this.#options.place);
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

  /** Adds what each drain did since the last report to its row, with where its delivered lines now end. */
  report(): Promise<void> {
    const run = this.#reporting.then(() => this.#saveProgress());
    // The caller hears of a failure; the next report still runs (and saves what this one could not).
    this.#reporting = run.catch(() => {});
    return run;
  }

  async #saveProgress(): Promise<void> {
    for (const drain of [...this.#drains.values()]) {
      const p = drain.takeProgress();
      if (p.delivered === 0 && p.dropped === 0 && p.error === null && p.positions === null) continue;
      try {
        await addDrainProgress(this.#options.db, drain.id, { ...p, positions: p.positions && { place: this.#options.place, files: p.positions } });
      } catch (e) {
        // Saved with the next report instead.
        drain.putBack(p);
        throw e;
      }
    }
  }

  async #startDrain(row: ShippedLogDrainRow): Promise<void> {
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
      following.push(drain.follow({
        kind: "app", file: this.#options.appLog(row.app), from: row.positions.app, parse: (line) => {
          const e = parseAppLogLine(line);
          return e && sources.has(e.source) ? e : null;
        },
      }));
    }
    if (sources.has("router")) {
      following.push(drain.follow({ kind: "router", file: this.#options.accessLog, from: row.positions.router, parse: (line) => parseRouterLine(line, row.app) }));
    }
    drain.startSending();
    await Promise.all(following);
  }
}

/** A line read and not yet delivered, with its file and the position after it (or after lines skipped behind it). */
interface Queued {
  entry: LogEntry;
  file: DrainFile;
  position: DrainPosition;
  /** Lines of its file dropped (buffer full) after it and before the next queued one. */
  droppedAfter: number;
}

/** What a drain did since its last report, with where its delivered lines end (null: unchanged). */
type DrainReport = Omit<DrainProgress, "positions"> & { positions: DrainPositions | null };

/** A file a drain follows: which one it is, where, from where (none: its end), and which of its lines go. */
interface FollowedFile {
  kind: DrainFile;
  file: string;
  from: DrainPosition | undefined;
  parse(line: string): LogEntry | null;
}

/** One drain while it ships: its followers, its buffer, its sender. */
class ActiveDrain {
  readonly id: number;
  readonly #label: string;
  readonly #stopper = new AbortController();
  readonly #work: Promise<void>[] = [];
  #sending: Promise<void> = Promise.resolve();
  /** Lines read and not yet sent, oldest first (the batch being sent is at the front). */
  #queue: Queued[] = [];
  /** Per file, its newest queued line: the lines the drain skips after it are passed with it. */
  readonly #newest = new Map<DrainFile, Queued>();
  /** Per file, where the delivered (or skipped) lines end; `#moved` until that is reported. */
  readonly #delivered: DrainPositions = {};
  #moved = false;
  /** When the oldest queued line was read (a batch waits at most batchMs for more). */
  #oldestAt = 0;
  #wake: (() => void) | null = null;
  #progress: Omit<DrainProgress, "positions"> = { delivered: 0, dropped: 0, error: null, deliveredAt: null };
  #failing = false;

  constructor(
    row: ShippedLogDrainRow,
    private readonly transport: DrainTransport,
    private readonly batched: boolean,
    private readonly settings: Settings,
    private readonly log: (line: string) => void,
  ) {
    this.id = row.id;
    this.#label = `drain ${row.id} of ${row.app}`;
  }

  /** Follows a file from its saved position, else from its end; resolved once the follower has its place. */
  follow(f: FollowedFile): Promise<void> {
    return new Promise((ready) => {
      const onReady = (start: DrainPosition) => {
        this.#delivered[f.kind] = start;
        // A drain's first place is saved at once: lines written after it are owed even if deck stops before any is sent.
        if (!f.from) this.#moved = true;
        ready();
      };
      this.#work.push(followLog(f.file, (line, position) => this.#read(f.kind, f.parse(line), position), this.#stopper.signal, {
        intervalMs: this.settings.followMs, from: f.from, onReady,
      }).catch((e: unknown) => {
        this.log(`log drains: ${this.#label} stopped following ${f.file}: ${(e as Error).message}`);
      }).finally(ready));
    });
  }

  #read(file: DrainFile, entry: LogEntry | null, position: DrainPosition): void {
    if (entry === null) return this.#skip(file, position);
    if (this.#queue.length >= this.settings.bufferLines) {
      this.#progress.dropped++;
      const newest = this.#newest.get(file);
      if (newest) newest.droppedAfter++;
      return this.#skip(file, position);
    }
    if (this.#queue.length === 0) this.#oldestAt = Date.now();
    const queued: Queued = { entry, file, position, droppedAfter: 0 };
    this.#queue.push(queued);
    this.#newest.set(file, queued);
    this.#wake?.();
  }

  /**
   * A line this drain does not ship (another app's, a source it does not take, or dropped): once the
   * lines before it are delivered, a restart goes on after it.
   */
  #skip(file: DrainFile, position: DrainPosition): void {
    const newest = this.#newest.get(file);
    if (newest) {
      newest.position = position;
      return;
    }
    this.#delivered[file] = position;
    this.#moved = true;
  }

  #markDelivered(count: number): void {
    for (const q of this.#queue.splice(0, count)) {
      this.#delivered[q.file] = q.position;
      if (this.#newest.get(q.file) === q) this.#newest.delete(q.file);
    }
    this.#moved = true;
  }

  startSending(): void {
    this.#sending = this.#sendLoop().catch((e: unknown) => this.log(`log drains: ${this.#label} stopped sending: ${(e as Error).message}`));
    this.#work.push(this.#sending);
  }

  async #sendLoop(): Promise<void> {
    const signal = this.#stopper.signal;
    let backoff = this.settings.backoffMinMs;
    let batch: LogEntry[] | null = null;
    while (!signal.aborted) {
      if (batch === null) {
        await this.#waitForBatch();
        if (signal.aborted) break;
        batch = this.#queue.slice(0, this.settings.batchLines).map((q) => q.entry);
      }
      try {
        await this.transport.send(batch);
      } catch (e) {
        // Cut off by stop: not the receiver's failure; the batch is read again at the next start.
        if (signal.aborted) break;
        const message = (e as Error).message;
        this.#progress.error = { message, at: new Date() };
        if (!this.#failing) this.log(`log drains: ${this.#label} failing: ${message}; retrying with backoff`);
        this.#failing = true;
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, this.settings.backoffMaxMs);
        continue;
      }
      this.#markDelivered(batch.length);
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

  takeProgress(): DrainReport {
    const p = { ...this.#progress, positions: this.#moved ? { ...this.#delivered } : null };
    this.#progress = { delivered: 0, dropped: 0, error: null, deliveredAt: null };
    this.#moved = false;
    return p;
  }

  /** A report that could not be saved: its counts go with the next one (positions are kept anyway). */
  putBack(p: DrainReport): void {
    const now = this.#progress;
    now.delivered += p.delivered;
    now.dropped += p.dropped;
    now.error ??= p.error;
    now.deliveredAt ??= p.deliveredAt;
    if (p.positions) this.#moved = true;
  }

  /**
   * Stops following and sending. A batch in flight gets `stopGraceMs` to finish (delivered, it is not
   * sent again); what is still queued is not dropped: the next start reads it again from the saved place.
   */
  async stop(): Promise<void> {
    this.#stopper.abort();
    this.#wake?.();
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([this.#sending, new Promise<void>((resolve) => (grace = setTimeout(resolve, this.settings.stopGraceMs)))]);
    clearTimeout(grace);
    this.transport.close();
    await Promise.all(this.#work);
    // The saved positions are before what is still queued, so lines dropped behind it are read again at
    // the next start: not lost after all.
    for (const q of this.#queue) this.#progress.dropped -= q.droppedAfter;
    this.#queue = [];
    this.#newest.clear();
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
