/**
 * Per-client protection in front of apps: a token bucket per (app, client IP) and a cap on the
 * connections one client IP may hold open. Both are plain in-memory maps with bounded work per request.
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
  /** Time a client has to send a whole request body once its head is read; 0 = no limit. */
  bodyTimeoutMs: number;
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
  bodyTimeoutMs: 60_000,
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

/**
 * Longest Retry-After a limiter answers, in seconds (a year). Rates deck accepts never wait that
 * long; the cap keeps the header a plain whole number whatever rate a route carries.
 */
export const MAX_RETRY_AFTER_S = 31_536_000;

/** Seconds until a bucket holding `tokens` (< 1) has one token at `rps`: a whole number from 1 to MAX_RETRY_AFTER_S. */
export function retryAfterSeconds(tokens: number, rps: number): number {
  const wait = Math.ceil((1 - tokens) / rps);
  return Number.isFinite(wait) ? Math.min(MAX_RETRY_AFTER_S, Math.max(1, wait)) : MAX_RETRY_AFTER_S;
}

/** `::ffff:1.2.3.4` and its hexadecimal spelling `::ffff:102:304` (RFC 4291 §2.5.5.2). */
const IPV4_MAPPED = /^(?:::|(?:0{1,4}:){5})ffff:(?:(\d{1,3}(?:\.\d{1,3}){3})|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i;

/**
 * The key a client address is counted under: an IPv4-mapped IPv6 address (what a socket bound to
 * `::` reports for an IPv4 client) becomes the IPv4 address, so a client has one bucket and one
 * connection count whichever way a router node is bound.
 */
export function clientKey(address: string): string {
  // Only `::ffff:…` and `0:0:0:0:0:ffff:…` can be mapped: everything else is its own key, with no regex.
  const first = address.charCodeAt(0);
  if (first !== 58 /* : */ && first !== 48 /* 0 */) return address;
  const m = IPV4_MAPPED.exec(address);
  if (m === null) return address;
  if (m[1] !== undefined) return m[1];
  const high = parseInt(m[2], 16);
  const low = parseInt(m[3], 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

interface Bucket {
  tokens: number;
  /** Monotonic ms of the last refill. */
  at: number;
  /** Monotonic ms at which the bucket is full again: from then on it holds nothing a new bucket lacks. */
  fullAt: number;
}

/**
 * Buckets kept at most. Past it the least recently used bucket is dropped (its client starts over
 * with a full bucket), so a flood of distinct addresses costs O(1) per request and bounded memory.
 */
export const MAX_BUCKETS = 200_000;
/** Full buckets are dropped this often. */
const SWEEP_INTERVAL_MS = 10_000;

/**
 * Token buckets in this process's memory. Time comes from a monotonic clock (performance.now), so a
 * step of the wall clock neither locks clients out nor refills their buckets.
 */
export class LocalRateLimiter implements RateLimiter {
  /** In order of last use, least recent first: a Map keeps insertion order, and a used bucket is moved to the end. */
  private readonly buckets = new Map<string, Bucket>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.timer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.timer.unref();
  }

  take(app: string, client: string, rps: number, burst: number): number {
    const key = `${app} ${clientKey(client)}`;
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: burst, at: now, fullAt: now };
      if (this.buckets.size >= MAX_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
    } else {
      // A clock that went back (an injected one; performance.now never does) refills nothing and takes nothing.
      bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, now - bucket.at) / 1000) * rps);
      bucket.at = now;
      this.buckets.delete(key);
    }
    this.buckets.set(key, bucket);
    let wait = 0;
    if (bucket.tokens >= 1) bucket.tokens -= 1;
    else wait = retryAfterSeconds(bucket.tokens, rps);
    bucket.fullAt = now + ((burst - bucket.tokens) / rps) * 1000;
    return wait;
  }

  /** Drops buckets that have refilled completely: they hold no information a new bucket lacks. */
  sweep(): void {
    const now = this.now();
    for (const [key, bucket] of this.buckets) if (now >= bucket.fullAt) this.buckets.delete(key);
  }

  get size(): number {
    return this.buckets.size;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
  }
}

/** Counts open connections per client address (IPv4-mapped addresses as their IPv4 form, see clientKey). */
export class ConnectionCounter {
  private readonly open = new Map<string, number>();

  /** Registers a connection; false when the address already holds `max` (0 = no limit). */
  tryOpen(address: string, max: number): boolean {
    const key = clientKey(address);
    const n = this.open.get(key) ?? 0;
    if (max > 0 && n >= max) return false;
    this.open.set(key, n + 1);
    return true;
  }

  close(address: string): void {
    const key = clientKey(address);
    const n = this.open.get(key) ?? 0;
    if (n <= 1) this.open.delete(key);
    else this.open.set(key, n - 1);
  }

  count(address: string): number {
    return this.open.get(clientKey(address)) ?? 0;
  }
}
