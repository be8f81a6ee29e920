/**
 * The router's saved certificates, so a restarted router serves HTTPS before the deck server
 * reconnects. The file holds private keys: it is created 0600 and replaced atomically (write a temp
 * file beside it, flush, rename), like the routes file.
 */
import type { ServedCertificate } from "../core/index.ts";
import { readJsonFile, writeJsonFileAtomically } from "./json-file.ts";
import { validateCertificates } from "./tls-server.ts";

export type CertsFileLoad = { ok: true; certs: ServedCertificate[]; skipped: string[] } | { ok: false; message: string };

const FORMAT_VERSION = 1;

/** A missing file is an empty list; a damaged one is an error result. */
export async function loadCertsFile(path: string): Promise<CertsFileLoad> {
  const read = await readJsonFile(path);
  if (!read.ok) return read;
  if (read.missing) return { ok: true, certs: [], skipped: [] };
  const checked = validateCertificates((read.value as { certificates?: unknown } | null)?.certificates);
  return checked.ok ? checked : { ok: false, message: `${path}: ${checked.message}` };
}

export async function saveCertsFile(path: string, certs: readonly ServedCertificate[]): Promise<void> {
  await writeJsonFileAtomically(path, { version: FORMAT_VERSION, certificates: certs });
}
