/**
 * ACME HTTP-01 challenge responses (RFC 8555 §8.3): while the deck server proves control of a domain,
 * the router answers `GET /.well-known/acme-challenge/TOKEN` with the key authorization, for any Host,
 * before any route is looked up. The local router keeps tokens in memory; router nodes load them from
 * the `acme_challenges` table (written by the deck server alongside).
 */
import type { ProxyRequest, ProxyResponse } from "./client-messages.ts";

export const ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

/** RFC 8555 §8.3: a token is base64url; anything else cannot be one of ours. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

export class AcmeChallenges {
  private readonly tokens = new Map<string, string>();

  static isToken(token: string): boolean {
    return TOKEN.test(token);
  }

  set(token: string, keyAuthorization: string): void {
    this.tokens.set(token, keyAuthorization);
  }

  delete(token: string): boolean {
    return this.tokens.delete(token);
  }

  /** Serves exactly these answers (a router node reloading them from PostgreSQL). */
  replaceAll(entries: readonly { token: string; keyAuthorization: string }[]): void {
    this.tokens.clear();
    for (const e of entries) if (TOKEN.test(e.token)) this.tokens.set(e.token, e.keyAuthorization);
  }

  get size(): number {
    return this.tokens.size;
  }

  /** Answers a request whose path starts with ACME_CHALLENGE_PREFIX. */
  answer(req: ProxyRequest, res: ProxyResponse): void {
    const path = (req.url ?? "").slice(ACME_CHALLENGE_PREFIX.length).split("?")[0];
    const value = req.method === "GET" || req.method === "HEAD" ? this.tokens.get(path) : undefined;
    const body = value ?? "no such ACME challenge token\n";
    res.writeHead(value === undefined ? 404 : 200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body), "Cache-Control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : body);
  }
}
