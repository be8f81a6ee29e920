/**
 * What a client sends after an upgrade request and before the app accepts it, kept for the tunnel
 * (up to EARLY_TUNNEL_BYTES; past them the connection is not read until then). While it is watched,
 * the connection is read, so a client that closes it (or only its side: it has given up, as for any
 * request) is noticed.
 */
import type { Duplex } from "node:stream";

/** Bytes a client may send before the app accepts its upgrade. */
const EARLY_TUNNEL_BYTES = 64 * 1024;

export class EarlyBytes {
  private chunks: Buffer[];
  private bytes: number;
  private watching = false;
  private readonly collect = (data: Buffer) => {
    this.chunks.push(data);
    this.bytes += data.length;
    if (this.bytes >= EARLY_TUNNEL_BYTES) this.socket.pause();
  };
  private readonly onEnd = () => this.socket.destroy();

  constructor(private readonly socket: Duplex, head: Buffer) {
    this.chunks = head.length > 0 ? [head] : [];
    this.bytes = head.length;
  }

  watch(): void {
    if (this.watching) return;
    this.watching = true;
    this.socket.on("data", this.collect);
    this.socket.once("end", this.onEnd);
    // The connection may have been paused (explicitly) when it left HTTP.
    if (this.bytes < EARLY_TUNNEL_BYTES) this.socket.resume();
  }

  /** Stops reading; what arrives next waits in the socket. */
  stop(): void {
    if (!this.watching) return;
    this.watching = false;
    this.socket.off("data", this.collect);
    this.socket.off("end", this.onEnd);
    this.socket.pause();
  }

  take(): Buffer {
    const all = Buffer.concat(this.chunks, this.bytes);
    this.chunks = [];
    this.bytes = 0;
    return all;
  }
}
