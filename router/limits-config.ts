/** The router's limits and rate limiter as configured (DECK_RATE_LIMIT, REDIS_URL, ...). */
import type { DeckConfig } from "../config/index.ts";
import { LocalRateLimiter, type RateLimiter, type RouterLimits } from "./limits.ts";
import { RedisRateLimiter } from "./redis-limiter.ts";

export function limitsFromConfig(config: DeckConfig): RouterLimits {
  return {
    rateLimitRps: config.rateLimitRps,
    rateLimitBurst: config.rateLimitBurst,
    maxBodyBytes: config.maxBodyBytes,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    headerTimeoutMs: config.headerTimeout * 1000,
    bodyTimeoutMs: config.bodyTimeout * 1000,
    idleTimeoutMs: config.idleTimeout * 1000,
    pauseTimeoutMs: config.pauseTimeout * 1000,
  };
}

/** Buckets shared through Redis when REDIS_URL is set (several router nodes), else in memory. */
export function createRateLimiter(config: DeckConfig, log: (line: string) => void): RateLimiter {
  if (config.redisUrl) {
    log(`rate limits are shared through Redis at ${config.redisUrl.replace(/\/\/[^@/]*@/, "//***@")}`);
    return new RedisRateLimiter(config.redisUrl, log);
  }
  return new LocalRateLimiter();
}
