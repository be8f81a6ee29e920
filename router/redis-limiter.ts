/**
 * Rate-limit buckets in Redis, so every router node draws from one budget per (app, client IP).
 * One round trip per request: a Lua script refills and takes a token atomically (token bucket,
 * same arithmetic as LocalRateLimiter). If Redis does not answer, requests are let through (a
 * limiter outage must not take apps down) and the failure is logged once until Redis is back.
 */
import { Redis } from "ioredis";
import type { RateLimiter } from "./limits.ts";

/**
 * KEYS[1] bucket key; ARGV: rps, burst, now (ms). Returns 0 when a token was taken, else the seconds
 * until one is available. The key expires once the bucket would be full again.
 */
const TAKE = `
local rps = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 'a')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + ((now - at) / 1000) * rps)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.max(1, math.ceil((1 - tokens) / rps))
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'a', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rps) * 1000) + 1000)
return wait
`;

type LimiterRedis = Redis & { deckTake(key: string, rps: number, burst: number, now: number): Promise<number> };

export class RedisRateLimiter implements RateLimiter {
  private readonly redis: LimiterRedis;
  private failing = false;

  constructor(url: string, private readonly log: (line: string) => void = () => {}) {
    this.redis = new Redis(url, {
      // Requests must not queue behind a dead connection: fail fast and let them through.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      lazyConnect: false,
    }) as LimiterRedis;
    this.redis.defineCommand("deckTake", { numberOfKeys: 1, lua: TAKE });
    this.redis.on("error", (e: Error) => this.fail(e));
    this.redis.on("ready", () => {
      if (this.failing) this.log("rate limits: Redis is reachable again; limits are shared across router nodes");
      this.failing = false;
    });
  }

  private fail(e: Error): void {
    if (this.failing) return;
    this.failing = true;
    this.log(`rate limits: Redis is not answering (${e.message}); requests pass unlimited until it is back`);
  }

  take(app: string, client: string, rps: number, burst: number): Promise<number> {
    // Time from this node's clock: nodes whose clocks disagree by a second only shift refills slightly.
    return this.redis.deckTake(`deck:rl:${app}:${client}`, rps, burst, Date.now()).then(
      (wait) => Number(wait),
      (e: Error) => {
        this.fail(e);
        return 0;
      },
    );
  }

  /** Resolves once connected (until then requests pass unlimited, as during an outage). */
  ready(): Promise<void> {
    if (this.redis.status === "ready") return Promise.resolve();
    return new Promise((resolve) => this.redis.once("ready", () => resolve()));
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
