import { z } from "zod/v4";
import { uptimeReport, UPTIME_DEFAULT_DAYS, UPTIME_MAX_DAYS } from "../../ops/uptime.ts";
import { appMetrics, parseSince } from "../../ops/metrics.ts";
import { defineRoute } from "../registry.ts";
import { appParams } from "../schemas.ts";

/** API routes for monitoring. */

const uptimeDay = z.object({
  day: z.string(), checks: z.number(), failures: z.number(), uptimePercent: z.number().nullable(),
  requests: z.number(), failedRequests: z.number(), availabilityPercent: z.number().nullable(),
});
const uptimeIncident = z.object({
  startedAt: z.string(), endedAt: z.string().nullable(), durationSeconds: z.number(), cause: z.string(), source: z.enum(["probe", "traffic"]),
  location: z.string().describe("'' for deck's own checks, HOST:PORT for a router node's"),
});

defineRoute({
  method: "get", path: "/apps/:app/uptime", scope: "read", tag: "monitoring",
  summary: "Uptime per UTC day from deck's probes of the app's health check path (newest first), over the period, and its incidents",
  params: appParams,
  query: z.object({ days: z.coerce.number().int().min(1).max(UPTIME_MAX_DAYS).default(UPTIME_DEFAULT_DAYS) }).strict(),
  response: z.object({
    app: z.string(), days: z.number(), checks: z.number(), failures: z.number(), uptimePercent: z.number().nullable(),
    requests: z.number(), failedRequests: z.number(), availabilityPercent: z.number().nullable(),
    daily: z.array(uptimeDay), incidents: z.array(uptimeIncident),
  }),
  handler: async ({ deps, caller, params, query }) => uptimeReport(deps, caller, params.app, query.days),
});

const metricPoint = z.object({
  at: z.string(), seconds: z.number(), release: z.number().nullable(), requestsPerSecond: z.number(), errorRate: z.number().nullable(),
  p50Ms: z.number().nullable(), p95Ms: z.number().nullable(), p99Ms: z.number().nullable(), cpu: z.number().nullable(), rssBytes: z.number().nullable(),
  memoryLimitBytes: z.number().nullable(), memoryUse: z.number().nullable(), restarts: z.number(), connections: z.number().nullable(),
  bytesInPerSecond: z.number(), bytesOutPerSecond: z.number(),
});

defineRoute({
  method: "get", path: "/apps/:app/metrics", scope: "read", tag: "monitoring",
  summary: "The app's requests/s, 5xx share, p50/p95/p99, CPU, memory, connections and restarts over a period, in steps (oldest first), and per process",
  params: appParams,
  query: z.object({
    since: z.string().max(20).default("1h"),
    step: z.coerce.number().int().min(10).max(31 * 86_400).optional(),
  }).strict(),
  response: z.object({
    app: z.string(), since: z.string(), until: z.string(), step: z.number(), resolution: z.number(),
    points: z.array(metricPoint), processes: z.record(z.string(), z.array(metricPoint)),
  }),
  handler: async ({ deps, caller, params, query }) => appMetrics(deps, caller, params.app, parseSince(query.since), query.step),
});
