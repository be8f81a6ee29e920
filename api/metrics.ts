/**
 * `GET /metrics` on the API port: Prometheus exposition of the deck server (process metrics) and
 * of the router (per-app requests by status class, bytes in and out, latency histogram). Platform
 * admins see all of it; an org's admins see the series of the apps they administer, nothing of deck's
 * own. Prometheus scrapes it with `authorization: { credentials: <API token> }`.
 */
import type Koa from "koa";
import { collectDefaultMetrics, Registry } from "prom-client";
import { DeckError } from "../core/index.ts";
import type { ApiCaller } from "./registry.ts";

export interface MetricsDeps {
  authenticate(ctx: Koa.Context): Promise<ApiCaller | null>;
  /** The router's metrics text; a router that does not answer leaves its part out (and says so). */
  routerMetrics?: () => Promise<string>;
  /** The router's text cut down to the apps a caller who is not a platform admin administers (refuses when none). */
  forCaller(caller: ApiCaller, text: string): Promise<string>;
}

export function metricsHandler(deps: MetricsDeps): (ctx: Koa.Context) => Promise<void> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "deck_server_" });
  return async (ctx) => {
    const caller = await deps.authenticate(ctx);
    if (!caller) throw new DeckError("unauthenticated", "send `Authorization: Bearer <token>` with a platform admin's API token to read /metrics");
    if (!caller.actor.isAdmin) {
      const router = deps.routerMetrics ? await deps.routerMetrics().catch((e: Error) => `# the router did not answer: ${e.message.split("\n")[0]}\n`) : "";
      ctx.set("Content-Type", registry.contentType);
      ctx.body = await deps.forCaller(caller, router);
      return;
    }
    let text = await registry.metrics();
    if (deps.routerMetrics) {
      try {
        text += await deps.routerMetrics();
      } catch (e) {
        text += `# the router did not answer: ${(e as Error).message.split("\n")[0]}\n`;
      }
    }
    ctx.set("Content-Type", registry.contentType);
    ctx.body = text;
  };
}
