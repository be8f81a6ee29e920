/**
 * Failed SSH sign-ins for the audit log: what a connection tried before it closed without signing in,
 * as one entry per connection (a client offers each of its keys in turn; that is one attempt, not
 * several). Probing with method `none`, which every client does first, is not an attempt.
 */

export type SshSignInFailure =
  /** A registered key whose signature did not verify. */
  | { reason: "bad_signature"; userId: number; email: string; fingerprint: string }
  /** A key no user has registered. */
  | { reason: "unknown_key"; fingerprint: string }
  /** A method other than public keys (password, keyboard-interactive). */
  | { reason: "method_refused"; method: string };

/** Which failure a connection's entry reports when it tried several things: the one that says most. */
const WEIGHT: Record<SshSignInFailure["reason"], number> = { method_refused: 0, unknown_key: 1, bad_signature: 2 };

export interface SshSignInAuditEntry {
  userId: number | null;
  action: "auth:sign-in";
  target: string;
  sourceIp: string | null;
  result: "failed";
  data: Record<string, unknown>;
}

/** Collects one connection's refused attempts. */
export class SshSignInAttempts {
  private worst: SshSignInFailure | null = null;
  private username = "";
  private keys = new Set<string>();

  note(username: string, failure: SshSignInFailure): void {
    this.username = username.slice(0, 64);
    if ("fingerprint" in failure) this.keys.add(failure.fingerprint);
    if (!this.worst || WEIGHT[failure.reason] > WEIGHT[this.worst.reason]) this.worst = failure;
  }

  /** The audit entry of a connection that closed without signing in; null when it never tried. */
  entry(sourceIp: string | null): SshSignInAuditEntry | null {
    const f = this.worst;
    if (!f) return null;
    const data: Record<string, unknown> = { via: "ssh", reason: f.reason, username: this.username };
    if ("fingerprint" in f) Object.assign(data, { fingerprint: f.fingerprint, keysOffered: this.keys.size });
    if (f.reason === "method_refused") data.method = f.method;
    // A public key is no secret: whoever offered a registered key without its private half proved
    // nothing, so the entry names the key's owner but is not written against them.
    if (f.reason === "bad_signature") data.keyOwner = f.email;
    const target = `key:${"fingerprint" in f ? f.fingerprint : "none"}`;
    return { userId: null, action: "auth:sign-in", target: f.reason === "method_refused" ? "ssh" : target, sourceIp, result: "failed", data };
  }
}
