import type { EventEmitter } from "node:events";

/** A stream read to its end: its text when it kept within the limit (else empty), and how much it sent. */
export interface CappedRead {
  text: string;
  size: number;
  over: boolean;
  /** False when it stopped with an error or a close before its end. */
  ended: boolean;
}

/**
 * Reads a stream (a request body, an SSH channel's standard input) to its end, keeping at most `limit`
 * bytes. Past the limit it reads on and drops what comes, so the sender gets an answer rather than a
 * reset while it is still sending, and nothing is cut short silently: `over` says so.
 */
export function readCapped(stream: EventEmitter, limit: number): Promise<CappedRead> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
      else chunks.length = 0;
    });
    const done = (ended: boolean) => {
      const over = size > limit;
      resolve({ text: over ? "" : Buffer.concat(chunks).toString("utf8"), size, over, ended });
    };
    stream.once("end", () => done(true));
    stream.once("close", () => done(false));
    stream.once("error", () => done(false));
  });
}
