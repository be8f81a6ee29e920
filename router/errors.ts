import { defineErrors, type ErrorCode } from "../core/index.ts";

/** Codes raised by the router and its control socket, and by the deck server talking to it. */
export const ROUTER_ERRORS = defineErrors({
  body_too_large: { status: 413, expose: true, hint: "the request body is over the size the receiver takes: send a smaller one" },
  certificates_too_large: { status: 507, expose: true, hint: "the router takes a limited size of certificates at once: remove certificates no longer needed (certs:remove, domains:remove)" },
  database_url_required: { status: 500, expose: false, hint: "a router node needs DATABASE_URL: the PostgreSQL the deck server uses (deck database:url prints it)" },
  invalid_certificate: { status: 400, expose: true, hint: "send the certificate, its chain and its private key as PEM, for domains of the app" },
  invalid_json: { status: 500, expose: false, hint: "the router did not understand a change deck sent it; the deck server log has the details" },
  invalid_request: { status: 500, expose: false, hint: "the router did not understand a change deck sent it; the deck server log has the details" },
  invalid_route: { status: 500, expose: false, hint: "the router refused a route deck sent it; the deck server log has the details" },
  listen_failed: { status: 500, expose: false, hint: "a port the router needs is taken or not allowed: free it, or set another port" },
  route_conflict: { status: 409, expose: true, hint: "another app's route already holds that host name: remove it there first, or pick another" },
  router_error: { status: 502, expose: false, hint: "the router answered in a way deck did not expect; the deck server log has the details" },
  router_failed: { status: 503, expose: false, hint: "the router did not start: a platform admin reads its log (logs/router.log) or runs `deck doctor`" },
  router_unavailable: { status: 503, expose: true, hint: "the router is not answering; it restarts within seconds: try again" },
});

declare module "../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof ROUTER_ERRORS, true> {}
}

/** The code of an error the router's control socket answered with: its own if deck knows it, else router_error. */
export function toRouterErrorCode(wire: string): ErrorCode {
  return Object.hasOwn(ROUTER_ERRORS, wire) ? (wire as keyof typeof ROUTER_ERRORS) : "router_error";
}
