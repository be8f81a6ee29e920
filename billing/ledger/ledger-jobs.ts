/**
 * The usage ledger's periodic jobs, every 5 minutes on every deck server: each job's run takes a
 * PostgreSQL advisory lock for its transaction, so one server at a time does it and the others skip
 * that run. Everything recorded is keyed (see store/queries/billing-ledger.ts): a run repeated after a
 * restart or a database outage adds only what is missing.
 *
 * - builds: the build time of finished builds without a ledger entry. Finishing a build records it in
 *   the same transaction; this is the safety net for builds finished by older deck code.
 * - storage: each app's bytes once per clock hour (storage-usage.ts).
 * - domains: each custom domain once per UTC day (domain-usage.ts).
 *
 * Bandwidth is recorded with the router's counts as they are saved (saveUsageBatch).
 */
import type { DatabasePool } from "slonik";
import { Periodic } from "../../core/index.ts";
import { recordBuildUsage, tryLedgerJobLock, type Db } from "../../store/queries/index.ts";
import { recordDomainUsage } from "./domain-usage.ts";
import { recordStorageUsage } from "./storage-usage.ts";
import { DAY_MS } from "./usage-series.ts";

export interface LedgerJobsOptions {
  db: DatabasePool;
  /** deck's data dir: app repositories and build artifacts are measured under it. */
  dataDir: string;
  log(line: string): void;
  /** Between runs; 5 minutes by default. */
  intervalMs?: number;
  /** The bytes of an app's Docker images; null when the runtime is not Docker. */
  imageBytes?(app: string): Promise<number | null>;
}

/**
 * How far back the sweeper looks for builds without an entry: builds finished earlier belong to
 * periods already invoiced, where an entry would change nothing billed.
 */
const SWEEP_BUILDS_MS = 35 * DAY_MS;

export type LedgerJobName = "builds" | "storage" | "domains";

/** The second key of each job's advisory lock (tryLedgerJobLock). */
export const LEDGER_JOB_LOCKS: Readonly<Record<LedgerJobName, number>> = { builds: 1, storage: 2, domains: 3 };

export class LedgerJobs {
  private readonly periodic: Periodic;
  /** The last error of each kind of trouble, so a database away for an hour says so once. */
  private readonly trouble = new Map<string, string>();

  constructor(private readonly options: LedgerJobsOptions) {
    // Each job reports its own trouble (runJobs never rejects), so the runner has none to report.
    this.periodic = new Periodic({ intervalMs: options.intervalMs ?? 5 * 60_000, run: (now) => this.runJobs(now), onTrouble: (m) => options.log(`ledger: ${m}`) });
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One run of every job, as of `now`; one run at a time. Never rejects: trouble goes to the log. */
  tick(now = new Date()): Promise<void> {
    return this.periodic.tick(now);
  }

  private async runJobs(now: Date): Promise<void> {
    const { log, dataDir, imageBytes } = this.options;
    await this.run("builds", async (tx) => {
      const added = await recordBuildUsage(tx, { finishedSince: new Date(now.getTime() - SWEEP_BUILDS_MS) });
      if (added > 0) log(`ledger: recorded the build time of ${added} finished build(s) that had no ledger entry`);
    });
    await this.run("storage", (tx) =>
      recordStorageUsage(tx, {
        dataDir, now, ...(imageBytes ? { imageBytes: (app: string) => imageBytes(app) } : {}),
        onAppError: (app, e) => this.report(`storage of ${app.name}`, e),
        onAppMeasured: (app) => this.clear(`storage of ${app.name}`),
      }),
    );
    await this.run("domains", (tx) => recordDomainUsage(tx, now));
  }

  private async run(job: LedgerJobName, work: (tx: Db) => Promise<unknown>): Promise<void> {
    try {
      await this.options.db.transaction(async (tx) => {
        if (await tryLedgerJobLock(tx, LEDGER_JOB_LOCKS[job])) await work(tx);
      });
      this.clear(job);
    } catch (e) {
      this.report(job, e as Error);
    }
  }

  private report(kind: string, e: Error): void {
    if (this.trouble.get(kind) !== e.message) this.options.log(`ledger: ${kind}: ${e.message} (tried again every run)`);
    this.trouble.set(kind, e.message);
  }

  private clear(kind: string): void {
    if (this.trouble.delete(kind)) this.options.log(`ledger: ${kind} recorded again`);
  }
}
