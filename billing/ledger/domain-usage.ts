/**
 * The custom-domain meter: one domain-day for each UTC day a custom domain existed, key
 * `domain:<domainId>:<YYYY-MM-DD>`.
 */
import { listMeteredDomains, recordUsage, type Db, type NewUsageEntry } from "../../store/queries/index.ts";
import { DAY_MS, findFirstUnrecorded, GAP_FILL_MS, listSlots } from "./usage-series.ts";

export const makeDomainKey = (domainId: number, dayMs: number) => `domain:${domainId}:${new Date(dayMs).toISOString().slice(0, 10)}`;

/**
 * Records the days each custom domain lacks. Domains carry no creation time, so a domain's first day
 * is the day this job first saw it, its entry dated then; after a gap (deck was down, the database
 * away) every day since its newest entry is filled, at most 7 days back, each dated at the day's start.
 * Returns how many entries were new.
 */
export async function recordDomainUsage(db: Db, now: Date): Promise<number> {
  const nowMs = now.getTime();
  const domains = await listMeteredDomains(db);
  const slotsOf = domains.map((d) => listSlots(Math.max(Date.parse(d.app.createdAt), nowMs - GAP_FILL_MS), nowMs, DAY_MS));
  const first = await findFirstUnrecorded(db, domains.map((d, i) => slotsOf[i]!.map((day) => makeDomainKey(d.id, day))));
  const entries: NewUsageEntry[] = [];
  for (const [i, d] of domains.entries()) {
    const slots = slotsOf[i]!;
    const base = { orgId: d.app.orgId, appId: d.app.id, app: d.app.name, meter: "domain_days" as const, quantity: 1 };
    if (first[i] === 0) {
      // Never recorded (none in the window): seen for the first time now.
      const today = slots.at(-1);
      if (today !== undefined) entries.push({ ...base, key: makeDomainKey(d.id, today), at: now });
      continue;
    }
    for (const day of slots.slice(first[i])) entries.push({ ...base, key: makeDomainKey(d.id, day), at: new Date(day) });
  }
  return recordUsage(db, entries);
}
