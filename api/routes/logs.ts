/** API routes for logs: reading and searching an app's log, its retention, and its drains. */
import type Koa from "koa";
import { z } from "zod/v4";
import { addDrain, isPlainLogQuery, listDrains, logRetention, readAppLog, removeDrain, searchAppLog, type LogQuery } from "../../ops/index.ts";
import { defineRoute } from "../registry.ts";
import { appName, appParams } from "../schemas.ts";

/** Streams lines as server-sent events until the client goes; `follow` writes each new one with `send`. */
async function streamEvents(ctx: Koa.Context, first: string[], follow: (send: (data: string) => void, signal: AbortSignal) => Promise<void>): Promise<void> {
  ctx.respond = false;
  const res = ctx.res;
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" });
  const send = (l: string) => res.write(`data: ${l.replace(/\r?\n/g, " ")}\n\n`);
  first.forEach(send);
  const abort = new AbortController();
  ctx.req.on("close", () => abort.abort());
  const ping = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
  try {
    await follow(send, abort.signal);
  } finally {
    clearInterval(ping);
    res.end();
  }
}

const logEntry = z.object({
  time: z.string(), source: z.enum(["app", "deck", "router"]), process: z.string().nullable(), text: z.string(),
  request: z.object({
    method: z.string(), path: z.string(), status: z.number(), durationMs: z.number(), client: z.string(), host: z.string(), requestId: z.string(), reason: z.string().optional(),
  }).optional(),
});
type LogEntryBody = z.infer<typeof logEntry>;

const entryBody = (e: LogEntryBody): LogEntryBody => ({ time: e.time, source: e.source, process: e.process, text: e.text, ...(e.request ? { request: e.request } : {}) });

defineRoute({
  method: "get", path: "/apps/:app/logs", scope: "deploy", tag: "logs", params: appParams,
  summary: "App and build output, newest last; since/grep/process/source search it (source=router: the app's requests through the router); follow=true streams new lines as server-sent events",
  query: z.object({
    lines: z.coerce.number().int().min(0).max(10_000).default(100),
    follow: z.enum(["true", "false"]).default("false"),
    since: z.string().max(64).optional().describe("a duration back from now (30m, 1h, 2d) or an ISO time"),
    grep: z.string().max(500).optional().describe("text the line contains (any case; not a pattern)"),
    process: z.string().max(80).optional().describe("a process (web.1) or process type (web)"),
    source: z.string().max(40).optional().describe("app, deck, router, a comma-separated list, or all (default app,deck)"),
    format: z.enum(["text", "json"]).default("text").describe("text: lines as logs prints them; json: entries with their fields"),
  }).strict(),
  raw: true,
  handler: async ({ ctx, deps, caller, params, query }) => {
    const q: LogQuery = {
      ...(query.since !== undefined ? { since: query.since } : {}),
      ...(query.grep !== undefined ? { grep: query.grep } : {}),
      ...(query.process !== undefined ? { process: query.process } : {}),
      ...(query.source !== undefined ? { source: query.source } : {}),
    };
    if (isPlainLogQuery(q) && query.format === "text") {
      const log = await readAppLog(deps, caller, params.app, query.lines);
      if (query.follow !== "true") {
        ctx.status = 200;
        ctx.body = { lines: log.lines };
        return;
      }
      await streamEvents(ctx, log.lines, (send, signal) => log.follow(send, signal));
      return;
    }
    const found = await searchAppLog(deps, caller, params.app, q, query.lines);
    const render = query.format === "json" ? (e: LogEntryBody) => JSON.stringify(entryBody(e)) : (e: { line: string }) => e.line;
    if (query.follow !== "true") {
      ctx.status = 200;
      ctx.body = query.format === "json"
        ? { entries: found.entries.map(entryBody), unsearched: found.unsearched }
        : { lines: found.entries.map((e) => e.line), unsearched: found.unsearched };
      return;
    }
    await streamEvents(ctx, found.entries.map((e) => render(e)), (send, signal) => found.follow((e) => send(render(e)), signal));
  },
});

// ---------- retention ----------
const retentionSetting = z.object({ value: z.number(), default: z.boolean() });
const retention = z.object({ app: z.string(), size: retentionSetting.describe("bytes of the newest lines kept"), age: retentionSetting.describe("seconds lines are kept") });

defineRoute({
  method: "get", path: "/apps/:app/logs/retention", scope: "write", tag: "logs", summary: "How much of the app's log deck keeps, and which values are the server defaults", params: appParams,
  response: retention,
  handler: async ({ deps, caller, params }) => logRetention(deps, caller, params.app),
});

defineRoute({
  method: "put", path: "/apps/:app/logs/retention", scope: "write", tag: "logs", summary: "Set how much of the app's log deck keeps (null: the server default)", params: appParams,
  body: z.object({
    size: z.string().max(30).nullable().optional().describe("like 100m or 1g"),
    age: z.string().max(30).nullable().optional().describe("like 12h, 14d or 2w"),
  }).strict(),
  response: retention,
  handler: async ({ deps, caller, params, body }) => logRetention(deps, caller, params.app, {
    ...(body.size !== undefined ? { size: body.size ?? "default" } : {}),
    ...(body.age !== undefined ? { age: body.age ?? "default" } : {}),
  }),
});

// ---------- drains ----------
const drain = z.object({
  id: z.number(), url: z.string().describe("masked: host and port in clear"), sources: z.array(z.enum(["app", "deck", "router"])),
  delivered: z.number(), dropped: z.number(), lastError: z.string().nullable(), lastErrorAt: z.string().nullable(), lastDeliveredAt: z.string().nullable(), createdAt: z.string(),
});

defineRoute({
  method: "get", path: "/apps/:app/drains", scope: "write", tag: "logs", summary: "The app's log drains: lines delivered and dropped, and the last error", params: appParams,
  response: z.object({ items: z.array(drain) }),
  handler: async ({ deps, caller, params }) => ({ items: await listDrains(deps, caller, params.app) }),
});

defineRoute({
  method: "post", path: "/apps/:app/drains", scope: "write", tag: "logs", status: 201, params: appParams,
  summary: "Ship the app's log lines from now on to syslog+tls://HOST:PORT, syslog://HOST:PORT or an https:// URL",
  body: z.object({ url: z.string().min(1).max(2048), source: z.string().max(40).optional().describe("app, deck, router, a comma-separated list, or all (default app,deck)") }).strict(),
  response: drain,
  handler: async ({ deps, caller, params, body }) => addDrain(deps, caller, params.app, body.url, body.source),
});

defineRoute({
  method: "delete", path: "/apps/:app/drains/:id", scope: "write", tag: "logs", summary: "Stop shipping the app's lines to a drain",
  params: z.object({ app: appName, id: z.coerce.number().int().positive() }).strict(),
  handler: async ({ deps, caller, params }) => {
    await removeDrain(deps, caller, params.app, params.id);
  },
});
