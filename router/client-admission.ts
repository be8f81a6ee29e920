/**
 * Which client connections the router takes, and how long it keeps them: the cap on connections
 * per client address, and the timeouts for slow and idle clients. All timeouts are checked by one
 * sweep a second, so a connection costs a map entry, not a timer.
 */
import type { Socket } from "node:net";
import type { ClientConnection } from "./client-connection.ts";
import { ConnectionCounter, type RouterLimits } from "./limits.ts";
import type { Metering } from "./metering.ts";
import type { RequestRecorder } from "./request-recorder.ts";

/** A connection's byte counts at the last sweep, for the idle timeout. */
interface Activity {
  read: number;
  written: number;
  since: number;
}

export class ClientAdmission {
  /** Open plain-HTTP client connections (HTTPS ones are Node's). */
  readonly clients = new Set<ClientConnection>();
  private readonly connections = new ConnectionCounter();
  /** Every open client connection, plain and HTTPS. */
  private readonly activity = new Map<Socket, Activity>();
  /** Open client connections, plain and HTTPS. */
  open = 0;

  constructor(private readonly limits: RouterLimits, private readonly metering: Metering, private readonly recorder: RequestRecorder) {}

  /**
   * Counts a new client connection against its address's cap; over the cap it gets a 429 and is
   * closed (over TLS it is closed before the handshake). False = refused.
   */
  admit(socket: Socket, plain: boolean): boolean {
    const address = socket.remoteAddress ?? "";
    if (!this.connections.tryOpen(address, this.limits.maxConnectionsPerIp)) {
      socket.on("error", () => {});
      // Before a TLS handshake there is no way to answer in HTTP (and no request to log): the connection is just closed.
      if (!plain) {
        this.metering.reject("", "too_many_connections");
        socket.destroy();
        return false;
      }
      this.recorder.refused(socket, 429, "too_many_connections");
      const body = `too many open connections from ${address}; close some and try again\n`;
      socket.end(`HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n${body}`);
      socket.destroySoon?.();
      return false;
    }
    this.open++;
    this.activity.set(socket, { read: 0, written: 0, since: Date.now() });
    socket.once("close", () => {
      this.open--;
      this.activity.delete(socket);
      this.connections.close(address);
    });
    return true;
  }

  /**
   * A request head must arrive within the header timeout and an idle keep-alive connection goes after
   * a while (see ClientConnection.checkTimeouts); any connection on which no byte moved either way
   * for the idle timeout is closed.
   */
  sweep(now: number): void {
    const headerLimit = this.limits.headerTimeoutMs;
    for (const conn of this.clients) conn.checkTimeouts(now, headerLimit);
    const limit = this.limits.idleTimeoutMs;
    for (const [socket, seen] of this.activity) {
      const read = socket.bytesRead;
      const written = socket.bytesWritten;
      if (read !== seen.read || written !== seen.written) {
        seen.read = read;
        seen.written = written;
        seen.since = now;
      } else if (now - seen.since >= limit) {
        socket.destroy();
      }
    }
  }
}
