/**
 * `GET /api/v1/events`: a live stream (server-sent events) of what happens to the apps the caller may
 * see: deploy state changes (every push, config change, scale, restart, rollback), uptime changes and
 * alerts. One `event:` per kind (`deploy`, `uptime`, `alert`), `data:` a JSON object naming the app;
 * a comment line every 15 s keeps proxies from closing a quiet stream. `?app=NAME` narrows it to one app.
 */
import { PassThrough } from "node:stream";
import type Koa from "koa";
import { DeckError, decide } from "../core/index.ts";
import { findApp } from "../store/queries/index.ts";
import type { ApiDeps } from "./registry.ts";

/** One event for the stream: its kind and what to send, naming the app it concerns. */
export interface StreamEvent {
  type: "deploy" | "uptime" | "alert";
  app: string;
  data: Record<string, unknown>;
}

/** Where the stream hears events: returns the unsubscribe. */
export type EventSource = (listener: (event: StreamEvent) => void) => () => void;

const KEEPALIVE_MS = 15_000;

export function eventStreamHandler(deps: ApiDeps, source: EventSource): (ctx: Koa.Context) => Promise<void> {
  return async (ctx) => {
    const caller = await deps.authenticate(ctx);
    if (!caller) throw new DeckError("unauthenticated", "send `Authorization: Bearer <token>` to follow /api/v1/events");
    const only = typeof ctx.query.app === "string" ? ctx.query.app : undefined;
    // Who may see an app is looked up once per app per stream (a role change applies to new streams).
    const visible = new Map<string, Promise<boolean>>();
    const mayRead = (name: string) => {
      let v = visible.get(name);
      if (!v) {
        v = findApp(deps.db, name).then((a) => a !== null && decide(caller.actor, "app:read", { orgId: a.orgId, appId: a.id }).allow, () => false);
        visible.set(name, v);
      }
      return v;
    };
    if (only !== undefined && !(await mayRead(only))) throw new DeckError("app_not_found", `app ${only.slice(0, 63)} not found (or you may not see it)`);

    ctx.req.setTimeout(0);
    ctx.status = 200;
    ctx.set({ "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" });
    const stream = new PassThrough();
    ctx.body = stream;
    stream.write(": deck events\n\n");
    // In order: an event waits for the permission check of the one before.
    let chain = Promise.resolve();
    const unsubscribe = source((e) => {
      if (only !== undefined && e.app !== only) return;
      chain = chain.then(async () => {
        if (await mayRead(e.app)) stream.write(`event: ${e.type}\ndata: ${JSON.stringify({ app: e.app, ...e.data })}\n\n`);
      });
    });
    const keepalive = setInterval(() => stream.write(": keep-alive\n\n"), KEEPALIVE_MS);
    const close = () => {
      clearInterval(keepalive);
      unsubscribe();
      stream.end();
    };
    ctx.req.once("close", close);
    ctx.res.once("close", close);
  };
}
