/**
 * The router's saved route table, so a restarted router serves its last routes before the deck
 * server reconnects. Written atomically: a reader sees the old file or the new one, never half.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import type { Route } from "../core/index.ts";
import { validateRoute } from "./route-table.ts";

export type RoutesFileLoad = { ok: true; routes: Route[]; missing: boolean } | { ok: false; message: string };

const FORMAT_VERSION = 1;

/** Reads and validates the file; a missing file is an empty table, a damaged one is an error result. */
export async function loadRoutesFile(path: string): Promise<RoutesFileLoad> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { ok: true, routes: [], missing: true };
    return { ok: false, message: `${path}: ${(e as Error).message}` };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return { ok: false, message: `${path}: not valid JSON (${(e as Error).message})` };
  }
  const list = (parsed as { routes?: unknown } | null)?.routes;
  if (!Array.isArray(list)) return { ok: false, message: `${path}: expected {"version":1,"routes":[...]}` };
  const routes: Route[] = [];
  for (const item of list) {
    const checked = validateRoute(item);
    if (!checked.ok) return { ok: false, message: `${path}: ${checked.message}` };
    routes.push(checked.route);
  }
  return { ok: true, routes, missing: false };
}

/** Writes a temp file beside the target, flushes it to disk, then renames it over the target. */
export async function saveRoutesFile(path: string, routes: readonly Route[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const handle = await open(temp, "w", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify({ version: FORMAT_VERSION, routes }, null, 2)}\n`);
    await handle.sync();
  } catch (e) {
    await handle.close();
    await unlink(temp).catch(() => {});
    throw e;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (e) {
    await unlink(temp).catch(() => {});
    throw e;
  }
}
