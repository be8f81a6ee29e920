/**
 * What the parts of the proxy share (see proxy-server.ts for how they fit together): the route
 * table, the limits, the upstream connections, metering and the log.
 */
import type { BandwidthThrottle } from "./bandwidth-throttle.ts";
import type { ProxyRequest, ProxyResponse } from "./client-messages.ts";
import type { ForwardHeaders } from "./forward-headers.ts";
import type { RateLimiter, RouterLimits } from "./limits.ts";
import type { Metering } from "./metering.ts";
import type { RequestRecorder } from "./request-recorder.ts";
import type { RouterPolicy } from "./request-decision.ts";
import type { RouteTable } from "./route-table.ts";
import type { UpstreamRegistry } from "./upstream-registry.ts";

export interface ProxyContext {
  readonly table: RouteTable;
  readonly limits: RouterLimits;
  /** The limits and HTTPS port the routing ladder reads. */
  readonly policy: RouterPolicy;
  readonly rateLimiter: RateLimiter;
  readonly upstreams: UpstreamRegistry;
  readonly metering: Metering;
  /** Per-app response bandwidth buckets (routes with bandwidthBytesPerSecond). */
  readonly bandwidth: BandwidthThrottle;
  /** Counts and logs each request once it is over. */
  readonly recorder: RequestRecorder;
  readonly log: (line: string) => void;
  /** The router is shutting down: no request after the current one on a connection, nothing held. */
  closing(): boolean;
}

/** One client request while it is served: what the proxy passes from step to step. */
export interface InboundRequest {
  readonly req: ProxyRequest;
  readonly res: ProxyResponse;
  /** The headers for the app, with the request's host, id and framing. */
  readonly fwd: ForwardHeaders;
  /** When it arrived (performance.now()), for its latency. */
  readonly start: number;
}
