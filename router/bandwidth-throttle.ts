/**
 * The response bandwidth of apps with `bandwidthBytesPerSecond` (see RouteSettings): one token bucket
 * per app, shared by all of the app's responses through this router process, holding one second's
 * worth of bytes.
 *
 * A response's body bytes are taken from the bucket as they are passed to the client; a piece already
 * read is always passed on, so the bucket may go into deficit, and the exchange then stops reading the
 * app's connection for as long as the deficit takes to refill (exchange.ts). Over any span of t
 * seconds an app thus gets at most rate × (1 + t) bytes, plus at most one read per response in flight.
 *
 * Buckets are dropped once full (an idle app's bucket would be full anyway, so dropping it changes
 * nothing) and when the app's route no longer has a limit, so the map holds only apps limited and busy.
 */
import type { RouteSnapshot } from "./route-table.ts";

interface Bucket {
  /** Bytes that may pass now; negative = the deficit still to refill. */
  tokens: number;
  /** Refill rate and size, in bytes per second (the route's limit when last taken from). */
  rate: number;
  /** When `tokens` was last brought up to date (ms, from the throttle's clock). */
  at: number;
}

export class BandwidthThrottle {
  private readonly buckets = new Map<string, Bucket>();

  /** `now` is a monotonic clock in milliseconds (tests pass their own). */
  constructor(private readonly now: () => number = () => performance.now()) {}

  /**
   * Takes `bytes` from the app's bucket at `rate` bytes per second. Returns how many milliseconds the
   * app's responses should wait before reading more (0 = none): the time the deficit takes to refill.
   */
  take(app: string, rate: number, bytes: number): number {
    const now = this.now();
    let bucket = this.buckets.get(app);
    if (bucket === undefined) {
      bucket = { tokens: rate, rate, at: now };
      this.buckets.set(app, bucket);
    } else {
      // A changed limit applies from now on: the bucket refills at the new rate, up to the new size.
      bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) * bucket.rate) / 1000);
      bucket.rate = rate;
      bucket.at = now;
    }
    bucket.tokens -= bytes;
    return bucket.tokens >= 0 ? 0 : Math.ceil((-bucket.tokens * 1000) / rate);
  }

  /** Apps that have a bucket now (in use or not yet swept). */
  get size(): number {
    return this.buckets.size;
  }

  has(app: string): boolean {
    return this.buckets.has(app);
  }

  /** Drops the buckets that are full by now: taking from a fresh one gives the same answer. */
  sweep(): void {
    if (this.buckets.size === 0) return;
    const now = this.now();
    for (const [app, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * b.rate) / 1000 >= b.rate) this.buckets.delete(app);
    }
  }

  /**
   * Drops the buckets of apps the table no longer limits (or no longer routes). Responses under way
   * keep the limit of the route they started with, and may make a new bucket, which is swept once full.
   */
  retainLimited(snapshot: RouteSnapshot): void {
    for (const app of this.buckets.keys()) {
      if (snapshot.byApp.get(app)?.settings.bandwidthBytesPerSecond === undefined) this.buckets.delete(app);
    }
  }
}
