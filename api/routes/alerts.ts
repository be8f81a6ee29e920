import { z } from "zod/v4";
import { RULE_FORMS } from "../../core/alerts.ts";
import { addAlertRule, alertsOf, removeAlertRule, setAlertRollback, silenceAlerts } from "../../ops/alerts.ts";
import { defineRoute } from "../registry.ts";
import { appName, appParams } from "../schemas.ts";

/** API routes for an app's alert rules (the SSH alerts:* commands). */

const rule = z.object({
  id: z.string(),
  rule: z.string(),
  kind: z.enum(["down", "crash_loop", "http_5xx", "p95", "memory"]),
  default: z.boolean(),
  state: z.enum(["ok", "pending", "firing", "silenced"]),
  value: z.string().nullable(),
  since: z.string().nullable(),
});

defineRoute({
  method: "get", path: "/apps/:app/alerts", scope: "read", tag: "alerts",
  summary: "The app's alert rules (defaults: down, crash_loop) with where each stands, its silence and whether alerts roll it back",
  params: appParams,
  response: z.object({ app: z.string(), silencedUntil: z.string().nullable(), autoRollback: z.boolean(), rules: z.array(rule) }),
  handler: async ({ deps, caller, params }) => alertsOf(deps, caller, params.app),
});

defineRoute({
  method: "post", path: "/apps/:app/alerts", scope: "write", tag: "alerts", status: 201,
  summary: `Add an alert rule written as in alerts:add (${RULE_FORMS}); one of a default's kind replaces the default`,
  params: appParams,
  body: z.object({ rule: z.string().min(1).max(200) }).strict(),
  response: rule.extend({ replaced: z.string().nullable() }),
  handler: async ({ deps, caller, params, body }) => addAlertRule(deps, caller, params.app, body.rule),
});

defineRoute({
  method: "delete", path: "/apps/:app/alerts/:id", scope: "write", tag: "alerts", summary: "Remove an alert rule (a default by its name: down, crash_loop)",
  params: z.object({ app: appName, id: z.string().regex(/^(\d{1,15}|down|crash_loop)$/, "a rule id, or down or crash_loop") }).strict(),
  response: z.object({ id: z.string(), rule: z.string() }),
  handler: async ({ deps, caller, params }) => removeAlertRule(deps, caller, params.app, params.id),
});

defineRoute({
  method: "post", path: "/apps/:app/alerts/silence", scope: "write", tag: "alerts",
  summary: "Hold the app's alert notices for a while (30m, 2h, 1d; at most 7d), or end the silence (off); rules are still judged",
  params: appParams,
  body: z.object({ duration: z.string().min(1).max(20) }).strict(),
  response: z.object({ app: z.string(), silencedUntil: z.string().nullable() }),
  handler: async ({ deps, caller, params, body }) => silenceAlerts(deps, caller, params.app, body.duration),
});

defineRoute({
  method: "put", path: "/apps/:app/alerts/rollback", scope: "write", tag: "alerts",
  summary: "Turn rollback on alert on or off: an alert firing within 10 minutes of a deploy rolls the app back to the release before it, once",
  params: appParams,
  body: z.object({ enabled: z.boolean() }).strict(),
  response: z.object({ app: z.string(), autoRollback: z.boolean() }),
  handler: async ({ deps, caller, params, body }) => setAlertRollback(deps, caller, params.app, body.enabled),
});
