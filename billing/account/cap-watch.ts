/**
 * Spend caps (billing:cap): each round, every org with a cap has its month so far rated; at 80% and at
 * 100% of the cap its notification channels get one notice each month (the outbox of monitor/notify;
 * markCapNotice makes it once however many servers look). At 100% builds stop (quota.ts admitBuild).
 */
import { hostname } from "node:os";
import { formatDollars, toMonthlyPeriod, type Notice } from "../../core/index.ts";
import { enqueueNotice, markCapNotice, q, type Db } from "../../store/queries/index.ts";
import { BillingRound } from "./billing-round.ts";
import { usageNow } from "./usage-now.ts";

export const CAP_THRESHOLDS = [80, 100] as const;

export interface CapWatchOptions {
  db: Db;
  log(line: string): void;
  intervalMs: number;
  /** Where users look further: `ssh deck@HOST -p PORT billing:usage ORG`. */
  sshHost: string;
  sshPort: number;
}

export class CapWatch extends BillingRound {
  constructor(private readonly o: CapWatchOptions) {
    super("checking spend caps", o.intervalMs, o.log);
  }

  protected async check(now: Date): Promise<void> {
    const orgs = await this.o.db.any(q`SELECT a.org_id, a.spend_cap_cents, o.slug FROM billing_accounts a JOIN organizations o ON o.id = a.org_id
      WHERE a.spend_cap_cents IS NOT NULL`);
    const periodKey = toMonthlyPeriod(now.toISOString()).start.slice(0, 7);
    for (const row of orgs) {
      const orgId = Number(row.org_id);
      const cap = Number(row.spend_cap_cents);
      const slug = String(row.slug);
      // One org whose month cannot be rated (a plan the catalogue lost) must not keep the others' notices back.
      const spent = await usageNow(this.o.db, orgId, now).then((u) => u.spentCents, (e: Error) => {
        this.o.log(`billing: cannot rate ${slug}'s month for its spend cap: ${e.message}`);
        return null;
      });
      if (spent === null) continue;
      for (const threshold of CAP_THRESHOLDS) {
        if (spent * 100 < cap * threshold) continue;
        if (!(await markCapNotice(this.o.db, orgId, periodKey, threshold))) continue;
        this.o.log(`billing: ${slug} reached ${threshold}% of its spend cap (${formatDollars(spent)} of ${formatDollars(cap)})`);
        await enqueueNotice(this.o.db, capNotice({ orgId, slug, spent, cap, threshold, periodKey, now, ...this.o }));
      }
    }
  }
}

function capNotice(n: { orgId: number; slug: string; spent: number; cap: number; threshold: number; periodKey: string; now: Date; sshHost: string; sshPort: number }): Notice {
  const stops = n.threshold >= 100 ? "; builds stop until next month or until an owner raises the cap" : "";
  return {
    key: `billing:cap:${n.slug}:${n.periodKey}:${n.threshold}`, status: "firing", orgId: n.orgId, org: n.slug, app: "", host: hostname(),
    rule: `spend_cap ${n.threshold}%`, value: `${formatDollars(n.spent)} of ${formatDollars(n.cap)}`,
    summary: `${n.slug} has used ${n.threshold}% of its ${formatDollars(n.cap)} monthly spend cap (${formatDollars(n.spent)} so far)${stops}`,
    startsAt: n.now.toISOString(), command: `ssh deck@${n.sshHost} -p ${n.sshPort} billing:usage ${n.slug}`,
  };
}
