import { z } from "zod/v4";
import { DeckError, isRateLimitRps, RATE_LIMIT_ALLOWED, RATE_LIMIT_RPS_MIN } from "../../core/index.ts";
import {
  maintenanceReport, parseBodySize, routerReport, ROUTER_LIMITS, setMaintenance, setRouterSettings, startApp, stopApp, type RouterSettingsChange,
} from "../../ops/index.ts";
import { defineRoute } from "../registry.ts";
import { appParams, outputLines } from "../schemas.ts";

/** Maintenance mode, ps:stop / ps:start and router settings: the same operations as the SSH commands. */

const settingView = z.object({
  key: z.string().describe("the setting's name in `router:set`"),
  value: z.union([z.number(), z.boolean()]).describe("the value in effect"),
  default: z.boolean().describe("true when the app has no value of its own (the server default applies, unless derivedFrom says otherwise)"),
  derivedFrom: z.literal("rate-limit").optional()
    .describe("set when the value follows from the app's own rate-limit: with no rate-burst of its own, an app that sets rate-limit gets twice it (at least 1)"),
});

const routerReportSchema = z.object({
  app: z.string(),
  maintenance: z.boolean(),
  stopped: z.boolean(),
  settings: z.object({
    rateLimitRps: settingView, rateLimitBurst: settingView, maxBodyBytes: settingView, redirectHttps: settingView, hsts: settingView,
  }),
});

const maintenanceState = z.object({ app: z.string(), maintenance: z.boolean(), stopped: z.boolean() });

defineRoute({
  method: "get", path: "/apps/:app/router", scope: "read", tag: "router", summary: "The app's router settings in effect, and which are the server defaults", params: appParams,
  response: routerReportSchema,
  handler: async ({ deps, caller, params }) => routerReport(deps, caller, params.app),
});

defineRoute({
  method: "patch", path: "/apps/:app/router", scope: "write", tag: "router",
  summary: "Change router settings; null returns a setting to the server default; applies at once", params: appParams,
  body: z.object({
    // The same bounds as router:set (isRateLimitRps), with one message whatever is wrong.
    rateLimitRps: z.number({ error: RATE_LIMIT_ALLOWED }).min(0, { error: RATE_LIMIT_ALLOWED }).max(ROUTER_LIMITS.rateLimitRps, { error: RATE_LIMIT_ALLOWED })
      .refine(isRateLimitRps, { error: RATE_LIMIT_ALLOWED }).nullable().optional()
      .describe(`requests per second per client IP: 0 (no limit) or from ${RATE_LIMIT_RPS_MIN.toFixed(6)} to ${ROUTER_LIMITS.rateLimitRps}`),
    rateLimitBurst: z.number().int().min(1).max(ROUTER_LIMITS.rateLimitBurst).nullable().optional().describe("requests a client IP may make at once"),
    maxBodyBytes: z.union([z.number().int().min(0).max(ROUTER_LIMITS.maxBodyBytes), z.string().max(20)]).nullable().optional()
      .describe("largest request body: bytes or a size like \"10m\" (0 = no limit)"),
    redirectHttps: z.boolean().nullable().optional().describe("answer plain-HTTP requests with a redirect to HTTPS"),
    hsts: z.boolean().nullable().optional().describe("send Strict-Transport-Security on HTTPS responses"),
  }).strict(),
  response: routerReportSchema,
  handler: async ({ deps, caller, params, body }) => {
    const { maxBodyBytes, ...rest } = body;
    const change: RouterSettingsChange = { ...rest };
    if (typeof maxBodyBytes === "string") {
      const bytes = parseBodySize(maxBodyBytes);
      if (bytes === null) throw new DeckError("validation_failed", "body.maxBodyBytes: a number of bytes or a size like 10m, 512k or 1g (0 = no limit)");
      change.maxBodyBytes = bytes;
    } else if (maxBodyBytes !== undefined) change.maxBodyBytes = maxBodyBytes;
    if (Object.keys(change).length === 0) throw new DeckError("validation_failed", "body: give at least one of rateLimitRps, rateLimitBurst, maxBodyBytes, redirectHttps, hsts");
    return setRouterSettings(deps, caller, params.app, change);
  },
});

defineRoute({
  method: "get", path: "/apps/:app/maintenance", scope: "read", tag: "router", summary: "Whether the app shows the maintenance page (maintenance mode or stopped)", params: appParams,
  response: maintenanceState,
  handler: async ({ deps, caller, params }) => maintenanceReport(deps, caller, params.app),
});

defineRoute({
  method: "post", path: "/apps/:app/maintenance", scope: "write", tag: "router", summary: "Turn maintenance mode on or off (every request gets a 503 maintenance page)", params: appParams,
  body: z.object({ enabled: z.boolean() }).strict(),
  response: maintenanceState,
  handler: async ({ deps, caller, params, body }) => setMaintenance(deps, caller, params.app, body.enabled),
});

defineRoute({
  method: "post", path: "/apps/:app/ps/stop", scope: "write", tag: "processes", summary: "Stop all of the app's processes until ps/start; the router shows the maintenance page", params: appParams,
  response: outputLines.extend({ stopped: z.number().describe("processes stopped") }),
  handler: async ({ deps, caller, params }) => {
    const output: string[] = [];
    const r = await stopApp(deps, caller, params.app, (l) => output.push(l));
    return { output, stopped: r.stopped };
  },
});

defineRoute({
  method: "post", path: "/apps/:app/ps/start", scope: "write", tag: "processes", summary: "Start a stopped app's live release again", params: appParams,
  response: outputLines.extend({
    outcome: z.enum(["started", "not_stopped", "no_release"]).describe("not_stopped: nothing to do; no_release: the first push starts it"),
    release: z.number().nullable(),
  }),
  handler: async ({ deps, caller, params }) => {
    const output: string[] = [];
    const r = await startApp(deps, caller, params.app, (l) => output.push(l));
    return { output, outcome: r.outcome, release: r.version };
  },
});
