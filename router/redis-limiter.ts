/**
 * Rate-limit buckets in Redis, so every router node draws from one budget per (app, client IP).
 * One round trip per request: a Lua script refills and takes a token atomically (token bucket,
 * same arithmetic as LocalRateLimiter), timed by Redis's own clock so nodes whose clocks disagree
 * still agree on every bucket. A limiter outage must not take apps down: when Redis does not answer
 * within a short deadline (closed connection, or a Redis that hangs with its connection open),
 * requests pass unlimited without waiting for it, the outage is logged once, and Redis is asked
 * regularly whether it is back.
 */
import { Redis } from "ioredis";
import { clientKey, MAX_RETRY_AFTER_S, type RateDecision, type RateLimiter } from "./limits.ts";

/** Longest time a bucket key is kept (31,700 years): beyond what any rate and burst deck accepts need. */
const MAX_TTL_MS = 1e15;

/**
 * KEYS[1] bucket key; ARGV: rps, burst. Returns 0 when a token was taken, else the seconds until one
 * is available. The key expires once the bucket would be full again. Time is Redis's TIME, which
 * needs effects replication (the default from Redis 5; replicate_commands asks for it before that).
 * Numbers reach Redis commands as strings formatted here: Lua would write large ones as `1e+15`.
 */
const TAKE = `
if redis.replicate_commands then redis.replicate_commands() end
local rps = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local b = redis.call('HMGET', KEYS[1], 't', 'a')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + (math.max(0, now - at) / 1000) * rps)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.min(${MAX_RETRY_AFTER_S}, math.max(1, math.ceil((1 - tokens) / rps)))
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'a', string.format('%.3f', now))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.min(${MAX_TTL_MS}, math.ceil(((burst - tokens) / rps) * 1000) + 1000)))
return wait
`;

type LimiterRedis = Redis & { deckTake(key: string, rps: number, burst: number): Promise<number> };

export interface RedisRateLimiterOptions {
  /** How long one decision may wait for Redis before its request passes unlimited (ms). */
  decisionTimeoutMs?: number;
  /** While Redis is not answering, how often it is asked whether it is back (ms). */
  probeIntervalMs?: number;
}

/** `connecting` until the first connection is ready; requests pass unlimited in every state but `answering`. */
type RedisHealth = "connecting" | "answering" | "not_answering";

/** Script errors are logged at most this often (each would otherwise log once per request). */
const SCRIPT_ERROR_LOG_INTERVAL_MS = 60_000;

export class RedisRateLimiter implements RateLimiter {
  private readonly redis: LimiterRedis;
  private readonly decisionTimeoutMs: number;
  private readonly probeIntervalMs: number;
  private health: RedisHealth = "connecting";
  private probe: NodeJS.Timeout | null = null;
  private probing = false;
  private scriptErrorLoggedAt = -Infinity;
  private scriptErrorsNotLogged = 0;

  constructor(url: string, private readonly log: (line: string) => void = () => {}, options: RedisRateLimiterOptions = {}) {
    this.decisionTimeoutMs = options.decisionTimeoutMs ?? 100;
    this.probeIntervalMs = options.probeIntervalMs ?? 500;
    this.redis = new Redis(url, {
      // Requests must not queue behind a dead connection (offline queue, retries) nor wait for a
      // Redis that hangs with its connection open (command timeout): they pass unlimited instead.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.decisionTimeoutMs,
      lazyConnect: false,
    }) as LimiterRedis;
    this.redis.defineCommand("deckTake", { numberOfKeys: 1, lua: TAKE });
    this.redis.on("error", (e: Error) => this.setHealth("not_answering", e.message));
    this.redis.on("ready", () => this.setHealth("answering"));
  }

  take(app: string, client: string, rps: number, burst: number): RateDecision {
    // Not answering: no request waits for it; the probe notices when it is back.
    if (this.health !== "answering") return 0;
    return this.redis.deckTake(`deck:rl:${app}:${clientKey(client)}`, rps, burst).then(
      (wait) => Number(wait),
      (e: Error) => {
        this.failed(app, e);
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
    this.stopProbing();
    this.redis.disconnect();
  }

  /** A Redis error reply is the script failing on a Redis that answers; anything else means Redis is not answering. */
  private failed(app: string, e: Error): void {
    if (e.name === "ReplyError") return this.logScriptError(app, e.message);
    this.setHealth("not_answering", e.message === "Command timed out" ? `no answer within ${this.decisionTimeoutMs} ms` : e.message);
  }

  /** Every change of health happens here, and each is logged once. */
  private setHealth(next: RedisHealth, reason = ""): void {
    const was = this.health;
    if (was === next) return;
    this.health = next;
    if (next === "not_answering") {
      this.log(`rate limits: Redis is not answering (${reason}); requests pass unlimited until it is back`);
      this.startProbing();
    } else if (next === "answering") {
      this.stopProbing();
      if (was === "not_answering") this.log("rate limits: Redis is reachable again; limits are shared across router nodes");
    }
  }

  /**
   * A connection that was closed is reopened by ioredis (then `ready` fires). One that stays open
   * while Redis hangs needs asking: a PING answered within the deadline means Redis is back.
   */
  private startProbing(): void {
    if (this.probe !== null) return;
    this.probe = setInterval(() => {
      if (this.probing || this.redis.status !== "ready") return;
      this.probing = true;
      this.redis.ping().then(
        () => this.setHealth("answering"),
        () => {},
      ).finally(() => { this.probing = false; });
    }, this.probeIntervalMs);
    this.probe.unref();
  }

  private stopProbing(): void {
    if (this.probe !== null) clearInterval(this.probe);
    this.probe = null;
  }

  private logScriptError(app: string, message: string): void {
    const now = performance.now();
    if (now - this.scriptErrorLoggedAt < SCRIPT_ERROR_LOG_INTERVAL_MS) {
      this.scriptErrorsNotLogged += 1;
      return;
    }
    const more = this.scriptErrorsNotLogged > 0 ? ` (${this.scriptErrorsNotLogged} more since the last such line)` : "";
    this.scriptErrorLoggedAt = now;
    this.scriptErrorsNotLogged = 0;
    this.log(`rate limits: Redis answered the rate-limit script for app "${app}" with an error (${message.split("\n")[0]}); those requests pass unlimited${more}; leave keys under deck:rl: to deck`);
  }
}
