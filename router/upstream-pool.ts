/**
 * Keep-alive connections to upstreams, pooled per address. A connection carries one request at a
 * time (no pipelining); its socket listeners are set once and report to whichever request owns the
 * connection now, so a request costs no listener churn.
 *
 * Idle connections are kept for the upstream's `Keep-Alive: timeout` minus a second, or
 * DEFAULT_KEEP_ALIVE_MS when it names none: reusing a connection just as the upstream closes it
 * would fail the request, and servers commonly close idle ones after five seconds.
 */
import net from "node:net";
import { ResponseParser, type ResponseSink } from "./upstream-response.ts";

/** Where every upstream connection's reads land (see UpstreamConnection): one read is handled before the next. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** How long an idle connection is reused when the upstream gave no Keep-Alive timeout. */
export const DEFAULT_KEEP_ALIVE_MS = 4_000;
/** The longest an idle connection is kept, whatever the upstream says. */
const MAX_KEEP_ALIVE_MS = 600_000;

/** The request using a connection: gets its response (as a ResponseSink) and its events. */
export interface ConnectionOwner extends ResponseSink {
  /** The TCP connection is established (only for a new connection). */
  onConnect(): void;
  /** The socket's write buffer emptied. */
  onDrain(): void;
  /** A piece of the response was read: called after the sink calls for that piece. */
  onRead(): void;
  /** The response was malformed; the connection is already closed. */
  onProtocolError(err: Error): void;
  /** The connection closed while owned; `err` is why, when the socket failed. */
  onClose(err: NodeJS.ErrnoException | undefined): void;
}

export class UpstreamConnection {
  readonly socket: net.Socket;
  readonly parser: ResponseParser;
  owner: ConnectionOwner | null = null;
  /** Requests this connection has been given, this one included. */
  uses = 0;
  connected = false;
  idleSince = 0;
  keepAliveMs = DEFAULT_KEEP_ALIVE_MS;
  private error: NodeJS.ErrnoException | undefined;

  constructor(private readonly pool: UpstreamPool) {
    // Reads land in one shared buffer and are handed over as an exact-size copy: no readable-stream
    // bookkeeping per read (each response is one or two reads), and no 64 KiB buffer per small read.
    const socket = net.connect({
      host: pool.host,
      port: pool.port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        // Copied out of the shared buffer before anything else can read into it.
        callback: (n: number) => {
          this.onData(Buffer.from(READ_BUFFER.subarray(0, n)));
          return true;
        },
      },
    });
    this.socket = socket;
    this.parser = new ResponseParser(NO_SINK);
    socket.on("connect", () => {
      this.connected = true;
      this.owner?.onConnect();
    });
    socket.on("drain", () => this.owner?.onDrain());
    socket.on("end", () => this.onEnd());
    socket.on("error", (err: NodeJS.ErrnoException) => {
      this.error ??= err;
    });
    socket.on("close", () => {
      pool.closed(this);
      const owner = this.owner;
      this.owner = null;
      owner?.onClose(this.error);
    });
  }

  /** Closes the connection; its owner (if any) is let go first and hears nothing more. */
  destroy(): void {
    this.owner = null;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const owner = this.owner;
    // Bytes on an idle connection belong to no request: the upstream is confused; drop it.
    if (owner === null) return void this.socket.destroy();
    try {
      this.parser.push(chunk);
    } catch (err) {
      this.destroy();
      owner.onProtocolError(err as Error);
      return;
    }
    if (this.owner === owner) owner.onRead();
  }

  /** The upstream closed its side: the end of a close-delimited body, or of the connection's use. */
  private onEnd(): void {
    const owner = this.owner;
    if (owner === null) return void this.socket.destroy();
    if (!this.parser.closeDelimited) return; // "close" follows; the owner hears it there
    this.parser.end();
    if (this.owner === owner) owner.onRead();
  }
}

/** The response sink of a connection nobody owns: never called, since unowned bytes close it. */
const NO_SINK: ResponseSink = { onHead() {}, onBody() {}, onEnd() {} };

export class UpstreamPool {
  /**
   * Idle connections, oldest first from `head`: taken in turn, so under steady load every connection
   * stays in use and none sits idle past its keep-alive time only to be reopened at the next burst.
   */
  private idle: UpstreamConnection[] = [];
  private head = 0;
  /** Open connections, idle or in use. */
  connections = 0;
  /** No route names this upstream now: connections are closed instead of kept idle. */
  private retired = false;

  constructor(readonly host: string, readonly port: number, private readonly maxIdle: number) {}

  /** Retires the pool (closing its idle connections) or brings it back when a route names it again. */
  setRetired(retired: boolean): void {
    this.retired = retired;
    if (retired) this.closeIdle();
  }

  get idleCount(): number {
    return this.idle.length - this.head;
  }

  /** The idle connection that has waited longest, if still inside its keep-alive time, or a new one. */
  acquire(): UpstreamConnection {
    const now = Date.now();
    while (this.head < this.idle.length) {
      const conn = this.idle[this.head];
      this.idle[this.head++] = undefined as unknown as UpstreamConnection;
      if (now - conn.idleSince < conn.keepAliveMs && !conn.socket.destroyed) {
        this.compact();
        return conn;
      }
      conn.destroy();
    }
    this.compact();
    this.connections++;
    return new UpstreamConnection(this);
  }

  /** A new connection of its own, never kept idle (a tunnel: it outlives any request). */
  dedicated(): UpstreamConnection {
    this.connections++;
    return new UpstreamConnection(this);
  }

  /** Takes a connection back after a complete response; `keepAliveSeconds` from the response (-1: none given). */
  release(conn: UpstreamConnection, keepAliveSeconds: number): void {
    conn.owner = null;
    const keepMs = keepAliveSeconds < 0 ? DEFAULT_KEEP_ALIVE_MS : Math.min(MAX_KEEP_ALIVE_MS, keepAliveSeconds * 1000 - 1000);
    if (this.retired || keepMs <= 0 || this.idleCount >= this.maxIdle || conn.socket.destroyed) return conn.destroy();
    conn.keepAliveMs = keepMs;
    conn.idleSince = Date.now();
    this.idle.push(conn);
  }

  /** A connection closed: it no longer counts, and leaves the idle list if it was there. */
  closed(conn: UpstreamConnection): void {
    this.connections--;
    const i = this.idle.indexOf(conn, this.head);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Closes idle connections past their keep-alive time. */
  sweep(now: number): void {
    const kept: UpstreamConnection[] = [];
    for (let i = this.head; i < this.idle.length; i++) {
      const conn = this.idle[i];
      if (now - conn.idleSince >= conn.keepAliveMs) conn.destroy();
      else kept.push(conn);
    }
    this.idle = kept;
    this.head = 0;
  }

  /** Closes every idle connection (in-use ones end with their requests). */
  closeIdle(): void {
    const idle = this.idle.slice(this.head);
    this.idle = [];
    this.head = 0;
    for (const conn of idle) conn.destroy();
  }

  /** Drops the taken slots at the front once they outnumber the idle ones. */
  private compact(): void {
    if (this.head === this.idle.length) {
      this.idle.length = 0;
      this.head = 0;
    } else if (this.head > 64 && this.head * 2 > this.idle.length) {
      this.idle = this.idle.slice(this.head);
      this.head = 0;
    }
  }
}
