/**
 * Whether an org may build now (deploy's `admitBuild`): a plan without a fee (Free) stops at its build
 * minutes for the month; any org with a spend cap stops building once the month's cost so far reached
 * it. Paid plans otherwise build on and pay for the minutes beyond their allowance.
 */
import { formatDollars, planInForce, startingPlan, toMonthlyPeriod } from "../../core/index.ts";
import { loadBillingAccount, loadCatalogue, planHistoryOf, q, usageTotals, type AppRow, type Db } from "../../store/queries/index.ts";
import { usageNow } from "./usage-now.ts";

export async function admitBuild(db: Db, app: AppRow, now = new Date()): Promise<string | null> {
  const slug = String(await db.oneFirst(q`SELECT slug FROM organizations WHERE id = ${app.orgId}`));
  const catalogue = await loadCatalogue(db);
  const plan = planInForce(catalogue, await planHistoryOf(db, app.orgId, startingPlan(catalogue).code), now.getTime());
  const allowed = plan.allowances.build_minutes ?? (plan.allowances.build_minutes === null ? null : 0);
  if (plan.monthlyCents === 0 && !plan.custom && allowed !== null) {
    const period = toMonthlyPeriod(now.toISOString());
    const seconds = (await usageTotals(db, app.orgId, period.start, period.end)).filter((t) => t.meter === "build_seconds").reduce((a, t) => a + t.quantity, 0n);
    const used = Number(seconds) / 60;
    if (used >= allowed) {
      return `${slug} has used ${used.toFixed(1)} of the ${allowed.toLocaleString("en-US")} build minutes its ${plan.name} plan includes this month; ` +
        `an owner can upgrade with billing:plan ${slug} pro (billing:plans lists the plans)`;
    }
  }
  // Rating the month so far costs more: only for an org with a cap.
  const account = await loadBillingAccount(db, app.orgId);
  if (account.spendCapCents !== null) {
    const spent = (await usageNow(db, app.orgId, now)).spentCents;
    if (spent >= account.spendCapCents) {
      return `${slug} has reached its spend cap: ${formatDollars(spent)} of ${formatDollars(account.spendCapCents)} this month, so builds stop until next month; ` +
        `an owner can raise it with billing:cap ${slug} AMOUNT`;
    }
  }
  return null;
}
