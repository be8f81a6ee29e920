/** Both rate limiters pass the RateLimiter contract: LocalRateLimiter, and RedisRateLimiter on a real redis-server. */
import { redisUnavailable, startRedis, type TestRedis } from "../test/helpers/redis.ts";
import { LocalRateLimiter } from "./limits.ts";
import { describeRateLimiterContract } from "./rate-limiter.contract.ts";
import { RedisRateLimiter } from "./redis-limiter.ts";

describeRateLimiterContract("LocalRateLimiter", async () => ({
  create: async () => new LocalRateLimiter(),
  close: async () => {},
}));

describeRateLimiterContract("RedisRateLimiter", async () => {
  const redis: TestRedis = await startRedis();
  return {
    async create() {
      const limiter = new RedisRateLimiter(redis.url);
      await limiter.ready();
      return limiter;
    },
    close: () => redis.stop(),
  };
}, { skip: redisUnavailable() ?? undefined });
