import { DeckError } from "../core/index.ts";
import { formatUptimeDuration, formatUptimePercent, uptimeReport, UPTIME_DEFAULT_DAYS, UPTIME_MAX_DAYS } from "../ops/uptime.ts";
import { appMetrics, parseSince } from "../ops/metrics.ts";
import { sparkline, type MetricPoint } from "../core/index.ts";
import { defineCommands, pad } from "./command-kit.ts";

const mb = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MB`;
const fixed = (n: number | null, digits: number, unit = "") => (n === null ? "-" : `${n.toFixed(digits)}${unit}`);
const percent = (n: number | null) => (n === null ? "-" : `${(n * 100).toFixed(1)}%`);

/** One row of `metrics`: the latest value, the average and the highest over the period (and a sparkline on a terminal). */
function metricRow(label: string, points: readonly MetricPoint[], pick: (p: MetricPoint) => number | null, show: (n: number | null) => string, tty: boolean): string[] {
  const values = points.map(pick);
  const present = values.filter((v): v is number => v !== null);
  const avg = present.length ? present.reduce((a, b) => a + b, 0) / present.length : null;
  const max = present.length ? Math.max(...present) : null;
  const latest = [...values].reverse().find((v) => v !== null) ?? null;
  return [label, show(latest), show(avg), show(max), ...(tty ? [sparkline(values)] : [])];
}

const durationText = (s: number) => (s % 86_400 === 0 ? `${s / 86_400}d` : s % 3600 === 0 ? `${s / 3600}h` : s % 60 === 0 ? `${s / 60}m` : `${s}s`);

/** SSH commands for metrics, uptime and alerts. */
defineCommands({
  metrics: {
    usage: "metrics APP [--since 1h] [--step SECONDS] [--json]", help: "an app's requests, errors, latency, CPU, memory and restarts (sparklines under ssh -t)", flags: ["--since", "--step"], bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const usage = "metrics APP [--since 1h] [--step SECONDS] [--json]";
      const name = args.app(usage);
      const since = parseSince(String(args.flags.get("--since") ?? "1h"));
      const rawStep = args.flags.get("--step");
      if (rawStep !== undefined && !/^\d{1,7}$/.test(String(rawStep))) throw new DeckError("bad_argument", `--step takes a number of seconds; usage: ${usage}`);
      const m = await appMetrics(deps, caller, name, since, rawStep === undefined ? undefined : Number(rawStep));
      if (args.json) return io.out(JSON.stringify(m));
      const tty = io.tty === true;
      const release = [...m.points].reverse().find((p) => p.release !== null)?.release;
      io.out(`${m.app}: last ${durationText(since)} in ${durationText(m.step)} steps${release ? `, v${release} live` : ""}`);
      if (m.points.length === 0) return io.out("no samples in this period yet (deck samples running apps every DECK_METRICS_INTERVAL seconds)");
      const p = m.points;
      const latestMemory = [...p].reverse().find((x) => x.rssBytes !== null);
      const rows = [
        ["", "LATEST", "AVERAGE", "HIGHEST", ...(tty ? [""] : [])],
        metricRow("requests/s", p, (x) => x.requestsPerSecond, (n) => fixed(n, 2), tty),
        metricRow("5xx", p, (x) => x.errorRate, percent, tty),
        metricRow("p50", p, (x) => x.p50Ms, (n) => fixed(n, 0, " ms"), tty),
        metricRow("p95", p, (x) => x.p95Ms, (n) => fixed(n, 0, " ms"), tty),
        metricRow("p99", p, (x) => x.p99Ms, (n) => fixed(n, 0, " ms"), tty),
        metricRow("cpu (cores)", p, (x) => x.cpu, (n) => fixed(n, 3), tty),
        metricRow("memory", p, (x) => x.rssBytes, (n) => (n === null ? "-" : mb(n)), tty),
        metricRow("memory of limit", p, (x) => x.memoryUse, percent, tty),
        metricRow("connections", p, (x) => x.connections, (n) => fixed(n, 0), tty),
        metricRow("restarts", p, (x) => x.restarts, (n) => fixed(n, 0), tty),
      ];
      for (const l of pad(rows)) io.out(l);
      const restarts = p.reduce((a, x) => a + x.restarts, 0);
      io.out(`restarts in the period: ${restarts}; memory now ${latestMemory ? mb(latestMemory.rssBytes!) : "-"}${latestMemory?.memoryLimitBytes ? ` of ${mb(latestMemory.memoryLimitBytes)}` : ""}`);
      const procs = Object.entries(m.processes);
      if (procs.length === 0) return;
      io.out("");
      const last = (pts: MetricPoint[]) => [...pts].reverse()[0];
      for (const l of pad([["PROCESS", "CPU", "MEMORY", "OF LIMIT", "CONNECTIONS", "RESTARTS"], ...procs.map(([proc, pts]) => {
        const x = last(pts);
        return [proc, fixed(x?.cpu ?? null, 3), x?.rssBytes != null ? mb(x.rssBytes) : "-", percent(x?.memoryUse ?? null), fixed(x?.connections ?? null, 0), String(pts.reduce((a, y) => a + y.restarts, 0))];
      })])) io.out(l);
    },
  },
  uptime: {
    usage: "uptime APP [--days N] [--json]", help: "an app's uptime per UTC day (deck probes its health check path through the router) and its incidents", flags: ["--days"], bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const usage = `uptime APP [--days ${UPTIME_DEFAULT_DAYS}] [--json]`;
      const name = args.app(usage);
      const raw = args.flags.get("--days");
      const days = raw === undefined ? UPTIME_DEFAULT_DAYS : Number(raw);
      if (!Number.isInteger(days) || days < 1 || days > UPTIME_MAX_DAYS) throw new DeckError("bad_argument", `--days must be a whole number of days from 1 to ${UPTIME_MAX_DAYS}; usage: ${usage}`);
      const r = await uptimeReport(deps, caller, name, days);
      if (args.json) return io.out(JSON.stringify(r));
      const time = (iso: string) => iso.slice(0, 19).replace("T", " ");
      io.out(r.uptimePercent === null
        ? `${r.app}: no checks in the last ${r.daily.length} day(s) yet (deck checks apps that run a live release, unless stopped or in maintenance)`
        : `${r.app}: ${formatUptimePercent(r.uptimePercent)} up over the last ${r.daily.length} day(s) (${r.checks} checks, ${r.failures} failed)`);
      if (r.availabilityPercent !== null) io.out(`requests answered without a 5xx: ${formatUptimePercent(r.availabilityPercent)} (${r.requests - r.failedRequests} of ${r.requests})`);
      for (const l of pad([["DAY (UTC)", "UPTIME", "CHECKS", "FAILED", "SERVED", "REQUESTS"], ...r.daily.map((d) => [
        d.day, formatUptimePercent(d.uptimePercent), String(d.checks), String(d.failures), formatUptimePercent(d.availabilityPercent), String(d.requests),
      ])])) io.out(l);
      io.out("");
      if (r.incidents.length === 0) return io.out("no incidents");
      io.out(`incidents, newest first (UTC):`);
      const seenBy = (i: (typeof r.incidents)[number]) => (i.source === "traffic" ? "its requests" : i.location === "" ? "deck's checks" : `checks via router ${i.location}`);
      for (const l of pad([["STARTED", "ENDED", "DURATION", "SEEN IN", "CAUSE"], ...r.incidents.map((i) => [
        time(i.startedAt), i.endedAt ? time(i.endedAt) : "ongoing", formatUptimeDuration(i.durationSeconds), seenBy(i), i.cause,
      ])])) io.out(l);
    },
  },
});
