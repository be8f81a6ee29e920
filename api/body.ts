import type { Context } from "koa";
import { DeckError } from "../core/index.ts";

export const MAX_JSON_BODY = 64 * 1024;

/** Reads the raw request body, refusing more than `limit` bytes without buffering past it. */
export async function readRawBody(ctx: Context, limit = MAX_JSON_BODY): Promise<Buffer> {
  const declared = Number(ctx.get("content-length") || "0");
  if (declared > limit) throw new DeckError("payload_too_large", `request body is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      ctx.req.destroy();
      throw new DeckError("payload_too_large", `request body is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Parses a JSON body; an empty body is `{}`. */
export async function readJsonBody(ctx: Context, limit = MAX_JSON_BODY): Promise<unknown> {
  const raw = await readRawBody(ctx, limit);
  if (raw.length === 0) return {};
  const type = ctx.get("content-type");
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) throw new DeckError("unsupported_media_type", "send the body as application/json");
  try {
    return JSON.parse(raw.toString("utf8"));
  } catch {
    throw new DeckError("bad_request", "the request body is not valid JSON");
  }
}
