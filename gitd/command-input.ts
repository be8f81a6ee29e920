import type { EventEmitter } from "node:events";
import { DeckError, readCapped } from "../core/index.ts";

/** The most a command reads from standard input: a certs:add bundle with a long chain fits many times over. */
export const MAX_COMMAND_INPUT_BYTES = 1024 * 1024;

/**
 * What an SSH channel sends on standard input, read to its end. Input over `limit` is refused with one
 * line naming the limit, never cut short (a cut bundle would lose its key, which comes last).
 */
export function collectInput(stream: EventEmitter, limit = MAX_COMMAND_INPUT_BYTES): () => Promise<string> {
  const read = readCapped(stream, limit);
  return async () => {
    const { text, size, over } = await read;
    if (over) {
      throw new DeckError("input_too_large", `the input is ${(size / 1024 / 1024).toFixed(1)} MiB, over the ${limit / 1024 / 1024} MiB a command reads; send only the certificate, its chain and its key (or the one public key for keys:add)`);
    }
    return text;
  };
}
