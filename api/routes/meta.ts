import { z } from "zod/v4";
import { API_VERSION, buildOpenApi } from "../openapi.ts";
import { probeRouter } from "../../router/control-client.ts";
import { defineRoute } from "../registry.ts";

let document: Record<string, unknown> | undefined;

defineRoute({
  method: "get", path: "/openapi.json", scope: "public", tag: "meta", summary: "This OpenAPI 3.1 document: every route with its schemas and the token scope it needs",
  // Built on first use: every route file has registered its routes by then.
  handler: async () => (document ??= buildOpenApi(API_VERSION)),
});

defineRoute({
  method: "get", path: "/health", scope: "public", tag: "meta", summary: "Whether the API answers, and whether this machine's router does",
  response: z.object({ ok: z.literal(true), router: z.enum(["answering", "not answering"]) }),
  // The router is asked, not assumed: it restarts within a second when it dies, and says so here meanwhile.
  handler: async ({ deps }) => ({ ok: true, router: (await probeRouter(deps.paths.routerSocket, 500)) ? "answering" : "not answering" }),
});
