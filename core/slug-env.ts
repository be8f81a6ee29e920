/**
 * Environment a buildpack asks for at run time (a Python virtualenv's bin on PATH, say). It is stored
 * inside the slug so that it travels with the artifact: a rollback or a restart of an old release
 * gets the env that release was built for. Paths are relative to the slug, because the slug runs
 * from a different directory than the one it was built in (and from another one again in a container).
 */
import { isAbsolute, join } from "node:path/posix";

/** Where the slug keeps it, relative to the slug root. */
export const SLUG_ENV_FILE = ".deck/env.json";

export interface SlugEnv {
  /** Slug-relative directories put in front of PATH, first one first. */
  path: string[];
  /** Variables whose value is a slug-relative path (VIRTUAL_ENV=.venv). */
  dirs: Record<string, string>;
  /** Plain variables. */
  vars: Record<string, string>;
}

export const EMPTY_SLUG_ENV: SlugEnv = { path: [], dirs: {}, vars: {} };

export type ParsedSlugEnv = { ok: true; env: SlugEnv } | { ok: false; message: string };

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function isSlugRelative(p: string): boolean {
  return p.length > 0 && !isAbsolute(p) && !p.split("/").includes("..");
}

function stringRecord(value: unknown, what: string, check: (v: string) => boolean): Record<string, string> | string {
  if (value === undefined) return {};
  if (value === null || typeof value !== "object" || Array.isArray(value)) return `${what} must be an object`;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (!NAME.test(k) || typeof v !== "string" || !check(v)) return `${what}.${k} is not valid`;
    out[k] = v;
  }
  return out;
}

export function parseSlugEnv(text: string): ParsedSlugEnv {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { ok: false, message: `${SLUG_ENV_FILE} is not valid JSON: ${(e as Error).message}` };
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return { ok: false, message: `${SLUG_ENV_FILE} must hold an object` };
  const { path = [], dirs, vars } = raw as Record<string, unknown>;
  if (!Array.isArray(path) || !path.every((p) => typeof p === "string" && isSlugRelative(p))) {
    return { ok: false, message: `${SLUG_ENV_FILE}: "path" must list slug-relative directories` };
  }
  const d = stringRecord(dirs, "dirs", isSlugRelative);
  if (typeof d === "string") return { ok: false, message: `${SLUG_ENV_FILE}: ${d}` };
  const v = stringRecord(vars, "vars", () => true);
  if (typeof v === "string") return { ok: false, message: `${SLUG_ENV_FILE}: ${v}` };
  return { ok: true, env: { path: path as string[], dirs: d, vars: v } };
}

/**
 * The process env for a slug running at `slugPath`: the buildpack's variables go under `env` (so the
 * app's config vars, already in `env`, win), and its PATH entries go in front of whatever PATH `env`
 * ends up with.
 */
export function applySlugEnv(env: Record<string, string>, slugEnv: SlugEnv, slugPath: string): Record<string, string> {
  const resolved: Record<string, string> = { ...slugEnv.vars };
  for (const [k, v] of Object.entries(slugEnv.dirs)) resolved[k] = join(slugPath, v);
  const out = { ...resolved, ...env };
  if (slugEnv.path.length > 0) {
    const front = slugEnv.path.map((p) => join(slugPath, p));
    out.PATH = [...front, ...(out.PATH ? [out.PATH] : [])].join(":");
  }
  return out;
}
