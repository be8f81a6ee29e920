import type { EventEmitter } from "node:events";
import { DeckError } from "../core/index.ts";

/** The most a command reads from standard input: a certs:add bundle with a long chain fits many times over. */
export const MAX_COMMAND_INPUT_BYTES = 1024 * 1024;

/**
 * What an SSH channel sends on standard input, read to its end. Input over `limit` is refused with one
 * line naming the limit, never cut short (a cut bundle would lose its key, which comes last).
 */
export function collectInput(stream: EventEmitter, limit = MAX_COMMAND_INPUT_BYTES): () => Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on("data", (c: Buffer) => {
    size += c.length;
    if (size <= limit) chunks.push(c);
    else chunks.length = 0;
  });
  const ended = new Promise<void>((resolve) => {
    stream.once("end", () => resolve());
    stream.once("close", () => resolve());
  });
  return async () => {
    await ended;
    if (size > limit) {
      throw new DeckError("input_too_large", `the input is ${(size / 1024 / 1024).toFixed(1)} MiB, over the ${limit / 1024 / 1024} MiB a command reads; send only the certificate, its chain and its key (or the one public key for keys:add)`);
    }
    return Buffer.concat(chunks).toString("utf8");
  };
}
