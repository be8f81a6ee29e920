import { z } from "zod/v4";
import { alertsOverview, auditTrail, buildQueueOverview, MAX_AUDIT_LIMIT, parseSecuritySince, requirePlatformAdmin, securityOverview } from "../../ops/admin.ts";
import { defineRoute } from "../registry.ts";
import { email } from "../schemas.ts";

/** Platform-wide views for platform admins: the build queue, alerts, security, and the audit trail. */

const nullableString = z.string().nullable();

defineRoute({
  method: "get", path: "/builds", scope: "admin", tag: "admin",
  summary: "The build queue across every app (running, then waiting in line) and the newest finished builds (platform admins)",
  query: z.object({ recent: z.coerce.number().int().min(0).max(100).default(20) }).strict(),
  response: z.object({
    items: z.array(z.object({
      app: z.string(), org: z.string(), id: z.number().nullable(), state: z.enum(["queued", "running"]), position: z.number().nullable(),
      commit: nullableString, builder: nullableString, queuedAt: z.string(), startedAt: nullableString, elapsedSeconds: z.number(),
    })),
    recent: z.array(z.object({
      app: z.string(), org: z.string(), id: z.number(), status: z.string(), commit: nullableString, startedAt: nullableString, finishedAt: nullableString,
      durationSeconds: z.number().nullable(), error: nullableString,
    })),
  }),
  handler: async ({ deps, caller, query }) => buildQueueOverview(deps, caller, query.recent),
});

defineRoute({
  method: "get", path: "/alerts", scope: "admin", tag: "admin",
  summary: "Alert rules pending or firing across every app, and the newest alert events: fired, resolved, rolled back (platform admins)",
  query: z.object({ history: z.coerce.number().int().min(0).max(200).default(50) }).strict(),
  response: z.object({
    firing: z.array(z.object({
      app: z.string(), org: z.string(), ruleId: z.string(), rule: z.string(), kind: z.enum(["down", "crash_loop", "http_5xx", "p95", "memory"]),
      state: z.enum(["firing", "pending", "silenced"]), value: nullableString, since: nullableString,
    })),
    history: z.array(z.object({
      at: z.string(), app: z.string(), org: z.string(), rule: z.string(), status: z.enum(["firing", "resolved", "rolled_back", "rollback_failed"]), value: nullableString,
    })),
  }),
  handler: async ({ deps, caller, query }) => alertsOverview(deps, caller, query.history),
});

defineRoute({
  method: "get", path: "/security", scope: "admin", tag: "admin",
  summary: "What a platform admin should look at since a while ago (24h unless since= says, up to 90d): failed sign-ins, refused actions, new SSH keys and tokens, and apps whose traffic is 3x their usual",
  query: z.object({ since: z.string().max(20).default("24h") }).strict(),
  response: z.object({
    since: z.string(),
    failedSignIns: z.array(z.object({ at: z.string(), email: nullableString, sourceIp: nullableString, via: z.string(), reason: nullableString, auditId: z.number() })),
    denied: z.array(z.object({ at: z.string(), user: nullableString, action: z.string(), target: nullableString, sourceIp: nullableString, via: nullableString, auditId: z.number() })),
    newKeys: z.array(z.object({ at: z.string(), user: nullableString, fingerprint: nullableString, title: nullableString, auditId: z.number() })),
    newTokens: z.array(z.object({ at: z.string(), user: nullableString, name: nullableString, scopes: z.array(z.string()), auditId: z.number() })),
    unusualTraffic: z.array(z.object({ app: z.string(), org: z.string(), at: z.string(), requestsPerSecond: z.number(), baselinePerSecond: z.number(), ratio: z.number() })),
  }),
  handler: async ({ deps, caller, query }) => {
    // Who may ask comes before whether the question is well formed: a non-admin's try is refused (and audited) either way.
    await requirePlatformAdmin(deps, caller, "security", "see the platform's security events");
    return securityOverview(deps, caller, parseSecuritySince(query.since));
  },
});

defineRoute({
  method: "get", path: "/audit", scope: "admin", tag: "admin",
  summary: `The whole audit trail, newest first, narrowed by any of ids (1,2,3), user (an email), action, target and result (platform admins; at most ${MAX_AUDIT_LIMIT})`,
  query: z.object({
    ids: z.string().regex(/^\d{1,15}(,\d{1,15}){0,199}$/, "audit entry ids separated by commas, at most 200").optional(),
    user: email.optional(),
    action: z.string().min(1).max(100).optional(),
    target: z.string().min(1).max(300).optional(),
    result: z.enum(["ok", "denied", "failed"]).optional(),
    limit: z.coerce.number().int().min(1).max(MAX_AUDIT_LIMIT).default(50),
  }).strict(),
  response: z.object({
    items: z.array(z.object({
      id: z.number(), at: z.string(), user: nullableString, action: z.string(), target: nullableString, result: z.string(), sourceIp: nullableString,
      data: z.record(z.string(), z.unknown()),
    })),
  }),
  handler: async ({ deps, caller, query }) => {
    const { limit, ids, ...rest } = query;
    return auditTrail(deps, caller, { ...rest, ...(ids ? { ids: ids.split(",").map(Number) } : {}) }, limit);
  },
});
