import { METERS } from "./catalogue.ts";
import { formatDecimal, parseDecimal, toRational } from "./rational.ts";
import type { InvoiceLine, UsageLine } from "./rating.ts";

/** "1234.5" → "1,234.5": a billing quantity as an invoice shows it. */
export function formatQuantity(decimal: string): string {
  const [whole, fraction] = decimal.split(".");
  const grouped = whole!.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return fraction ? `${grouped}.${fraction}` : grouped;
}

/** Cents as dollars, to the cent and further when a unit price has fractions of a cent: 1 → "$0.01", 0.5 → "$0.005". */
export function formatDollars(cents: number): string {
  const negative = cents < 0;
  const exact = parseDecimal(Math.abs(cents));
  const dollars = formatDecimal(toRational(exact.n, exact.d * 100n), 8);
  const [whole, fraction = ""] = dollars.split(".");
  return `${negative ? "-" : ""}$${formatQuantity(whole!)}.${fraction.padEnd(2, "0")}`;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** "11 Jan 2027 12:00 UTC"; midnight as the date alone. */
function formatInstant(iso: string): string {
  const d = new Date(iso);
  const day = `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}`;
  if (d.getUTCHours() === 0 && d.getUTCMinutes() === 0 && d.getUTCSeconds() === 0) return day;
  const hm = `${String(d.getUTCHours()).padStart(2, "0")}:${String(d.getUTCMinutes()).padStart(2, "0")}`;
  return `${day} ${hm}${d.getUTCSeconds() ? `:${String(d.getUTCSeconds()).padStart(2, "0")}` : ""} UTC`;
}

/** " (11 Jan 2027 12:00 UTC to 1 Feb 2027)" for part of a period; nothing for all of it. */
function describeSpan(line: { from: string; to: string; seconds: number; periodSeconds: number }): string {
  return line.seconds === line.periodSeconds ? "" : ` (${formatInstant(line.from)} to ${formatInstant(line.to)})`;
}

/** The unit after a quantity: "1 domain-month", "2 domain-months"; the others read the same either way. */
function pickUnit(line: UsageLine, quantity: string): string {
  return quantity === "1" ? line.unit.replace(/s$/, "") : line.unit;
}

function describeUsage(line: UsageLine): string {
  const { label } = METERS[line.meter];
  const span = describeSpan(line);
  const plan = line.planName;
  if (line.allowance === null) return `${label}, unlimited on the ${plan} plan${span}: ${formatQuantity(line.used)} ${pickUnit(line, line.used)}`;
  if (line.overage !== "0" || line.amountCents > 0) {
    const price = `${formatQuantity(line.overage)} ${pickUnit(line, line.overage)} × ${formatDollars(line.unitCents)}`;
    return line.allowance === "0" ? `${label} on the ${plan} plan${span}: ${price}` : `${label} over the ${plan} allowance${span}: ${price}`;
  }
  if (line.allowance === "0") return `${label} on the ${plan} plan${span}: 0 ${line.unit}`;
  return `${label} within the ${plan} allowance${span}: ${formatQuantity(line.used)} of ${formatQuantity(line.allowance)} ${pickUnit(line, line.allowance)}`;
}

/**
 * One line of plain text saying what an invoice line charges for, shared by the PDF, the web page and
 * `billing:invoice` so they never disagree: "Build minutes over the Pro allowance: 1,234.5 min × $0.01".
 * The amount is not part of it; every face shows it in its own column.
 */
export function describeLine(line: InvoiceLine): string {
  switch (line.kind) {
    case "fee":
      return line.seconds === line.periodSeconds
        ? `${line.planName} plan, monthly fee`
        : `${line.planName} plan${describeSpan(line)}, ${formatQuantity(formatDecimal(toRational(line.seconds, 86_400), 2))} of ${formatQuantity(formatDecimal(toRational(line.periodSeconds, 86_400), 2))} days of the ${formatDollars(line.monthlyCents)} monthly fee`;
    case "usage":
      return describeUsage(line);
    case "credit":
      return line.unusedCents > 0
        ? `Credit: ${line.reason} (${formatDollars(-line.amountCents)} of ${formatDollars(line.grantedCents)} used, ${formatDollars(line.unusedCents)} left)`
        : `Credit: ${line.reason}`;
  }
}
