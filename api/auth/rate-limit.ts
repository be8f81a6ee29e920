import { isIPv4, isIPv6 } from "node:net";

/**
 * Token buckets kept in memory, one per key: `capacity` attempts at once, refilled evenly so that a
 * full bucket again takes `windowSeconds`. In memory on purpose: a restart forgets (at worst one more
 * window for a guesser), and sign-in never waits on a shared store.
 */
export interface RateLimitOptions {
  capacity: number;
  windowSeconds: number;
  /** Epoch milliseconds; replaces the clock for tests. */
  now?: () => number;
  /** Above this many keys, buckets that have refilled are forgotten. */
  maxKeys?: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterSeconds: number };

export interface RateLimiter {
  /** Spends one token for `key`, or says how long until one is back. */
  take(key: string): TakeResult;
  /** Like `take` without spending. */
  peek(key: string): TakeResult;
  /** Gives back one token (an attempt that turned out not to count). */
  refund(key: string): void;
  /** Fills the key's bucket again. */
  reset(key: string): void;
  readonly size: number;
}

interface Bucket { tokens: number; at: number }

export function createRateLimiter(options: RateLimitOptions): RateLimiter {
  const { capacity, windowSeconds } = options;
  if (!(capacity >= 1 && windowSeconds > 0)) throw new RangeError("a rate limit needs capacity ≥ 1 and a positive window");
  const now = options.now ?? Date.now;
  const maxKeys = options.maxKeys ?? 100_000;
  const perMs = capacity / (windowSeconds * 1000);
  const buckets = new Map<string, Bucket>();

  const current = (key: string): Bucket => {
    const t = now();
    const b = buckets.get(key);
    if (!b) return { tokens: capacity, at: t };
    return { tokens: Math.min(capacity, b.tokens + Math.max(0, t - b.at) * perMs), at: t };
  };
  const verdict = (b: Bucket): TakeResult =>
    b.tokens >= 1 ? { ok: true } : { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000)) };
  const sweep = () => {
    for (const [key] of buckets) if (current(key).tokens >= capacity) buckets.delete(key);
  };

  return {
    take(key) {
      const b = current(key);
      const result = verdict(b);
      if (result.ok) b.tokens -= 1;
      if (!buckets.has(key) && buckets.size >= maxKeys) sweep();
      buckets.set(key, b);
      return result;
    },
    peek: (key) => verdict(current(key)),
    refund(key) {
      const b = current(key);
      b.tokens = Math.min(capacity, b.tokens + 1);
      if (b.tokens >= capacity) buckets.delete(key);
      else buckets.set(key, b);
    },
    reset: (key) => void buckets.delete(key),
    get size() {
      return buckets.size;
    },
  };
}

/** Failed sign-ins allowed per account: 5 per 15 minutes. */
export const SIGN_IN_ACCOUNT_LIMIT = { capacity: 5, windowSeconds: 15 * 60 } as const;
/** Failed sign-ins allowed per client address: 20 per minute. */
export const SIGN_IN_IP_LIMIT = { capacity: 20, windowSeconds: 60 } as const;

export interface SignInLimiter {
  readonly account: RateLimiter;
  readonly ip: RateLimiter;
  /**
   * Spends one attempt for both the account and the address, or neither when either is out
   * (retry after the longer wait). Spent up front so that a burst of parallel guesses is counted
   * before any password is checked.
   */
  takeAttempt(attempt: { email: string; ip: string }): TakeResult;
  /** The attempt was not a failure (signed in, or the password was right and a code is next). */
  forgive(attempt: { email: string; ip: string }, options?: { signedIn?: boolean }): void;
}

export interface SignInLimiterOptions {
  account?: { capacity: number; windowSeconds: number };
  ip?: { capacity: number; windowSeconds: number };
  now?: () => number;
}

export function createSignInLimiter(options: SignInLimiterOptions = {}): SignInLimiter {
  const account = createRateLimiter({ ...(options.account ?? SIGN_IN_ACCOUNT_LIMIT), now: options.now });
  const ip = createRateLimiter({ ...(options.ip ?? SIGN_IN_IP_LIMIT), now: options.now });
  return {
    account,
    ip,
    takeAttempt(attempt) {
      const a = accountKey(attempt.email);
      const i = ipKey(attempt.ip);
      const byAccount = account.peek(a);
      const byIp = ip.peek(i);
      if (!byAccount.ok || !byIp.ok) {
        const waits = [byAccount, byIp].map((r) => (r.ok ? 0 : r.retryAfterSeconds));
        return { ok: false, retryAfterSeconds: Math.max(...waits) };
      }
      account.take(a);
      ip.take(i);
      return { ok: true };
    },
    forgive(attempt, { signedIn = false } = {}) {
      // A successful sign-in clears the account's earlier failures; the address only gets this attempt back.
      if (signedIn) account.reset(accountKey(attempt.email));
      else account.refund(accountKey(attempt.email));
      ip.refund(ipKey(attempt.ip));
    },
  };
}

export function accountKey(email: string): string {
  return `account:${email.trim().toLowerCase()}`;
}

/**
 * One key per client: IPv4 addresses as they are (IPv4-mapped IPv6 unwrapped), IPv6 by /64, since
 * one host usually holds a whole /64.
 */
export function ipKey(ip: string): string {
  const address = ip.trim().toLowerCase().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
  if (isIPv4(address)) return `ip:${address}`;
  if (isIPv6(address)) return `ip:${ipv6Prefix64(address)}::/64`;
  return `ip:${address}`;
}

function ipv6Prefix64(address: string): string {
  const [head, tail] = address.split("%")[0]!.split("::") as [string, string | undefined];
  const left = head ? head.split(":") : [];
  const right = tail === undefined ? [] : tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":");
}
