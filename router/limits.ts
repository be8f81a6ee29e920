/**
 * Per-client protection in front of apps: a token bucket per (app, client IP) and a cap on the
 * connections one client IP may hold open. Both are plain in-memory maps swept off the request path.
 * With REDIS_URL set the buckets live in Redis instead (router/redis-limiter.ts), so several router
 * nodes share one budget per client.
 */

/** Server-wide defaults; a route's own settings win over them. */
export interface RouterLimits {
  /** Token refill per second for one client IP on one app; 0 = no limit. */
  rateLimitRps: number;
  /** Bucket size: requests a client may make at once. */
  rateLimitBurst: number;
  /** Largest request body in bytes; 0 = no limit. */
  maxBodyBytes: number;
  /** Open connections one client IP may hold; 0 = no limit. */
  maxConnectionsPerIp: number;
  /** Time a client has to send its request headers. */
  headerTimeoutMs: number;
  /** A connection with no bytes either way for this long is closed. */
  idleTimeoutMs: number;
  /** How long a request waits for an app that is starting (route marked `paused`). */
  pauseTimeoutMs: number;
}

export const DEFAULT_LIMITS: RouterLimits = {
  rateLimitRps: 1000,
  rateLimitBurst: 2000,
  maxBodyBytes: 100 * 1024 * 1024,
  maxConnectionsPerIp: 512,
  headerTimeoutMs: 30_000,
  idleTimeoutMs: 120_000,
  pauseTimeoutMs: 30_000,
};

/**
 * The answer of a rate limiter: 0 = go ahead, otherwise the seconds until one request would be
 * allowed (for Retry-After). A shared limiter answers asynchronously.
 */
export type RateDecision = number | Promise<number>;

export interface RateLimiter {
  take(app: string, client: string, rps: number, burst: number): RateDecision;
  close(): Promise<void>;
}

interface Bucket {
  tokens: number;
  /** ms timestamp of the last refill. */
  at: number;
}

/** Buckets kept before a sweep is forced even between timer runs (a flood of distinct addresses). */
const MAX_BUCKETS = 200_000;

/** Token buckets in this process's memory. */
export class LocalRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly timer: NodeJS.Timeout;
  private readonly longestRefillMs = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {
    this.timer = setInterval(() => this.sweep(), 10_000);
    this.timer.unref();
  }

  take(app: string, client: string, rps: number, burst: number): number {
    const key = `${app} ${client}`;
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= MAX_BUCKETS) this.sweep();
      bucket = { tokens: burst, at: now };
      this.buckets.set(key, bucket);
      const fill = (burst / rps) * 1000;
      if (fill > (this.longestRefillMs.get(app) ?? 0)) this.longestRefillMs.set(app, fill);
    } else {
      bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rps);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / rps));
  }

  /** Drops buckets that have refilled completely: they hold no information a new bucket lacks. */
  sweep(): void {
    const now = this.now();
    for (const [key, bucket] of this.buckets) {
      const app = key.slice(0, key.indexOf(" "));
      if (now - bucket.at >= (this.longestRefillMs.get(app) ?? 0)) this.buckets.delete(key);
    }
  }

  get size(): number {
    return this.buckets.size;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
  }
}

/** Counts open connections per client address. */
export class ConnectionCounter {
  private readonly open = new Map<string, number>();

  /** Registers a connection; false when the address already holds `max` (0 = no limit). */
  tryOpen(address: string, max: number): boolean {
    const n = this.open.get(address) ?? 0;
    if (max > 0 && n >= max) return false;
    this.open.set(address, n + 1);
    return true;
  }

  close(address: string): void {
    const n = this.open.get(address) ?? 0;
    if (n <= 1) this.open.delete(address);
    else this.open.set(address, n - 1);
  }

  count(address: string): number {
    return this.open.get(address) ?? 0;
  }
}
