import { randomUUID } from "node:crypto";
import type { Context, Next } from "koa";
import { isDeckError, type ErrorCode } from "../core/index.ts";
import { describeError, hiddenErrorMessage, lookupError } from "../ops/index.ts";

/** The body of every error answer. `hint` and `requestId` were added after `code` and `message`. */
export interface ErrorBody {
  error: { code: string; message: string; hint?: string; requestId: string };
}

export interface ErrorAnswer {
  status: number;
  body: ErrorBody;
  /** For the server log, with the request id; set when the client is not told the details. */
  log?: string;
}

/**
 * What the API answers for an error: a declared code with its status and, if its message may be
 * shown, its message; a code that is not shown, an undeclared code and any other error as a generic
 * 5xx that carries the request id, the details going to the log under that id (the catalogue decides,
 * for SSH commands too).
 */
export function describeApiError(e: unknown, requestId: string): ErrorAnswer {
  // Koa's own errors (a malformed request it refused): 4xx, their message written for the client.
  const status = isDeckError(e) ? undefined : (e as { status?: unknown } | null)?.status;
  if (typeof status === "number" && status >= 400 && status < 500) {
    const message = ((e as Error).message ?? "").split("\n")[0].slice(0, 200);
    return { status, body: { error: { code: "bad_request", message, hint: lookupError("bad_request")?.hint, requestId } } };
  }
  const d = describeError(e);
  if (d.shown) return { status: d.status, body: { error: { code: d.code, message: d.message, hint: d.hint, requestId } } };
  return { status: d.status, body: { error: { code: d.code, message: hiddenErrorMessage("this request", requestId), hint: d.hint, requestId } }, log: d.detail };
}

/** The answer for a path no route serves. */
function noRoute(ctx: Context, requestId: string): ErrorBody {
  const code: ErrorCode = "not_found";
  return { error: { code, message: `no route for ${ctx.method} ${ctx.path.slice(0, 200)}`, hint: lookupError(code)?.hint, requestId } };
}

/**
 * One place maps errors to answers: `{ "error": { "code", "message", "hint", "requestId" } }`, the
 * status from the error catalogue. Every answer carries `X-Request-Id`.
 */
export function errorMiddleware(log: (line: string) => void) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const requestId = randomUUID();
    ctx.state.requestId = requestId;
    ctx.set("X-Request-Id", requestId);
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.body = noRoute(ctx, requestId);
      }
    } catch (e) {
      const answer = describeApiError(e, requestId);
      if (answer.log) log(`api ${ctx.method} ${ctx.path.slice(0, 200)} (request id ${requestId}): ${answer.log}`);
      ctx.status = answer.status;
      ctx.body = answer.body;
      ctx.set("X-Request-Id", requestId);
      const retry = isDeckError(e) ? (e.data as { retryAfterSeconds?: number }).retryAfterSeconds : undefined;
      if (ctx.status === 429 && retry) ctx.set("Retry-After", String(Math.ceil(retry)));
      if (ctx.status === 401) ctx.set("WWW-Authenticate", 'Bearer realm="deck"');
    }
  };
}
