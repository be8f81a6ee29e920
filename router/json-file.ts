/**
 * The router's state files (routes, certificates): JSON read back at start, replaced atomically (a
 * temp file beside the target, flushed, then renamed over it), so a reader sees the old file or the
 * new one, never half. Created 0600 whatever the umask: the certificates file holds private keys.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";

export type JsonFileRead = { ok: true; value: unknown; missing: boolean } | { ok: false; message: string };

/** A missing file reads as `{missing: true}`; unreadable or malformed JSON is an error result naming the file. */
export async function readJsonFile(path: string): Promise<JsonFileRead> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { ok: true, value: undefined, missing: true };
    return { ok: false, message: `${path}: ${(e as Error).message}` };
  }
  try {
    return { ok: true, value: JSON.parse(text), missing: false };
  } catch (e) {
    return { ok: false, message: `${path}: not valid JSON (${(e as Error).message})` };
  }
}

export async function writeJsonFileAtomically(path: string, value: unknown, indent?: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const handle = await open(temp, "w", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(value, null, indent)}\n`);
    await handle.sync();
  } catch (e) {
    await handle.close();
    await unlink(temp).catch(() => {});
    throw e;
  }
  await handle.close();
  try {
    await chmod(temp, 0o600);
    await rename(temp, path);
  } catch (e) {
    await unlink(temp).catch(() => {});
    throw e;
  }
}
