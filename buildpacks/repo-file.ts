import { constants } from "node:fs";
import { lstat, mkdir, open, readdir, type FileHandle } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { join } from "node:path";
import { parseProcfile, type Procfile } from "../core/index.ts";
import { BuildStepError } from "./buildpack.ts";

/**
 * Reading and writing files of a checkout (or a slug, or a build cache) from the deck server, which
 * has more rights than the tenant who controls their content. A repository can commit a symlink
 * (`Procfile -> /etc/shadow`), and the build itself runs tenant code that can swap any file or
 * directory for one before deck looks again, so no path under the root is ever resolved by the kernel
 * in one go: each component is opened on its own with O_NOFOLLOW, relative to the descriptor of the one
 * before it (through /proc/self/fd, Node having no openat). A link is refused even when it points inside
 * the repository: following it safely would mean re-checking every hop, and the files deck reads are
 * ones a repository commits as themselves.
 */

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_WRONLY, O_CREAT, O_TRUNC } = constants;

/** Manifests (Procfile, package.json, go.mod, …) are small; anything bigger is not one. */
export const MANIFEST_MAX_BYTES = 1024 * 1024;

const LINK_ADVICE = "deck never follows links for the files it reads, even to a path inside the repository: commit the file itself";

function describeSize(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${bytes / (1024 * 1024)} MiB` : `${bytes / 1024} KiB`;
}

function fdPath(fd: FileHandle, name: string): string {
  return `/proc/self/fd/${fd.fd}/${name}`;
}

function components(rel: string): string[] {
  const parts = rel.split("/").filter((p) => p && p !== ".");
  // Names can come from the build (binary names from cargo metadata): a bad one fails that build.
  if (parts.length === 0 || parts.includes("..")) throw new BuildStepError(`${JSON.stringify(rel)} is not a path inside the repository`);
  return parts;
}

/** Names a refused component by its path from the root: `bin`, `.deck/env.json`. */
async function refusal(root: string, parts: string[], upTo: number, code: string | undefined, what: "file" | "directory"): Promise<BuildStepError> {
  const shown = parts.slice(0, upTo + 1).join("/");
  // The lstat only chooses the wording; the open above is what kept deck inside the root.
  const link = code === "ELOOP" || (await lstat(join(root, ...parts.slice(0, upTo + 1))).then((s) => s.isSymbolicLink(), () => false));
  if (link) return new BuildStepError(`${shown} is a symbolic link; ${LINK_ADVICE}`);
  return new BuildStepError(`${shown} is not a ${what === "file" ? "regular file" : "directory"}: deck expects ${shown} to be a ${what} in the repository`);
}

/**
 * Opens the directory `parts[0..count)` below `root` without following any link, one component at a
 * time; with `create`, missing components are made on the way. Undefined when a component does not
 * exist (and is not made); throws BuildStepError naming the component that is a link or not a dir.
 */
async function openDirChain(root: string, parts: string[], count: number, create = false): Promise<FileHandle | undefined> {
  let dir = await open(root, O_RDONLY | O_DIRECTORY);
  for (let i = 0; i < count; i++) {
    // mkdir never follows a link in its last component: an existing link gives EEXIST, refused below.
    if (create) {
      await mkdir(fdPath(dir, parts[i])).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "EEXIST") throw e;
      });
    }
    let next: FileHandle;
    try {
      next = await open(fdPath(dir, parts[i]), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    } catch (e) {
      await dir.close();
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" && !create) return undefined;
      if (code === "ENOTDIR" || code === "ELOOP") throw await refusal(root, parts, i, code, "directory");
      throw e;
    }
    await dir.close();
    dir = next;
  }
  return dir;
}

export interface ReadRepoFileOptions {
  /** Default MANIFEST_MAX_BYTES. A larger file fails the build with a message naming the limit. */
  maxBytes?: number;
}

/** Opens regular file `rel` under `root` for reading, without following a link; undefined when missing. */
async function openRepoFile(root: string, rel: string): Promise<FileHandle | undefined> {
  const parts = components(rel);
  const dir = await openDirChain(root, parts, parts.length - 1);
  if (!dir) return undefined;
  let file: FileHandle;
  try {
    // O_NONBLOCK: a FIFO planted by the build must not hang the deck server in open().
    file = await open(fdPath(dir, parts[parts.length - 1]), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ELOOP") throw await refusal(root, parts, parts.length - 1, code, "file");
    throw e;
  } finally {
    await dir.close();
  }
  if (!(await file.stat()).isFile()) {
    await file.close();
    throw await refusal(root, parts, parts.length - 1, undefined, "file");
  }
  return file;
}

/**
 * The bytes of `rel` (e.g. `Procfile`, `bin/server`) under `root`, or undefined when it does not exist.
 * A link anywhere on the way, something that is not a regular file, or a file over the limit fails
 * with a BuildStepError naming the file (and never showing anything read through a link).
 */
export async function readRepoBytes(root: string, rel: string, options: ReadRepoFileOptions = {}): Promise<Buffer | undefined> {
  const maxBytes = options.maxBytes ?? MANIFEST_MAX_BYTES;
  const file = await openRepoFile(root, rel);
  if (!file) return undefined;
  try {
    const tooBig = () => new BuildStepError(`${rel} is larger than ${describeSize(maxBytes)}, the most deck reads of it: make it smaller`);
    const { size } = await file.stat();
    if (size > maxBytes) throw tooBig();
    // Read one byte past the limit: the file may have grown since the stat.
    const buffer = Buffer.alloc(Math.min(maxBytes, size) + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await file.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw tooBig();
    return buffer.subarray(0, length);
  } finally {
    await file.close();
  }
}

/** `readRepoBytes` as UTF-8 text. */
export async function readRepoFile(root: string, rel: string, options: ReadRepoFileOptions = {}): Promise<string | undefined> {
  return (await readRepoBytes(root, rel, options))?.toString("utf8");
}

/**
 * Whether `rel` is present under `root`, for detection: a link counts as present (it is not
 * followed), so the build goes on to refuse it with a message rather than ignore it silently.
 */
export async function repoEntryExists(root: string, rel: string): Promise<boolean> {
  const parts = components(rel);
  let dir: FileHandle | undefined;
  try {
    dir = await openDirChain(root, parts, parts.length - 1);
  } catch {
    return true;
  }
  if (!dir) return false;
  try {
    await lstat(fdPath(dir, parts[parts.length - 1]));
    return true;
  } catch {
    return false;
  } finally {
    await dir.close();
  }
}

/** The names in directory `rel` under `root` ([] when it does not exist); a link on the way is refused. */
export async function listRepoDir(root: string, rel: string): Promise<string[]> {
  const parts = components(rel);
  const dir = await openDirChain(root, parts, parts.length);
  if (!dir) return [];
  try {
    return await readdir(`/proc/self/fd/${dir.fd}`);
  } finally {
    await dir.close();
  }
}

/**
 * Creates directory `rel` under `root` (and its parents) without following a link: a component that
 * exists as a link or a file fails the build with a message naming it.
 */
export async function ensureRepoDir(root: string, rel: string): Promise<void> {
  // The root itself is deck's (a work dir, an app's cache dir): only what is below it is suspect.
  await mkdir(root, { recursive: true });
  await (await ensureDirChain(root, components(rel))).close();
}

async function ensureDirChain(root: string, parts: string[]): Promise<FileHandle> {
  return (await openDirChain(root, parts, parts.length, true))!;
}

export interface WriteRepoFileOptions {
  /** The file's mode; unset, a new file gets 0o644 and an existing one keeps its own. */
  mode?: number;
}

/** Creates (or truncates) regular file `rel` under `root` for writing, never through a link. */
async function createRepoFile(root: string, rel: string, mode: number | undefined): Promise<FileHandle> {
  const parts = components(rel);
  const dir = await ensureDirChain(root, parts.slice(0, -1));
  let file: FileHandle;
  try {
    file = await open(fdPath(dir, parts[parts.length - 1]), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK, mode ?? 0o644);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ELOOP") throw await refusal(root, parts, parts.length - 1, code, "file");
    throw e;
  } finally {
    await dir.close();
  }
  if (!(await file.stat()).isFile()) {
    await file.close();
    throw await refusal(root, parts, parts.length - 1, undefined, "file");
  }
  if (mode !== undefined) await file.chmod(mode);
  return file;
}

/**
 * Writes `rel` under `root`, creating its directories, never through a link: deck writes into slugs
 * and caches that tenant code has had its hands on, and a planted link must not aim deck's write at a
 * host file. An existing link in the way fails the build naming it.
 */
export async function writeRepoFile(root: string, rel: string, data: string | Uint8Array, options: WriteRepoFileOptions = {}): Promise<void> {
  const file = await createRepoFile(root, rel, options.mode);
  try {
    await file.writeFile(data);
  } finally {
    await file.close();
  }
}

/**
 * Copies regular file `fromRel` under `fromRoot` to `toRel` under `toRoot`, following no link on
 * either side (a build output is tenant-made too). Throws BuildStepError when the source is missing.
 */
export async function copyRepoFile(from: { root: string; rel: string }, to: { root: string; rel: string }, options: WriteRepoFileOptions = {}): Promise<void> {
  const source = await openRepoFile(from.root, from.rel);
  if (!source) throw new BuildStepError(`${from.rel} was not made by the build`);
  try {
    const target = await createRepoFile(to.root, to.rel, options.mode);
    await pipeline(source.createReadStream({ autoClose: false }), target.createWriteStream());
  } finally {
    await source.close();
  }
}

/**
 * The Procfile in the root of `dir`, or undefined when there is none. Like every file deck reads from
 * a checkout, it is read without following links: deck reads it again after the build, when tenant
 * code has had the chance to replace it.
 */
export async function readProcfile(dir: string): Promise<Procfile | undefined> {
  const text = await readRepoFile(dir, "Procfile");
  return text === undefined ? undefined : parseProcfile(text);
}
