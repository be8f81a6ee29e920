import { z } from "zod/v4";
import { API_VERSION, buildOpenApi } from "../openapi.ts";
import { defineRoute } from "../registry.ts";

let document: Record<string, unknown> | undefined;

defineRoute({
  method: "get", path: "/openapi.json", scope: "public", tag: "meta", summary: "This OpenAPI 3.1 document: every route with its schemas and the token scope it needs",
  // Built on first use: every route file has registered its routes by then.
  handler: async () => (document ??= buildOpenApi(API_VERSION)),
});

defineRoute({
  method: "get", path: "/health", scope: "public", tag: "meta", summary: "Whether the API answers",
  response: z.object({ ok: z.literal(true) }),
  handler: async () => ({ ok: true }),
});
