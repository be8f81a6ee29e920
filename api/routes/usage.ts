import { z } from "zod/v4";
import { bandwidthReport } from "../../ops/index.ts";
import { defineRoute } from "../registry.ts";
import { appParams } from "../schemas.ts";

const hourRow = z.object({ hour: z.string(), requests: z.number(), bytesIn: z.number(), bytesOut: z.number() });

defineRoute({
  method: "get", path: "/apps/:app/usage", scope: "read", tag: "usage", summary: "Requests and bytes the router counted for the app, per hour (newest first)",
  params: appParams,
  query: z.object({ hours: z.coerce.number().int().min(1).max(8784).default(24) }).strict(),
  response: z.object({ items: z.array(hourRow) }),
  handler: async ({ deps, caller, params, query }) => ({ items: await bandwidthReport(deps, caller, params.app, query.hours) }),
});
