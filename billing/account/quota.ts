/**
 * Whether an org may build now (deploy's `admitBuild`): a plan without a fee (Free) stops at its build
 * minutes for the month; any org with a spend cap stops building once the month's cost so far reached
 * it. Paid plans otherwise build on and pay for the minutes beyond their allowance.
 */
import { formatDollars, toMonthlyPeriod } from "../../core/index.ts";
import { loadBillingAccount, q, usageTotals, type AppRow, type Db } from "../../store/queries/index.ts";
import { usageNow } from "./usage-now.ts";

export async function admitBuild(db: Db, app: AppRow, now = new Date()): Promise<string | null> {
  const org = { slug: String(await db.oneFirst(q`SELECT slug FROM organizations WHERE id = ${app.orgId}`)) };
  const account = await loadBillingAccount(db, app.orgId);
  const u = await usageNow(db, app.orgId, now);
  const allowed = u.plan.allowances.build_minutes;
  if (u.plan.monthlyCents === 0 && !u.plan.custom && allowed !== null) {
    const period = toMonthlyPeriod(now.toISOString());
    const seconds = (await usageTotals(db, app.orgId, period.start, period.end)).filter((t) => t.meter === "build_seconds").reduce((a, t) => a + t.quantity, 0n);
    const used = Number(seconds) / 60;
    if (used >= (allowed ?? 0)) {
      return `${org.slug} has used ${used.toFixed(1)} of the ${(allowed ?? 0).toLocaleString("en-US")} build minutes its ${u.plan.name} plan includes this month; ` +
        `an owner can upgrade with billing:plan ${org.slug} pro (billing:plans lists the plans)`;
    }
  }
  if (account.spendCapCents !== null) {
    const spent = u.spentCents;
    if (spent >= account.spendCapCents) {
      return `${org.slug} has reached its spend cap: ${formatDollars(spent)} of ${formatDollars(account.spendCapCents)} this month, so builds stop until next month; ` +
        `an owner can raise it with billing:cap ${org.slug} AMOUNT`;
    }
  }
  return null;
}
