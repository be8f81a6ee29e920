import Router from "@koa/router";
import Koa from "koa";
import { callerFor, prometheusFor } from "../ops/index.ts";
import { authenticateBearer, type AuthDeps } from "./auth/index.ts";
import { errorMiddleware } from "./error-middleware.ts";
import { eventStreamHandler, type EventSource } from "./event-stream.ts";
import { metricsHandler } from "./metrics.ts";
import { ROUTES, runRoute, type ApiDeps } from "./registry.ts";
import "./routes/apps.ts";
import "./routes/router-settings.ts";
import "./routes/accounts.ts";
import "./routes/webhooks.ts";
import "./routes/usage.ts";
import "./routes/auth.ts";
import "./routes/meta.ts";
import "./routes/monitoring.ts";
import "./routes/billing.ts";
import "./routes/billing-stripe.ts";
import "./routes/notify.ts";
import "./routes/logs.ts";
import "./routes/alerts.ts";
import "./routes/autoscale.ts";
import "./routes/health.ts";
import "./routes/admin.ts";
import "./routes/support.ts";
import type { DeployDeps } from "../ops/index.ts";

export { API_VERSION } from "./openapi.ts";

export function bearerToken(header: string | undefined): string | null {
  const m = /^Bearer\s+(\S{1,4096})$/i.exec(header ?? "");
  return m ? m[1] : null;
}

/**
 * The REST API under /api/v1 (Koa). Every route is defined in api/routes with its schemas and the
 * token scope it needs, and runs through `runRoute`, which enforces that scope. (`/metrics`, outside
 * /api/v1, is for platform admins and checks that itself.)
 */
export function createApiApp(deployDeps: DeployDeps, extra: Partial<ApiDeps> = {}): Koa {
  const deps: ApiDeps = {
    ...deployDeps,
    authenticate: async (ctx) => {
      const token = bearerToken(ctx.get("authorization"));
      if (!token) return null;
      const auth = deps.extra.auth as AuthDeps;
      // A platform admin's `X-Deck-View-As: EMAIL` reads as that user (GET and HEAD only; see authenticate.ts).
      const principal = await authenticateBearer({ db: auth.db, keys: auth.keys }, token, { method: ctx.method, viewAs: ctx.get("x-deck-view-as") || undefined, sourceIp: ctx.ip });
      const caller = await callerFor(deployDeps.db, principal.user, "http", ctx.ip);
      return { ...caller, scopes: principal.scopes, ...(principal.viewedBy ? { viewedBy: { id: principal.viewedBy.id, email: principal.viewedBy.email } } : {}) };
    },
    extra: {},
    ...extra,
  };
  const app = new Koa();
  app.proxy = false;
  app.use(errorMiddleware(deployDeps.log));
  const router = new Router({ prefix: "/api/v1" });
  const events = deps.extra.events as EventSource | undefined;
  if (events) router.get("/events", eventStreamHandler(deps, events));
  for (const def of ROUTES) router[def.method](def.path, runRoute(def, deps));
  const root = new Router();
  root.get("/metrics", metricsHandler({
    authenticate: deps.authenticate, routerMetrics: deps.extra.routerMetrics as (() => Promise<string>) | undefined,
    forCaller: (caller, text) => prometheusFor(deployDeps, caller, text),
  }));
  app.use(root.routes());
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
