/**
 * The body timeout (`DECK_BODY_TIMEOUT`): a request's whole body must arrive within it, counted
 * from its head, over HTTP/1.1, HTTPS and HTTP/2 alike, so a client trickling its body cannot hold
 * an app connection. Requests are looked at by the proxy's once-a-second sweep (finished ones are
 * dropped there), so a request pays one map entry, not a timer.
 */
import type { ProxyRequest, ProxyResponse } from "./client-messages.ts";
import type { Exchange } from "./exchange.ts";
import type { Metering } from "./metering.ts";
import { clientGone } from "./request-recorder.ts";

/** A request whose body is still arriving, since its head was read (Date.now()). */
interface PendingBody {
  since: number;
  res: ProxyResponse;
  /** Set once the request goes to the app. */
  exchange: Exchange | undefined;
}

export class BodyDeadlines {
  private readonly bodies = new Map<ProxyRequest, PendingBody>();

  constructor(
    /** 0 = no limit. */
    private readonly limitMs: number,
    private readonly metering: Metering,
    /** Runs a step of serving `req` as the proxy's guard does (an exception costs that request only). */
    private readonly guard: (req: ProxyRequest, res: ProxyResponse, step: () => void) => void,
  ) {}

  /** Starts the clock for a request whose body is still to come. */
  watch(req: ProxyRequest, res: ProxyResponse): void {
    if (this.limitMs > 0 && !req.complete) this.bodies.set(req, { since: Date.now(), res, exchange: undefined });
  }

  /** The request went to the app: past the deadline its exchange ends it. */
  forwarded(req: ProxyRequest, exchange: Exchange): void {
    const pending = this.bodies.get(req);
    if (pending !== undefined) pending.exchange = exchange;
  }

  /** Ends requests whose body did not arrive within the body timeout; forgets those whose body did, or whose client left. */
  sweep(now: number): void {
    if (this.bodies.size === 0) return;
    const limit = this.limitMs;
    for (const [req, pending] of this.bodies) {
      const res = pending.res;
      if (req.complete || clientGone(res) || req.socket?.destroyed !== false) {
        this.bodies.delete(req);
        continue;
      }
      if (now - pending.since < limit) continue;
      const seconds = Math.round(limit / 1000);
      if (pending.exchange !== undefined) {
        this.bodies.delete(req);
        this.guard(req, res, () => pending.exchange!.bodyTimedOut(seconds));
      } else if (res.headersSent) {
        // The router answered without reading the body (404, 429 …), which still trickles in.
        this.bodies.delete(req);
        this.metering.reject("", "body_timeout");
        res.destroy();
      }
      // Else it waits for a starting app or a rate-limit decision: it is ended once forwarded.
    }
  }
}
