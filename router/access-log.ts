/**
 * The router's access log: one JSON object per line (time, request id, app, client, method, host,
 * path, status, bytes, duration, upstream). Lines are collected in memory and written in batches,
 * so the request path never waits for the disk.
 */
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { dirname } from "node:path";

export interface AccessRecord {
  requestId: string;
  app: string | null;
  client: string | undefined;
  method: string | undefined;
  host: string | undefined;
  path: string | undefined;
  protocol: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  /** Milliseconds from arrival to the last byte sent. */
  durationMs: number;
  upstream: string | null;
  /** Set when the router answered itself: rate_limited, body_too_large, maintenance, ... */
  reason?: string;
}

const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 200;

export class AccessLog {
  private readonly stream: WriteStream;
  private buffer = "";
  private timer: NodeJS.Timeout | null = null;

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.stream = createWriteStream(path, { flags: "a", mode: 0o640 });
    this.stream.on("error", () => {});
  }

  private lastMs = 0;
  private lastTime = "";

  write(r: AccessRecord): void {
    // Many requests share a millisecond under load; format its timestamp once.
    const now = Date.now();
    if (now !== this.lastMs) {
      this.lastMs = now;
      this.lastTime = new Date(now).toISOString();
    }
    // Request ids, app names, addresses and methods are checked token characters (see forward-headers and
    // core/app-name; Node accepts only token methods): only Host and path can need escaping.
    this.buffer += `{"time":"${this.lastTime}","request_id":"${r.requestId}","app":${r.app === null ? "null" : `"${r.app}"`},"client":"${r.client ?? ""}","method":"${r.method ?? ""}","host":${JSON.stringify(r.host ?? "")},"path":${JSON.stringify(r.path ?? "")},"protocol":"${r.protocol}","status":${r.status},"bytes_in":${r.bytesIn},"bytes_out":${r.bytesOut},"duration_ms":${r.durationMs.toFixed(3)},"upstream":${r.upstream === null ? "null" : `"${r.upstream}"`}${r.reason ? `,"reason":"${r.reason}"` : ""}}\n`;
    if (this.buffer.length >= FLUSH_BYTES) this.flush();
    else if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.buffer.length === 0) return;
    this.stream.write(this.buffer);
    this.buffer = "";
  }

  private closed: Promise<void> | null = null;

  /** Writes what is buffered and closes the file; later calls wait for the same close. */
  close(): Promise<void> {
    if (this.closed === null) {
      this.flush();
      this.closed = new Promise((resolve) => this.stream.end(() => resolve()));
    }
    return this.closed;
  }
}
