import type { Context, Next } from "koa";
import { isDeckError } from "../core/index.ts";

/** HTTP status for each DeckError code the API can raise; anything else unknown is a 400. */
const STATUS: Record<string, number> = {
  unauthenticated: 401,
  invalid_token: 401,
  invalid_credentials: 401,
  mfa_required: 401,
  invalid_mfa_code: 401,
  bad_signature: 401,
  forbidden: 403,
  insufficient_scope: 403,
  app_not_found: 404,
  not_found: 404,
  webhook_not_configured: 404,
  app_exists: 409,
  conflict: 409,
  deploy_in_progress: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  deploy_failed: 422,
  no_release: 422,
  artifact_pruned: 422,
  router_unavailable: 503,
  // The sandbox deck runs every app in: a host without setpriv, or a uid range used up, is deck's to fix.
  sandbox_unavailable: 503,
  sandbox_uids_exhausted: 503,
  network_rules_failed: 500,
  bad_slug: 422,
  image_missing: 422,
  // The router's certificate list is over what it takes at once: the platform's limit, not the request's.
  body_too_large: 507,
  fetch_failed: 502,
  oidc_not_configured: 404,
  oidc_state_mismatch: 400,
  oidc_email_unverified: 403,
  oidc_failed: 401,
  weak_password: 400,
};

export function statusForCode(code: string): number {
  return STATUS[code] ?? 400;
}

/**
 * One place maps errors to answers: `{ "error": { "code", "message" } }`. Messages of expected
 * (4xx) errors are shown; a 5xx never exposes internals — its details go to the server log.
 */
export function errorMiddleware(log: (line: string) => void) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.body = { error: { code: "not_found", message: `no route for ${ctx.method} ${ctx.path.slice(0, 200)}` } };
      }
    } catch (e) {
      if (isDeckError(e)) {
        ctx.status = statusForCode(e.code);
        ctx.body = { error: { code: e.code, message: e.message } };
        const retry = (e.data as { retryAfterSeconds?: number }).retryAfterSeconds;
        if (ctx.status === 429 && retry) ctx.set("Retry-After", String(Math.ceil(retry)));
        if (ctx.status === 401) ctx.set("WWW-Authenticate", 'Bearer realm="deck"');
        return;
      }
      const status = (e as { status?: number; expose?: boolean }).status;
      if (status && status >= 400 && status < 500) {
        ctx.status = status;
        ctx.body = { error: { code: "bad_request", message: (e as Error).message.split("\n")[0].slice(0, 200) } };
        return;
      }
      log(`api ${ctx.method} ${ctx.path}: ${(e as Error).stack ?? e}`);
      ctx.status = 500;
      ctx.body = { error: { code: "internal", message: "internal error; the details are in the deck server log" } };
    }
  };
}
