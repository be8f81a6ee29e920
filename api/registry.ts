import type Koa from "koa";
import { z } from "zod/v4";
import { DeckError } from "../core/index.ts";
import type { Caller, DeployDeps } from "../ops/index.ts";
import { scopeCovers, type Scope } from "./auth/scopes.ts";
import { readJsonBody } from "./body.ts";

/**
 * Who may call a route: `public` takes no token (sign-in, the JWKS, webhooks that verify their own
 * signatures); otherwise the narrowest token scope that may (see api/auth/scopes.ts). A session's
 * access token carries every scope, so only personal tokens are narrowed; roles still apply to both.
 */
export type RouteScope = Scope | "public";

/** A query value that asks for more than the route itself: `reveal=true` on config shows secrets. */
export interface ScopeWhen {
  query: string;
  equals: string;
  scope: Scope;
}

export interface ApiCaller extends Caller {
  scopes: string[];
}

export interface ApiRequest<P, Q, B> {
  ctx: Koa.Context;
  deps: ApiDeps;
  caller: ApiCaller;
  params: P;
  query: Q;
  body: B;
}

/** What routes reach: the deploy dependencies plus the API's own services. */
export interface ApiDeps extends DeployDeps {
  authenticate(ctx: Koa.Context): Promise<ApiCaller | null>;
  extra: Record<string, unknown>;
}

type Method = "get" | "post" | "put" | "patch" | "delete";

export interface RouteDef<P extends z.ZodType = z.ZodType, Q extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType> {
  method: Method;
  /** Koa style, relative to /api/v1: `/apps/:app`. */
  path: string;
  tag: string;
  summary: string;
  /** The scope a token needs for this route: declared on every route, enforced for all by `runRoute`. */
  scope: RouteScope;
  /** A query value that needs a wider scope than `scope`. */
  scopeWhen?: ScopeWhen;
  params?: P;
  query?: Q;
  body?: B;
  response?: z.ZodType;
  status?: number;
  /** The handler writes the response itself (streams, raw bodies). */
  raw?: boolean;
  handler(req: ApiRequest<z.infer<P>, z.infer<Q>, z.infer<B>>): Promise<unknown>;
}

export const ROUTES: RouteDef[] = [];

export function defineRoute<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(def: RouteDef<P, Q, B>): RouteDef<P, Q, B> {
  ROUTES.push(def as unknown as RouteDef);
  return def;
}

/** A zod failure as one line naming the field: `body.name: Too big: expected string to have <=63 characters`. */
function describeIssue(where: string, error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue.path.length ? `${where}.${issue.path.join(".")}` : where;
  if (issue.code === "unrecognized_keys") return `${path}: unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
  return `${path}: ${issue.message}`;
}

export function parseOrThrow<T extends z.ZodType>(schema: T, value: unknown, where: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new DeckError("validation_failed", describeIssue(where, r.error));
  return r.data;
}

/** The scope a request to `def` needs: the route's own, or more for a query value that asks for more. */
export function requiredScope(def: RouteDef, query: URLSearchParams): RouteScope {
  const when = def.scopeWhen;
  return when && query.getAll(when.query).includes(when.equals) ? when.scope : def.scope;
}

/** Throws `insufficient_scope` (403) naming the scope when the caller's token does not cover the request. */
export function enforceScope(def: RouteDef, caller: ApiCaller, query: URLSearchParams): void {
  const needed = requiredScope(def, query);
  if (needed === "public" || scopeCovers(caller.scopes, needed)) return;
  const asked = needed === def.scope ? "" : `?${def.scopeWhen?.query}=${def.scopeWhen?.equals}`;
  throw new DeckError(
    "insufficient_scope",
    `this token lacks the "${needed}" scope needed for ${def.method.toUpperCase()} ${def.path}${asked}: use a token with that scope (POST /api/v1/tokens) or sign in`,
    { needed },
  );
}

/** Runs one route: authenticate, check scope, validate params/query/body, call the handler. */
export function runRoute(def: RouteDef, deps: ApiDeps) {
  return async (ctx: Koa.Context & { params?: Record<string, string> }): Promise<void> => {
    let caller: ApiCaller | null = null;
    if (def.scope !== "public") {
      caller = await deps.authenticate(ctx);
      if (!caller) throw new DeckError("unauthenticated", "sign in first: send `Authorization: Bearer <token>` (an API token or an access token from POST /api/v1/session)");
      enforceScope(def, caller, new URLSearchParams(ctx.querystring));
    }
    const params = def.params ? parseOrThrow(def.params, ctx.params ?? {}, "path") : {};
    const query = def.query ? parseOrThrow(def.query, Object.fromEntries(new URLSearchParams(ctx.querystring)), "query") : {};
    const body = def.body ? parseOrThrow(def.body, await readJsonBody(ctx), "body") : undefined;
    const result = await def.handler({ ctx, deps, caller: caller as ApiCaller, params, query, body });
    if (def.raw) return;
    ctx.status = def.status ?? 200;
    ctx.body = result === undefined ? { ok: true } : result;
  };
}
