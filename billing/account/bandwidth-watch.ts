/**
 * Bandwidth on a plan without a fee (Free) is not billed past the allowance: the org's apps are
 * throttled instead. Each round, every org on such a plan whose bandwidth this month reached the plan's
 * allowance has its apps limited to DECK_FREE_THROTTLE bytes per second through the router (and its
 * channels get one notice a month); every app throttled that should not be any more (a new month, an
 * upgrade, a larger allowance) is let go. One deck server at a time does the round.
 */
import { hostname } from "node:os";
import { planInForce, startingPlan, toMonthlyPeriod, type Notice } from "../../core/index.ts";
import { BillingRound } from "./billing-round.ts";
import { enqueueNotice, loadCatalogue, planHistoryOf, q, setAppThrottle, usageTotals, type Db } from "../../store/queries/index.ts";

export interface BandwidthWatchOptions {
  db: Db;
  log(line: string): void;
  intervalMs: number;
  /** Bytes per second a throttled app gets (DECK_FREE_THROTTLE). */
  throttleBytesPerSecond: number;
  /** Sends the app's route again so the routers apply its new limit. */
  applyRoute(app: string): Promise<void>;
  sshHost: string;
  sshPort: number;
}

/** Advisory lock of a round (one server at a time). */
const ROUND_LOCK = 4_711_031;

export class BandwidthWatch extends BillingRound {
  constructor(private readonly o: BandwidthWatchOptions) {
    super("checking Free bandwidth", o.intervalMs, o.log);
  }

  protected async check(now: Date): Promise<void> {
    const changed = await this.o.db.transaction(async (tx) => {
      if (!(await tx.oneFirst(q`SELECT pg_try_advisory_xact_lock(${ROUND_LOCK})`))) return [];
      const catalogue = await loadCatalogue(tx);
      const period = toMonthlyPeriod(now.toISOString());
      const over = new Map<number, { slug: string; usedGb: number; allowedGb: number }>();
      const orgs = await tx.any(q`SELECT id, slug FROM organizations ORDER BY id`);
      for (const org of orgs) {
        const history = await planHistoryOf(tx, Number(org.id), startingPlan(catalogue).code);
        const plan = planInForce(catalogue, history, now.getTime());
        const allowed = plan.allowances.bandwidth_gb;
        if (plan.monthlyCents > 0 || plan.custom || allowed === null || allowed === undefined) continue;
        const bytes = (await usageTotals(tx, Number(org.id), period.start, period.end)).filter((t) => t.meter === "bandwidth_bytes").reduce((a, t) => a + t.quantity, 0n);
        if (Number(bytes) >= allowed * 1e9) over.set(Number(org.id), { slug: String(org.slug), usedGb: Number(bytes) / 1e9, allowedGb: allowed });
      }
      const apps = await tx.any(q`SELECT id, name, org_id, throttle_bytes_per_second FROM apps`);
      const out: Array<{ appId: number; app: string; orgId: number; throttled: boolean }> = [];
      for (const a of apps) {
        const want = over.has(Number(a.org_id)) ? this.o.throttleBytesPerSecond : null;
        const has = a.throttle_bytes_per_second == null ? null : Number(a.throttle_bytes_per_second);
        if (want === has) continue;
        if (await setAppThrottle(tx, Number(a.id), want)) out.push({ appId: Number(a.id), app: String(a.name), orgId: Number(a.org_id), throttled: want !== null });
      }
      const key = period.start.slice(0, 7);
      for (const [orgId, o] of over) {
        if (!out.some((c) => c.orgId === orgId && c.throttled)) continue;
        await enqueueNotice(tx, this.notice(orgId, o, key, now));
      }
      return out;
    });
    for (const c of changed) {
      this.o.log(`billing: ${c.app} ${c.throttled ? `throttled to ${this.o.throttleBytesPerSecond} bytes/s: its org used its Free bandwidth this month` : "no longer throttled"}`);
      await this.o.applyRoute(c.app).catch((e: Error) => this.o.log(`billing: could not send ${c.app}'s route with its new limit (sent again with the next deploy or restart): ${e.message}`));
    }
  }

  private notice(orgId: number, o: { slug: string; usedGb: number; allowedGb: number }, month: string, now: Date): Notice {
    const kib = Math.round(this.o.throttleBytesPerSecond / 1024);
    return {
      key: `billing:throttle:${o.slug}:${month}`, status: "firing", orgId, org: o.slug, app: "", host: hostname(),
      rule: "free_bandwidth", value: `${o.usedGb.toFixed(1)} GB of ${o.allowedGb} GB`,
      summary: `${o.slug} used the ${o.allowedGb} GB of bandwidth its plan includes this month; its apps are throttled to ${kib} KiB/s until the month ends or an owner upgrades (billing:plan ${o.slug} pro)`,
      startsAt: now.toISOString(), command: `ssh deck@${this.o.sshHost} -p ${this.o.sshPort} billing:usage ${o.slug}`,
    };
  }
}
