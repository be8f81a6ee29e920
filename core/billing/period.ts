/** A billing period: from `start` (included) to `end` (excluded), ISO 8601 in UTC. */
export interface Period {
  start: string;
  end: string;
}

/** Timestamps must name their zone: a bare `2027-01-01T00:00:00` would be read in the server's local time. */
const ZONED = /(?:Z|[+-]\d\d:?\d\d)$/i;

/** The digits at [from, from + count) as a number, or -1 if any is not a digit. */
function readDigits(text: string, from: number, count: number): number {
  let v = 0;
  for (let i = from; i < from + count; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/**
 * `2027-01-05T13:00:00Z` or `2027-01-05T13:00:00.000Z` (what `toISOString` writes, so most of the
 * ledger), read without `Date.parse`, which costs several times more and runs once per ledger entry.
 * NaN for that form with a field out of range (`2027-02-30`, which `Date.parse` would roll over to
 * 2 March); undefined for any other form, which `Date.parse` then reads.
 */
function parseCanonicalInstant(iso: string): number | undefined {
  const n = iso.length;
  if ((n !== 20 && n !== 24) || iso.charCodeAt(n - 1) !== 90 /* Z */) return undefined;
  if (iso[4] !== "-" || iso[7] !== "-" || iso[10] !== "T" || iso[13] !== ":" || iso[16] !== ":" || (n === 24 && iso[19] !== ".")) return undefined;
  const year = readDigits(iso, 0, 4);
  const month = readDigits(iso, 5, 2);
  const day = readDigits(iso, 8, 2);
  const hour = readDigits(iso, 11, 2);
  const minute = readDigits(iso, 14, 2);
  const second = readDigits(iso, 17, 2);
  const ms = n === 24 ? readDigits(iso, 20, 3) : 0;
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59 || ms < 0) return NaN;
  const at = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  // Date.UTC rolls 31 April over to 1 May; such text is not an instant.
  return day <= 28 || new Date(at).getUTCDate() === day ? at : NaN;
}

/** Milliseconds since the epoch of an ISO 8601 instant; throws on text that is not one. */
export function parseInstant(iso: string, what: string): number {
  const canonical = parseCanonicalInstant(iso);
  if (canonical !== undefined && !Number.isNaN(canonical)) return canonical;
  const ms = canonical ?? Date.parse(iso);
  if (Number.isNaN(ms) || !ZONED.test(iso)) throw new RangeError(`${what}: ${JSON.stringify(iso)} is not an ISO 8601 instant with a zone`);
  return ms;
}

/** Rating splits time to the second: a plan change at 12:00:00.700 takes effect from 12:00:00. */
export function floorToSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

/** The period's bounds in milliseconds (whole seconds); throws unless end is after start. */
export function parsePeriod(period: Period): { startMs: number; endMs: number } {
  const startMs = floorToSecond(parseInstant(period.start, "period start"));
  const endMs = floorToSecond(parseInstant(period.end, "period end"));
  if (endMs <= startMs) throw new RangeError(`period end ${period.end} is not after its start ${period.start}`);
  return { startMs, endMs };
}

/** The calendar month (UTC) that `at` falls in: deck's monthly billing period. */
export function toMonthlyPeriod(at: string): Period {
  const d = new Date(parseInstant(at, "instant"));
  return {
    start: new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)).toISOString(),
    end: new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)).toISOString(),
  };
}
