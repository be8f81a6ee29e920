/**
 * The router's saved route table, so a restarted router serves its last routes before the deck
 * server reconnects. Written atomically: a reader sees the old file or the new one, never half.
 */
import type { Route } from "../core/index.ts";
import { readJsonFile, writeJsonFileAtomically } from "./json-file.ts";
import { validateRoute } from "./route-table.ts";

export type RoutesFileLoad = { ok: true; routes: Route[]; missing: boolean } | { ok: false; message: string };

const FORMAT_VERSION = 1;

/** Reads and validates the file; a missing file is an empty table, a damaged one is an error result. */
export async function loadRoutesFile(path: string): Promise<RoutesFileLoad> {
  const read = await readJsonFile(path);
  if (!read.ok) return read;
  if (read.missing) return { ok: true, routes: [], missing: true };
  const list = (read.value as { routes?: unknown } | null)?.routes;
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
  await writeJsonFileAtomically(path, { version: FORMAT_VERSION, routes }, 2);
}
