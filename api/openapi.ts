import { z } from "zod/v4";
import { ROUTES, type RouteDef } from "./registry.ts";

export const API_VERSION = "1.0.0";

function toOpenApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
}

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const s = z.toJSONSchema(schema, { unrepresentable: "any", io: "input" }) as Record<string, unknown>;
  delete s.$schema;
  return s;
}

function parametersOf(def: RouteDef): unknown[] {
  const out: unknown[] = [];
  for (const [where, schema] of [["path", def.params], ["query", def.query]] as const) {
    if (!schema) continue;
    const js = jsonSchema(schema) as { properties?: Record<string, unknown>; required?: string[] };
    for (const [name, prop] of Object.entries(js.properties ?? {})) {
      out.push({ name, in: where, required: where === "path" || (js.required ?? []).includes(name), schema: prop });
    }
  }
  return out;
}

const ERROR = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: {
        code: { type: "string", description: "a code from docs/errors.md" },
        message: { type: "string" },
        hint: { type: "string", description: "what to do about it" },
        requestId: { type: "string", description: "also in the X-Request-Id header; the deck server log has the details under it" },
      },
      required: ["code", "message"],
    },
  },
  required: ["error"],
};

/** OpenAPI 3.1 built from the same zod schemas the routes validate with. */
export function buildOpenApi(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const def of ROUTES) {
    const p = (paths[`/api/v1${toOpenApiPath(def.path)}`] ??= {});
    const op: Record<string, unknown> = {
      tags: [def.tag],
      summary: def.summary,
      operationId: `${def.method}${def.path.replace(/[/:]+([a-z])/gi, (_, c: string) => c.toUpperCase()).replace(/[^A-Za-z0-9]/g, "")}`,
      parameters: parametersOf(def),
      responses: {
        [String(def.status ?? 200)]: { description: "success", content: { "application/json": { schema: def.response ? jsonSchema(def.response) : {} } } },
        default: { description: "error", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
      },
    };
    // The scope is listed on the bearer requirement (OpenAPI 3.1 allows roles there) and as x-scope.
    op["x-scope"] = def.scope;
    if (def.scopeWhen) op["x-scope-when"] = def.scopeWhen;
    if (def.scope !== "public") op.security = [{ bearer: [def.scope] }];
    if (def.body) op.requestBody = { required: true, content: { "application/json": { schema: jsonSchema(def.body) } } };
    p[def.method] = op;
  }
  return {
    openapi: "3.1.0",
    info: { title: "CloudDeck API", version },
    servers: [{ url: "/" }],
    paths,
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "an API token (deck_…) or an access token from POST /api/v1/session" } },
      schemas: { Error: ERROR },
    },
  };
}
