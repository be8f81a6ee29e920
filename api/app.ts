import Router from "@koa/router";
import Koa from "koa";
import { callerFor } from "../deploy/index.ts";
import { authenticateBearer, type AuthDeps } from "./auth/index.ts";
import { errorMiddleware } from "./errors.ts";
import { metricsHandler } from "./metrics.ts";
import { buildOpenApi } from "./openapi.ts";
import { ROUTES, runRoute, type ApiDeps } from "./registry.ts";
import "./routes/apps.ts";
import "./routes/router-settings.ts";
import "./routes/accounts.ts";
import "./routes/webhooks.ts";
import "./routes/usage.ts";
import "./routes/auth.ts";
import type { DeployDeps } from "../deploy/index.ts";

export const API_VERSION = "1.0.0";

export function bearerToken(header: string | undefined): string | null {
  const m = /^Bearer\s+(\S{1,4096})$/i.exec(header ?? "");
  return m ? m[1] : null;
}

/** The REST API under /api/v1 (Koa). Every route is defined in api/routes with its schemas. */
export function createApiApp(deployDeps: DeployDeps, extra: Partial<ApiDeps> = {}): Koa {
  const deps: ApiDeps = {
    ...deployDeps,
    authenticate: async (ctx) => {
      const token = bearerToken(ctx.get("authorization"));
      if (!token) return null;
      const auth = deps.extra.auth as AuthDeps;
      const principal = await authenticateBearer({ db: auth.db, keys: auth.keys }, token);
      return { ...(await callerFor(deployDeps.db, principal.user, "http", ctx.ip)), scopes: principal.scopes };
    },
    extra: {},
    ...extra,
  };
  const app = new Koa();
  app.proxy = false;
  app.use(errorMiddleware(deployDeps.log));
  const router = new Router({ prefix: "/api/v1" });
  const openapi = buildOpenApi(API_VERSION);
  router.get("/openapi.json", (ctx) => {
    ctx.body = openapi;
  });
  router.get("/health", (ctx) => {
    ctx.body = { ok: true };
  });
  for (const def of ROUTES) router[def.method](def.path, runRoute(def, deps));
  const root = new Router();
  root.get("/metrics", metricsHandler({ authenticate: deps.authenticate, routerMetrics: deps.extra.routerMetrics as (() => Promise<string>) | undefined }));
  app.use(root.routes());
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
