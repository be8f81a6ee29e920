/**
 * When a request (or an upgrade handshake) that failed on one upstream connection may be sent again:
 * one policy for everything the router sends to apps. At most one retry, and only when the first
 * attempt provably delivered nothing the app could have acted on:
 * - the connection was never made (refused, unreachable): for any method, since no byte was sent;
 * - a reused keep-alive connection closed before any answer, for a body-less idempotent request
 *   (RFC 9110 §9.2.2: such a request may be sent again; a body has already been consumed).
 */

/** Errors raised before a single byte reached the upstream: retrying cannot duplicate anything. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN"]);

/** Methods RFC 9110 §9.2.2 calls idempotent. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** What is known about a failed attempt. */
export interface FailedAttempt {
  /** Attempts made before this one (0 for the first). */
  readonly retries: number;
  /** Part of an answer already reached the client: nothing can be sent again. */
  readonly answered: boolean;
  /** The socket error's code, when the connection failed with one. */
  readonly errorCode: string | undefined;
  /** The connection had carried an earlier request (it was taken from the pool). */
  readonly reused: boolean;
  /** Bytes the upstream sent on this attempt. */
  readonly bytesReceived: number;
  readonly method: string | undefined;
  readonly hasBody: boolean;
}

export function mayRetry(attempt: FailedAttempt): boolean {
  if (attempt.retries > 0 || attempt.answered) return false;
  if (attempt.errorCode !== undefined && NOT_CONNECTED.has(attempt.errorCode)) return true;
  return attempt.reused && attempt.bytesReceived === 0 && !attempt.hasBody && IDEMPOTENT.has(attempt.method ?? "");
}
