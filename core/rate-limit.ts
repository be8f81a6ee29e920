/**
 * What a per-client rate limit may be, wherever it is set: `router:set APP rate-limit`,
 * `PATCH /apps/APP/router` and `DECK_RATE_LIMIT` all check it here, so the three agree.
 */

/** Fastest refill: far above any sensible value, it keeps the stored column in range. */
export const RATE_LIMIT_RPS_MAX = 1_000_000;
/**
 * Slowest refill that is not "no limit": one request per 11.6 days, the smallest value `router:set`
 * can write (six decimals). Slower ones only produce waits no client will honour.
 */
export const RATE_LIMIT_RPS_MIN = 0.000001;

/** What is allowed, for "... is not valid: give ..." messages. */
export const RATE_LIMIT_ALLOWED = `a number of requests per second per client IP from ${RATE_LIMIT_RPS_MIN.toFixed(6)} to ${RATE_LIMIT_RPS_MAX}, like 10 or 0.5 (0 = no limit)`;

/** True for 0 (no limit) and for rates from RATE_LIMIT_RPS_MIN to RATE_LIMIT_RPS_MAX. */
export function isRateLimitRps(value: number): boolean {
  return Number.isFinite(value) && (value === 0 || (value >= RATE_LIMIT_RPS_MIN && value <= RATE_LIMIT_RPS_MAX));
}

/**
 * The burst an app gets when it sets its own rate-limit but no rate-burst: two seconds' worth, at
 * least one request. (The server-wide DECK_RATE_BURST goes with DECK_RATE_LIMIT only.)
 */
export function burstForRate(rps: number): number {
  return Math.max(1, Math.ceil(rps * 2));
}
