import { z } from "zod/v4";
import { configureWebhook, getWebhook, handleWebhook, removeWebhook, WEBHOOK_MAX_BODY } from "../../ops/index.ts";
import { readRawBody } from "../body.ts";
import { defineRoute } from "../registry.ts";
import { appName, appParams } from "../schemas.ts";

for (const provider of ["github", "gitlab"] as const) {
  defineRoute({
    method: "post", path: `/apps/:app/webhooks/${provider}`, scope: "public", tag: "webhooks", raw: true,
    summary: `${provider === "github" ? "GitHub" : "GitLab"} push event: verified by its ${provider === "github" ? "HMAC signature" : "token"}, then the commit is fetched and deployed`,
    params: z.object({ app: appName }).strict(),
    handler: async ({ ctx, deps, params }) => {
      const rawBody = await readRawBody(ctx, WEBHOOK_MAX_BODY);
      const r = await handleWebhook(deps, { app: params.app, provider, rawBody, headers: ctx.req.headers, sourceIp: ctx.ip });
      ctx.status = r.status;
      ctx.body = r.body;
    },
  });
}

const settings = z.object({
  repoUrl: z.string().min(1).max(2048),
  branch: z.string().min(1).max(200).optional(),
  githubSecret: z.string().max(512).nullable().optional(),
  gitlabToken: z.string().max(512).nullable().optional(),
}).strict();

defineRoute({
  method: "get", path: "/apps/:app/webhook", scope: "read", tag: "webhooks", summary: "The app's webhook settings (secrets are never shown)", params: appParams,
  handler: async ({ deps, caller, params }) => getWebhook(deps, caller, params.app),
});

defineRoute({
  method: "put", path: "/apps/:app/webhook", scope: "write", tag: "webhooks", summary: "Configure where webhooks fetch from and their secrets", params: appParams, body: settings,
  handler: async ({ deps, caller, params, body }) => configureWebhook(deps, caller, params.app, body),
});

defineRoute({
  method: "delete", path: "/apps/:app/webhook", scope: "write", tag: "webhooks", summary: "Stop accepting webhooks for the app", params: appParams,
  handler: async ({ deps, caller, params }) => {
    await removeWebhook(deps, caller, params.app);
  },
});
