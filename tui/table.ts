/** Columns laid out to a terminal's width, and the small number formats the screens share. */
import type { AppMetrics } from "./api-client.ts";

export interface Column<Row> {
  title: string;
  width: number;
  /** The column that takes the width the others leave (at least `width`). */
  grow?: boolean;
  align?: "left" | "right";
  cell: (row: Row) => string;
}

/** Cuts `text` to `width` characters, marking a cut with "…". */
export function truncateText(text: string, width: number): string {
  if (width <= 0) return "";
  return text.length <= width ? text : text.slice(0, Math.max(0, width - 1)) + "…";
}

/**
 * The header and rows as lines no wider than `width`: the growing column takes the spare room, and
 * when even the minimum widths do not fit, columns are dropped from the right.
 */
export function layoutTable<Row>(columns: readonly Column<Row>[], rows: readonly Row[], width: number): { header: string; lines: string[] } {
  let shown = [...columns];
  const total = (cs: Column<Row>[]) => cs.reduce((n, c) => n + c.width, 0) + Math.max(0, cs.length - 1);
  while (shown.length > 1 && total(shown) > width) shown = shown.slice(0, -1);
  const spare = Math.max(0, width - total(shown));
  const widths = shown.map((c) => (c.grow ? c.width + spare : c.width));
  const line = (cells: string[]) =>
    truncateText(cells.map((text, i) => {
      const cut = truncateText(text, widths[i]!);
      return shown[i]!.align === "right" ? cut.padStart(widths[i]!) : cut.padEnd(widths[i]!);
    }).join(" ").trimEnd(), width);
  return { header: line(shown.map((c) => c.title)), lines: rows.map((r) => line(shown.map((c) => c.cell(r)))) };
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${v >= 100 || u === 0 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

export function formatRate(perSecond: number | null | undefined): string {
  if (perSecond === null || perSecond === undefined) return "–";
  return perSecond >= 100 ? String(Math.round(perSecond)) : perSecond.toFixed(1);
}

export function formatMs(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? "–" : `${Math.round(ms)} ms`;
}

/** "3m ago", "2h ago", "5d ago" from an ISO time, against `now`. */
export function formatAge(iso: string | null | undefined, now: number): string {
  if (!iso) return "–";
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** The newest point of a series that has a value for `pick`. */
export function latestValue(metrics: AppMetrics | undefined, pick: (p: AppMetrics["points"][number]) => number | null): number | null {
  const points = metrics?.points ?? [];
  for (let i = points.length - 1; i >= 0; i--) {
    const v = pick(points[i]!);
    if (v !== null) return v;
  }
  return null;
}

/** Requests/s of all apps added up per step time (oldest first): the router's traffic as a series. */
export function sumRequests(all: readonly AppMetrics[]): number[] {
  const byTime = new Map<string, number>();
  for (const m of all) for (const p of m.points) byTime.set(p.at, (byTime.get(p.at) ?? 0) + p.requestsPerSecond);
  return [...byTime.entries()].sort((a, b) => Date.parse(a[0]) - Date.parse(b[0])).map(([, v]) => v);
}
