/**
 * The router's side of every app process it talks to, by address (`127.0.0.1:3001`): the pool of
 * keep-alive connections (upstream-pool.ts) and the live counts of requests and tunnels, which a
 * deploy's drain watches and which outlive route changes.
 */
import type { RouteSnapshot, UpstreamAddress } from "./route-table.ts";
import { UpstreamPool } from "./upstream-pool.ts";

/** Live counters for one upstream address; kept across route changes so draining can watch them. */
export interface UpstreamLoad {
  inflight: number;
  tunnels: number;
}

export class UpstreamRegistry {
  private readonly pools = new Map<string, UpstreamPool>();
  private readonly loads = new Map<string, UpstreamLoad>();

  constructor(private readonly maxIdlePerUpstream: number) {}

  /** The connection pool for an upstream address. */
  poolFor(upstream: UpstreamAddress): UpstreamPool {
    let pool = this.pools.get(upstream.address);
    if (pool === undefined) {
      pool = new UpstreamPool(upstream.host, upstream.port, this.maxIdlePerUpstream);
      this.pools.set(upstream.address, pool);
    }
    return pool;
  }

  loadFor(address: string): UpstreamLoad {
    let load = this.loads.get(address);
    if (load === undefined) {
      load = { inflight: 0, tunnels: 0 };
      this.loads.set(address, load);
    }
    return load;
  }

  /** Requests plus WebSocket tunnels currently open to an upstream. */
  inflight(address: string): number {
    const load = this.loads.get(address);
    return load === undefined ? 0 : load.inflight + load.tunnels;
  }

  /** Requests plus tunnels in flight per upstream, for upstreams that have any. */
  inflightByUpstream(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [address, load] of this.loads) {
      const n = load.inflight + load.tunnels;
      if (n > 0) out[address] = n;
    }
    return out;
  }

  /** Requests and tunnels in flight across all upstreams. */
  totalInflight(): number {
    let n = 0;
    for (const load of this.loads.values()) n += load.inflight + load.tunnels;
    return n;
  }

  /** Requests (not tunnels) in flight across all upstreams: what a closing router waits for. */
  requestsInFlight(): number {
    let n = 0;
    for (const load of this.loads.values()) n += load.inflight;
    return n;
  }

  /**
   * Upstreams no route names any more (an old release after a switch) keep no idle connections: they
   * are closed now, and those still carrying a request are closed when it ends. A process being
   * drained then sees its keep-alive connections go instead of waiting for them to time out.
   */
  retireUnrouted(snapshot: RouteSnapshot): void {
    if (this.pools.size === 0) return;
    const routed = new Set<string>();
    for (const entry of snapshot.byApp.values()) for (const u of entry.upstreams) routed.add(u.address);
    for (const [address, pool] of this.pools) pool.setRetired(!routed.has(address));
  }

  /** Closes idle connections past their keep-alive time. */
  sweepIdle(now: number): void {
    for (const pool of this.pools.values()) pool.sweep(now);
  }

  /** Forgets upstreams with nothing in flight and no connection (those that left the table); off the request path. */
  forgetUnused(): void {
    for (const [address, load] of this.loads) {
      if (load.inflight === 0 && load.tunnels === 0) this.loads.delete(address);
    }
    for (const [address, pool] of this.pools) {
      if (pool.connections === 0) this.pools.delete(address);
    }
  }

  /** Closes every idle connection (in-use ones end with their requests). */
  closeIdle(): void {
    for (const pool of this.pools.values()) pool.closeIdle();
  }
}
