import { Periodic, toMonthlyPeriod, type Period } from "../../core/index.ts";
import { listOrgsWithoutInvoice, tryInvoiceJobLock, type Db } from "../../store/queries/index.ts";
import { closePeriod } from "./close-period.ts";

export interface InvoiceJobsOptions {
  db: Db;
  log(line: string): void;
  /** Between passes (default ten minutes). */
  intervalMs?: number;
  /**
   * How long after a month ends its invoices are written (default one hour): usage saved late (a
   * router node's batch, a build that finished at midnight) is in the ledger by then.
   */
  graceMs?: number;
  now?: () => Date;
}

/** What one pass did (for tests and the log). */
export interface InvoicePass {
  period: Period;
  opened: string[];
  nothingToBill: number;
  failed: number;
  /** Another deck server held the job's lock, so this one left the pass to it. */
  skipped: boolean;
}

/** Orgs closed per transaction: the job's lock is held per batch, and each batch's invoices commit together. */
const BATCH = 50;

/** The last billing month that ended at least `graceMs` before `now`. */
export function pickPeriodToClose(now: Date, graceMs: number): Period {
  const current = toMonthlyPeriod(new Date(now.getTime() - graceMs).toISOString());
  const start = new Date(current.start);
  return { start: new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() - 1, 1)).toISOString(), end: current.start };
}

/**
 * Writes the monthly invoices: every ten minutes, each org without an invoice for the last month that
 * ended (an hour ago or more) gets one (`closePeriod`). One deck server at a time does it, under an
 * advisory lock; the others skip. A pass that covered every org is not repeated until the next month.
 */
export class InvoiceJobs {
  readonly #o: InvoiceJobsOptions;
  readonly #periodic: Periodic;
  /** The start of the last period this server finished: later passes have nothing left to do for it. */
  #finished: string | null = null;

  constructor(options: InvoiceJobsOptions) {
    this.#o = options;
    this.#periodic = new Periodic({
      intervalMs: options.intervalMs ?? 600_000, run: async () => void (await this.runOnce()),
      onTrouble: (m) => options.log(`invoices: a pass failed: ${m}`),
    });
  }

  /** Runs a pass now and then every interval, until stop. */
  start(): void {
    this.#periodic.start();
  }

  /** Stops the timer and waits for a pass in progress. */
  stop(): Promise<void> {
    return this.#periodic.stop();
  }

  /** One pass: closes the last ended period for every org still without its invoice. */
  async runOnce(): Promise<InvoicePass> {
    const now = this.#o.now?.() ?? new Date();
    const period = pickPeriodToClose(now, this.#o.graceMs ?? 3_600_000);
    const pass: InvoicePass = { period, opened: [], nothingToBill: 0, failed: 0, skipped: false };
    if (this.#finished === period.start) return pass;
    let afterId = 0;
    for (;;) {
      const batch = await this.#o.db.transaction(async (tx) => {
        if (!(await tryInvoiceJobLock(tx))) return null;
        const orgIds = await listOrgsWithoutInvoice(tx, { period, afterId, limit: BATCH });
        for (const orgId of orgIds) await this.#closeOne(tx, { orgId, period, now, pass });
        return orgIds;
      });
      if (batch === null) {
        pass.skipped = true;
        return pass;
      }
      if (batch.length < BATCH) break;
      afterId = batch.at(-1)!;
    }
    if (pass.opened.length) this.#o.log(`invoices: opened ${pass.opened.length} for ${period.start.slice(0, 7)} (${pass.opened[0]}…${pass.opened.at(-1)})`);
    if (pass.failed === 0) this.#finished = period.start;
    return pass;
  }

  /** One org, in a savepoint of the batch: its failure is logged and undone, and the others go on. */
  async #closeOne(tx: Db, c: { orgId: number; period: Period; now: Date; pass: InvoicePass }): Promise<void> {
    try {
      const r = await closePeriod(tx, { orgId: c.orgId, period: c.period, now: c.now });
      if (r.outcome === "opened") c.pass.opened.push(r.invoice.number);
      else if (r.outcome === "nothing_to_bill") c.pass.nothingToBill++;
    } catch (e) {
      c.pass.failed++;
      this.#o.log(`invoices: cannot close ${c.period.start.slice(0, 7)} for org ${c.orgId}: ${(e as Error).message}`);
    }
  }
}
