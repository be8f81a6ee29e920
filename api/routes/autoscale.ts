import { z } from "zod/v4";
import { AUTOSCALE_MAX_PROCESSES } from "../../core/index.ts";
import { autoscaleOf, disableAutoscale, setAutoscale } from "../../ops/autoscale.ts";
import { defineRoute } from "../registry.ts";
import { appName, appParams } from "../schemas.ts";

/** API routes for autoscaling an app's process types (the SSH ps:autoscale commands). */

const typeParams = z.object({ app: appName, type: z.string().regex(/^[a-z][a-z0-9_-]{0,30}$/, "a process type like web or worker") }).strict();

const settings = z.object({
  type: z.string(),
  min: z.number().int(),
  max: z.number().int(),
  p95Ms: z.number().nullable(),
  cpuPercent: z.number().nullable(),
  rps: z.number().nullable(),
  current: z.number().int(),
  updatedAt: z.string(),
});

const decision = z.object({
  at: z.string(),
  type: z.string(),
  direction: z.enum(["out", "in"]),
  from: z.number().int(),
  to: z.number().int(),
  reason: z.string(),
  status: z.enum(["scaling", "done", "failed"]),
  error: z.string().nullable(),
});

defineRoute({
  method: "get", path: "/apps/:app/autoscale", scope: "read", tag: "processes",
  summary: "The app's autoscaled process types (bounds, targets, processes now) and deck's last 20 decisions, newest first",
  params: appParams,
  response: z.object({ app: z.string(), intervalSeconds: z.number(), types: z.array(settings), decisions: z.array(decision) }),
  handler: async ({ deps, caller, params }) => autoscaleOf(deps, caller, params.app),
});

defineRoute({
  method: "put", path: "/apps/:app/autoscale/:type", scope: "write", tag: "processes",
  summary: `Autoscale a process type between min (at least 1) and max (at most ${AUTOSCALE_MAX_PROCESSES}) on at least one target: p95Ms and rps (web only), cpuPercent (percent of one core per process)`,
  params: typeParams,
  body: z.object({
    min: z.number().int().min(1),
    max: z.number().int().max(AUTOSCALE_MAX_PROCESSES),
    p95Ms: z.number().int().min(1).max(10_000).optional(),
    cpuPercent: z.number().positive().max(6400).optional(),
    rps: z.number().positive().max(1_000_000).optional(),
  }).strict(),
  response: settings,
  handler: async ({ deps, caller, params, body }) =>
    setAutoscale(deps, caller, params.app, { type: params.type, min: body.min, max: body.max, p95Ms: body.p95Ms ?? null, cpuPercent: body.cpuPercent ?? null, rps: body.rps ?? null }),
});

defineRoute({
  method: "delete", path: "/apps/:app/autoscale/:type", scope: "write", tag: "processes", summary: "Stop autoscaling a process type; its processes stay as they are",
  params: typeParams,
  response: z.object({ app: z.string(), type: z.string(), current: z.number().int() }),
  handler: async ({ deps, caller, params }) => disableAutoscale(deps, caller, params.app, params.type),
});
