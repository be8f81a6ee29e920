import type net from "node:net";

export interface PreAuthLimits {
  /** How long a connection may take to authenticate. */
  authTimeoutMs: number;
  /** Unauthenticated connections one client address may hold. */
  maxPerAddress: number;
  /** Unauthenticated connections all clients together may hold. */
  maxTotal: number;
}

interface Pending {
  address: string;
  timer: NodeJS.Timeout;
}

/** ::ffff:10.0.0.1 and 10.0.0.1 are one client. */
export function clientAddress(remote: string | undefined): string {
  const a = remote ?? "unknown";
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a;
}

/** The one line a refused client gets before the SSH version exchange (RFC 4253 §4.2 allows such lines). */
export const TOO_MANY_LINE = "deck: too many SSH connections are waiting to authenticate; try again shortly\r\n";

/**
 * Guards the SSH port before authentication, as OpenSSH's LoginGraceTime and MaxStartups do: a
 * connection must authenticate within the timeout, and a client address (and all clients together)
 * may hold only so many unauthenticated connections; one more is closed at once. Authenticated
 * connections no longer count.
 */
export class PreAuthGate {
  private readonly pending = new Map<string, Pending>();
  private readonly perAddress = new Map<string, number>();
  /** Addresses (and "*" for the global cap) already reported as over their cap, so a flood logs once. */
  private readonly reported = new Set<string>();

  constructor(private readonly limits: PreAuthLimits, private readonly log: (line: string) => void) {}

  get unauthenticated(): number {
    return this.pending.size;
  }

  /** Admits `socket` (true) or closes it at once (false). */
  admit(socket: net.Socket): boolean {
    const address = clientAddress(socket.remoteAddress);
    const held = this.perAddress.get(address) ?? 0;
    const over = held >= this.limits.maxPerAddress ? address : this.pending.size >= this.limits.maxTotal ? "*" : null;
    if (over !== null) {
      if (!this.reported.has(over)) {
        this.reported.add(over);
        this.log(over === "*"
          ? `ssh: ${this.pending.size} connections are waiting to authenticate (DECK_SSH_MAX_UNAUTHENTICATED); closing new ones until some finish`
          : `ssh: ${address} holds ${held} connections that have not authenticated (DECK_SSH_MAX_UNAUTHENTICATED_PER_IP); closing its new ones until some finish`);
      }
      socket.on("error", () => undefined);
      socket.end(TOO_MANY_LINE, () => socket.destroy());
      return false;
    }
    const key = keyOf(socket.remoteAddress, socket.remotePort);
    const timer = setTimeout(() => socket.destroy(), this.limits.authTimeoutMs);
    timer.unref();
    this.pending.set(key, { address, timer });
    this.perAddress.set(address, held + 1);
    socket.once("close", () => this.release(key));
    return true;
  }

  /** The connection from `ip`:`port` has authenticated: no deadline, and it no longer counts. */
  authenticated(ip: string | undefined, port: number | undefined): void {
    this.release(keyOf(ip, port));
  }

  private release(key: string): void {
    const p = this.pending.get(key);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(key);
    const left = (this.perAddress.get(p.address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(p.address, left);
    else this.perAddress.delete(p.address);
    this.reported.delete(p.address);
    this.reported.delete("*");
  }
}

function keyOf(ip: string | undefined, port: number | undefined): string {
  return `${ip ?? ""}|${port ?? 0}`;
}
