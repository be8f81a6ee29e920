/**
 * `GET /api/v1/events`: a live stream (server-sent events) of what happens to the apps the caller may
 * see: deploy state changes (every push, config change, scale, restart, rollback), uptime changes and
 * alerts, autoscaling decisions. One `event:` per kind (`deploy`, `uptime`, `alert`, `scale`), `data:` a JSON object naming the app;
 * a comment line every 15 s keeps proxies from closing a quiet stream. `?app=NAME` narrows it to one app.
 */
import { PassThrough } from "node:stream";
import type Koa from "koa";
import { DeckError, decide } from "../core/index.ts";
import { findApp } from "../store/queries/index.ts";
import type { ApiDeps } from "./registry.ts";

/** One event for the stream: its kind and what to send, naming the app it concerns. */
export interface StreamEvent {
  type: "deploy" | "uptime" | "alert" | "scale";
  app: string;
  data: Record<string, unknown>;
}

/** Where the stream hears events: returns the unsubscribe. */
export type EventSource = (listener: (event: StreamEvent) => void) => () => void;

const KEEPALIVE_MS = 15_000;
/** Who may see an app is looked up again after this long (a role removed, an app destroyed and its name reused). */
const VISIBILITY_TTL_MS = 30_000;
/** A stream ends after an hour (clients reconnect): a revoked token or role stops reaching it. */
const MAX_STREAM_MS = 3600_000;
/** Streams open at once, per user and in all. */
const MAX_STREAMS_PER_USER = 5;
const MAX_STREAMS = 1000;
/** A client that reads slower than events come loses its stream rather than deck's memory. */
const MAX_BUFFERED_BYTES = 1024 * 1024;

const open = new Map<number, number>();
let total = 0;

export function eventStreamHandler(deps: ApiDeps, source: EventSource): (ctx: Koa.Context) => Promise<void> {
  return async (ctx) => {
    const caller = await deps.authenticate(ctx);
    if (!caller) throw new DeckError("unauthenticated", "send `Authorization: Bearer <token>` to follow /api/v1/events");
    const only = typeof ctx.query.app === "string" ? ctx.query.app : undefined;
    const visible = new Map<string, { at: number; allowed: Promise<boolean> }>();
    const mayRead = (name: string) => {
      let v = visible.get(name);
      if (!v || Date.now() - v.at > VISIBILITY_TTL_MS) {
        v = { at: Date.now(), allowed: findApp(deps.db, name).then((a) => a !== null && decide(caller.actor, "app:read", { orgId: a.orgId, appId: a.id }).allow, () => false) };
        visible.set(name, v);
      }
      return v.allowed;
    };
    if (only !== undefined && !(await mayRead(only))) throw new DeckError("app_not_found", `app ${only.slice(0, 63)} not found (or you may not see it)`);

    // Counted against whoever holds the stream open: the admin viewing as a user, not that user.
    const userId = caller.viewedBy?.id ?? caller.user.id;
    if ((open.get(userId) ?? 0) >= MAX_STREAMS_PER_USER) throw new DeckError("conflict", `you have ${MAX_STREAMS_PER_USER} event streams open, the most at once; close one first`);
    if (total >= MAX_STREAMS) throw new DeckError("conflict", "deck serves as many event streams as it can; try again later");
    open.set(userId, (open.get(userId) ?? 0) + 1);
    total += 1;
    ctx.req.setTimeout(0);
    ctx.status = 200;
    ctx.set({ "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" });
    const stream = new PassThrough();
    ctx.body = stream;
    stream.write(": deck events\n\n");
    // In order: an event waits for the permission check of the one before.
    let chain = Promise.resolve();
    let closed = false;
    const unsubscribe = source((e) => {
      if (closed || (only !== undefined && e.app !== only)) return;
      chain = chain.then(async () => {
        if (closed || !(await mayRead(e.app))) return;
        stream.write(`event: ${e.type}\ndata: ${JSON.stringify({ app: e.app, ...e.data })}\n\n`);
        if (stream.writableLength > MAX_BUFFERED_BYTES) close();
      });
    });
    const keepalive = setInterval(() => stream.write(": keep-alive\n\n"), KEEPALIVE_MS);
    const lifetime = setTimeout(() => close(), MAX_STREAM_MS);
    function close(): void {
      if (closed) return;
      closed = true;
      clearInterval(keepalive);
      clearTimeout(lifetime);
      unsubscribe();
      stream.end();
      const n = (open.get(userId) ?? 1) - 1;
      if (n > 0) open.set(userId, n);
      else open.delete(userId);
      total -= 1;
    }
    ctx.req.once("close", close);
    ctx.res.once("close", close);
  };
}
