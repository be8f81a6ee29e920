import { rm, stat } from "node:fs/promises";
import type { Db } from "../../store/queries/index.ts";
import { listAppsWithRetention } from "../../store/queries/logs.ts";
import { trimLog, TrimError } from "./log-trim.ts";

/**
 * Log retention: every app's log keeps at most its size limit and its age limit of lines
 * (`logs:retention APP --size 100m --age 14d`, else the defaults). A job trims the oldest lines in
 * place (log-trim.ts says how, and why in place) every minute; the older file the process supervisor
 * moved aside when the log outgrew its own cap (`APP.log.1`) is removed once it is past the age limit
 * or no longer fits in the size limit beside the current log.
 */

export interface RetentionPolicy {
  maxBytes: number;
  maxAgeMs: number;
}

export const LOG_RETENTION_DEFAULTS: RetentionPolicy = { maxBytes: 50 * 1024 * 1024, maxAgeMs: 7 * 86_400_000 };

/** What logs:retention accepts. */
export const RETENTION_BOUNDS = {
  minBytes: 1024 * 1024,
  maxBytes: 1024 ** 3,
  minAgeMs: 3_600_000,
  maxAgeMs: 400 * 86_400_000,
} as const;

/**
 * The size at which the process supervisor moves a log aside (ProcessRuntime's maxLogBytes): above the
 * largest retention, so retention decides what is kept, and the supervisor's cap only stops a log that
 * grows faster than the job trims it.
 */
export const SUPERVISOR_MAX_LOG_BYTES = RETENTION_BOUNDS.maxBytes + 64 * 1024 * 1024;

export interface LogRetentionOptions {
  db: Db;
  /** The app's log file (deps.paths.appLog). */
  appLog(app: string): string;
  /** For apps without settings of their own: LOG_RETENTION_DEFAULTS, which logs:retention shows. */
  defaults?: RetentionPolicy;
  /** Between passes (default one minute). */
  intervalMs?: number;
  log(line: string): void;
}

/** One app's outcome of a pass (for tests and the log). */
export interface RetentionOutcome {
  app: string;
  removedBytes: number;
  removedRotated: boolean;
}

export class LogRetention {
  readonly #options: LogRetentionOptions;
  readonly #defaults: RetentionPolicy;
  #timer: NodeJS.Timeout | null = null;
  #pass: Promise<unknown> | null = null;
  /** Failures already reported, per app: the same one is logged once, not every minute. */
  readonly #reported = new Map<string, string>();

  constructor(options: LogRetentionOptions) {
    this.#options = options;
    this.#defaults = options.defaults ?? LOG_RETENTION_DEFAULTS;
  }

  /** Runs a pass now and then every interval, until stop. */
  start(): void {
    if (this.#timer !== null) return;
    const tick = () => {
      this.#pass ??= this.runOnce()
        .catch((e: unknown) => this.#options.log(`log retention: a pass failed: ${(e as Error).message}`))
        .finally(() => (this.#pass = null));
    };
    this.#timer = setInterval(tick, this.#options.intervalMs ?? 60_000);
    this.#timer.unref();
    tick();
  }

  /** Stops the timer and waits for a pass in progress. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#pass;
  }

  /** One pass over every app. */
  async runOnce(now = Date.now()): Promise<RetentionOutcome[]> {
    const outcomes: RetentionOutcome[] = [];
    for (const row of await listAppsWithRetention(this.#options.db)) {
      const policy: RetentionPolicy = {
        maxBytes: row.maxBytes ?? this.#defaults.maxBytes,
        maxAgeMs: row.maxAgeSeconds !== null ? row.maxAgeSeconds * 1000 : this.#defaults.maxAgeMs,
      };
      outcomes.push(await this.#trimApp(row.app, policy, now));
    }
    return outcomes;
  }

  async #trimApp(app: string, policy: RetentionPolicy, now: number): Promise<RetentionOutcome> {
    const file = this.#options.appLog(app);
    const outcome: RetentionOutcome = { app, removedBytes: 0, removedRotated: false };
    let size = 0;
    try {
      const r = await trimLog(file, { maxBytes: policy.maxBytes, beforeMs: now - policy.maxAgeMs });
      outcome.removedBytes = r.removedBytes;
      size = r.sizeBefore - r.removedBytes;
      this.#reported.delete(app);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return outcome;
      const message = e instanceof TrimError ? `${e.message}; the log of ${app} is kept whole` : `cannot trim the log of ${app}: ${(e as Error).message}`;
      if (this.#reported.get(app) !== message) this.#options.log(`log retention: ${message}`);
      this.#reported.set(app, message);
    }
    outcome.removedRotated = await removeRotated(`${file}.1`, policy, size, now);
    return outcome;
  }
}

/** Removes the supervisor's older file when it is past the age limit or does not fit beside the log. */
async function removeRotated(file: string, policy: RetentionPolicy, logSize: number, now: number): Promise<boolean> {
  let st;
  try {
    st = await stat(file);
  } catch {
    return false;
  }
  if (st.mtimeMs >= now - policy.maxAgeMs && logSize + st.size <= policy.maxBytes) return false;
  await rm(file, { force: true });
  return true;
}
