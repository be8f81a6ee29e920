import { z } from "zod/v4";
import { addNotifyChannel, listNotifyChannelsOf, removeNotifyChannel, testNotifyChannels } from "../../ops/notify.ts";
import { defineRoute } from "../registry.ts";
import { orgParams, orgSlug } from "../schemas.ts";

/** API routes for an organisation's notification channels (the SSH notify:* commands). */

const channel = z.object({
  id: z.number(),
  kind: z.enum(["webhook", "slack", "email"]),
  target: z.string(),
  createdBy: z.string().nullable(),
  createdAt: z.string(),
  pending: z.number(),
  dead: z.number(),
  lastDelivery: z.object({ at: z.string(), ok: z.boolean(), error: z.string().nullable() }).nullable(),
});

defineRoute({
  method: "get", path: "/orgs/:org/notify", scope: "admin", tag: "notify",
  summary: "The organisation's notification channels (targets masked), with their last delivery and the notices waiting or given up",
  params: orgParams, response: z.object({ items: z.array(channel) }),
  handler: async ({ deps, caller, params }) => ({ items: await listNotifyChannelsOf(deps, caller, params.org) }),
});

defineRoute({
  method: "post", path: "/orgs/:org/notify", scope: "admin", tag: "notify", status: 201,
  summary: "Send the organisation's alert notices to a webhook (Alertmanager's JSON), a Slack-compatible incoming webhook, or an e-mail address",
  params: orgParams,
  body: z.object({ kind: z.enum(["webhook", "slack", "email"]), target: z.string().min(1).max(2048) }).strict(),
  response: channel,
  handler: async ({ deps, caller, params, body }) => addNotifyChannel(deps, caller, params.org, body.kind, body.target),
});

defineRoute({
  method: "delete", path: "/orgs/:org/notify/:id", scope: "admin", tag: "notify", summary: "Stop sending notices to a channel",
  params: z.object({ org: orgSlug, id: z.string().regex(/^\d{1,15}$/, "a channel id") }).strict(),
  handler: async ({ deps, caller, params }) => {
    await removeNotifyChannel(deps, caller, params.org, params.id);
  },
});

defineRoute({
  method: "post", path: "/orgs/:org/notify/test", scope: "admin", tag: "notify",
  summary: "Send a test notice to every channel and wait (up to 15 s) to say which got it",
  params: orgParams,
  response: z.object({ results: z.array(z.object({ id: z.number(), kind: z.string(), target: z.string(), delivered: z.boolean(), message: z.string() })) }),
  handler: async ({ deps, caller, params }) => ({ results: await testNotifyChannels(deps, caller, params.org) }),
});
