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
/** Lines kept in memory while the file cannot be written (a full disk); later lines are dropped and counted. */
const MAX_BUFFER = 8 * 1024 * 1024;
const RETRY_MS = 1_000;

export class AccessLog {
  private stream: WriteStream;
  private buffer = "";
  private timer: NodeJS.Timeout | null = null;
  /** The write in progress, settled when its callback has run. */
  private writing: Promise<void> | null = null;
  /** The part of a failed write that did not reach the file: written before anything newer. */
  private unwritten: Buffer | null = null;
  /** The last write failed: the file is opened again before the next one. */
  private failed: Error | null = null;
  private dropped = 0;
  /** A reopen waiting for the write in progress, settled once the new file is in place. */
  private reopening: Promise<void> | null = null;

  constructor(
    readonly path: string,
    private readonly log: (line: string) => void = () => {},
  ) {
    this.stream = this.open();
  }

  private open(): WriteStream {
    try {
      mkdirSync(dirname(this.path), { recursive: true });
    } catch {
      // The write's callback reports it (ENOENT, EACCES …), and the retry tries again.
    }
    const stream = createWriteStream(this.path, { flags: "a", mode: 0o640 });
    // A failed open or write is seen by the write's callback.
    stream.on("error", () => {});
    return stream;
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
    if (this.buffer.length + (this.unwritten?.length ?? 0) >= MAX_BUFFER) {
      this.dropped++;
      return;
    }
    // Request ids, app names, addresses and methods are checked token characters (see forward-headers and
    // core/app-name; Node accepts only token methods): only Host and path can need escaping.
    this.buffer += `{"time":"${this.lastTime}","request_id":"${r.requestId}","app":${r.app === null ? "null" : `"${r.app}"`},"client":"${r.client ?? ""}","method":"${r.method ?? ""}","host":${JSON.stringify(r.host ?? "")},"path":${JSON.stringify(r.path ?? "")},"protocol":"${r.protocol}","status":${r.status},"bytes_in":${r.bytesIn},"bytes_out":${r.bytesOut},"duration_ms":${r.durationMs.toFixed(3)},"upstream":${r.upstream === null ? "null" : `"${r.upstream}"`}${r.reason ? `,"reason":"${r.reason}"` : ""}}\n`;
    // While the file cannot be written, only the retry timer tries again.
    if (this.buffer.length >= FLUSH_BYTES && this.failed === null) this.flush();
    else this.schedule(FLUSH_MS);
  }

  private schedule(ms: number): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, ms);
    this.timer.unref();
  }

  /** Hands what is buffered to the file, one write at a time; a failed write is tried again (the file reopened) a second later. */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.writing !== null || this.reopening !== null || (this.buffer.length === 0 && this.unwritten === null)) return;
    if (this.failed !== null) {
      // Opened again: the disk may have room now, or the directory may be back.
      this.stream.destroy();
      this.stream = this.open();
    }
    const fresh = Buffer.from(this.buffer);
    const data = this.unwritten === null ? fresh : Buffer.concat([this.unwritten, fresh]);
    this.buffer = "";
    this.unwritten = null;
    let written!: () => void;
    this.writing = new Promise((resolve) => (written = resolve));
    const stream = this.stream;
    const before = stream.bytesWritten;
    stream.write(data, (e) => {
      this.writing = null;
      written();
      if (e) {
        // What did not reach the file is written first next time, so a line cut by a full disk is
        // completed, not repeated.
        this.unwritten = data.subarray(Math.max(0, stream.bytesWritten - before));
        if (this.failed === null) this.log(`access log: cannot write ${this.path}: ${e.message}; keeping lines in memory (up to ${MAX_BUFFER / 1024 / 1024} MiB) and trying again every second`);
        this.failed = e;
        if (this.closed === null) this.schedule(RETRY_MS);
        return;
      }
      if (this.failed !== null) {
        this.log(`access log: writing ${this.path} again${this.dropped > 0 ? `; ${this.dropped} lines were dropped meanwhile` : ""}`);
        this.failed = null;
        this.dropped = 0;
      }
      if (this.buffer.length >= FLUSH_BYTES) this.flush();
      else if (this.buffer.length > 0) this.schedule(FLUSH_MS);
    });
  }

  /**
   * Opens the file again by its name: after a rotation (logrotate renames the file, then signals the
   * router with SIGUSR1 or SIGHUP), lines go to the new file. What was buffered goes to the old one.
   */
  reopen(): void {
    if (this.closed !== null || this.reopening !== null) return;
    this.flush();
    const old = this.stream;
    this.reopening = (this.writing ?? Promise.resolve()).then(() => {
      this.stream = this.open();
      this.reopening = null;
      old.end();
      this.flush();
    });
  }

  private closed: Promise<void> | null = null;

  /** Writes what is buffered and closes the file; later calls wait for the same close. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.flush();
      // What comes in meanwhile goes too, unless the file cannot be written.
      while (this.writing !== null || this.reopening !== null || (this.failed === null && this.buffer.length > 0)) {
        if (this.writing !== null || this.reopening !== null) await (this.writing ?? this.reopening);
        else this.flush();
      }
      if (this.timer !== null) clearTimeout(this.timer);
      await new Promise<void>((resolve) => this.stream.end(() => resolve()));
    })();
    return this.closed;
  }
}
