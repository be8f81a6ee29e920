/**
 * One client request through the proxy, over HTTP/1.1 or HTTP/2: its headers rewritten for the app,
 * then down the routing ladder (request-decision.ts) to an answer of the router's own, a wait (the
 * rate limiter, a starting app), or the app (exchange.ts).
 */
import type { Http2ServerRequest } from "node:http2";
import { ACME_CHALLENGE_PREFIX, type AcmeChallenges } from "./acme-challenges.ts";
import { BodyDeadlines } from "./body-deadlines.ts";
import type { ProxyRequest, ProxyResponse } from "./client-messages.ts";
import { Exchange } from "./exchange.ts";
import { buildForwardHeaders, type ForwardHeaders } from "./forward-headers.ts";
import { PausedStarts } from "./paused-starts.ts";
import { plainText } from "./plain-answers.ts";
import type { InboundRequest, ProxyContext } from "./proxy-context.ts";
import { decide, type Answer, type Decision } from "./request-decision.ts";
import { guardRequest } from "./request-guard.ts";
import { clientGone } from "./request-recorder.ts";
import { RouteTable, type RouteEntry } from "./route-table.ts";

export class RequestFlow {
  readonly paused: PausedStarts;
  readonly bodies: BodyDeadlines;

  constructor(private readonly ctx: ProxyContext, private readonly challenges: AcmeChallenges) {
    this.paused = new PausedStarts(ctx.limits.pauseTimeoutMs);
    this.bodies = new BodyDeadlines(ctx.limits.bodyTimeoutMs, ctx.metering, (req, res, step) => guardRequest(ctx.log, req, res, step));
  }

  /** Serves one client request; `secure` when it arrived over TLS (HTTP/2 ones as Node's compatibility objects). */
  handle(req: ProxyRequest, res: ProxyResponse, secure: boolean): void {
    guardRequest(this.ctx.log, req, res, () => this.serve(req, res, secure));
  }

  private serve(req: ProxyRequest, res: ProxyResponse, secure: boolean): void {
    if (req.url !== undefined && req.url.startsWith(ACME_CHALLENGE_PREFIX)) return this.challenges.answer(req, res);
    const start = performance.now();
    // HTTP/2 responses have no keep-alive flag; their connection closes with a GOAWAY instead.
    if (req.httpVersionMajor === 1 && this.ctx.closing()) res.shouldKeepAlive = false;
    const fwd = buildForwardHeaders(req.rawHeaders, req.socket.remoteAddress, false, secure);
    if (req.httpVersionMajor === 2) framePlainBody(req as unknown as Http2ServerRequest, fwd);
    if (fwd.hasBody) this.bodies.watch(req, res);
    this.proceed({ req, res, fwd, start }, this.ctx.table.lookup(fwd.host), undefined);
  }

  /** Takes the request down the routing ladder; after a wait, with the route as the table has it then. */
  private proceed(r: InboundRequest, entry: RouteEntry | undefined, retryAfter: number | undefined): void {
    const ctx = this.ctx;
    const { req, fwd } = r;
    const decision: Decision = decide({
      entry, host: fwd.host, url: req.url, secure: fwd.secure, client: fwd.client, contentLength: fwd.contentLength,
      retryAfter, upgrade: false, closing: ctx.closing(),
    }, ctx.policy);
    switch (decision.kind) {
      case "forward":
        return this.forward(r, entry!, decision.maxBody);
      case "answer":
        return this.answer(r, entry ?? null, decision);
      case "ask-rate-limiter": {
        const verdict = ctx.rateLimiter.take(decision.app, decision.client, decision.rps, decision.burst);
        if (typeof verdict === "number") return this.proceed(r, entry, verdict);
        // A deploy may switch while a shared limiter decides: the old processes may be drained already.
        const after = (n: number) => this.resume(r, entry!, n);
        return void verdict.then(after, () => after(0));
      }
      case "hold":
        return this.hold(r, entry!);
    }
  }

  /** Goes on after a wait, unless the client left meanwhile. */
  private resume(r: InboundRequest, entry: RouteEntry, retryAfter: number): void {
    guardRequest(this.ctx.log, r.req, r.res, () => {
      if (clientGone(r.res)) return this.ctx.recorder.count(r, entry, "client_gone");
      this.proceed(r, this.ctx.table.lookup(r.fwd.host), retryAfter);
    });
  }

  private answer(r: InboundRequest, entry: RouteEntry | null, answer: Answer): void {
    this.ctx.recorder.track(r, entry, answer.reason);
    if (answer.closeConnection && r.req.httpVersionMajor === 1) r.res.shouldKeepAlive = false;
    plainText(r.res, answer.status, answer.body, { ...answer.headers, "X-Request-Id": r.fwd.requestId });
  }

  /** Holds a request for a starting app until its route gets processes (decided again then), or the pause timeout passes. */
  private hold(r: InboundRequest, entry: RouteEntry): void {
    const ctx = this.ctx;
    this.paused.hold(entry.app, r.res, {
      // The rate limit was passed already; maintenance, redirect-https or a removed domain set while it waited apply.
      wake: () => this.resume(r, entry, 0),
      timedOut: () => guardRequest(ctx.log, r.req, r.res, () => {
        if (clientGone(r.res)) return ctx.recorder.count(r, entry, "client_gone");
        ctx.recorder.track(r, entry, "start_timeout");
        const seconds = Math.round(ctx.limits.pauseTimeoutMs / 1000);
        plainText(r.res, 503, `app "${entry.app}" is starting and did not become ready within ${seconds}s; try again shortly\n`, { "Retry-After": 5, "X-Request-Id": r.fwd.requestId });
      }),
      gone: () => ctx.recorder.count(r, entry, "client_gone"),
    });
  }

  private forward(r: InboundRequest, entry: RouteEntry, maxBody: number): void {
    const exchange = new Exchange(this.ctx, { request: r, entry, maxBody });
    if (r.fwd.hasBody) this.bodies.forwarded(r.req, exchange);
    this.ctx.recorder.track(r, entry, undefined, exchange);
    exchange.send(RouteTable.pick(entry)!);
  }
}

/**
 * An HTTP/2 body needs no Content-Length (RFC 9113 §8.1.1): its end is the stream's. The HTTP/1.1
 * upstream gets it chunked (RFC 9112 §7.1), whatever the method.
 */
function framePlainBody(req: Http2ServerRequest, fwd: ForwardHeaders): void {
  if (fwd.contentLength >= 0 || req.stream.endAfterHeaders) return;
  fwd.hasBody = true;
  fwd.headers.push("Transfer-Encoding", "chunked");
}
