import { execFile } from "node:child_process";
import { open, type FileHandle } from "node:fs/promises";
import { isBlankLogLine } from "../../deploy/app-log.ts";
import { parseAppLogLine } from "./log-line.ts";

/**
 * Removing the oldest lines of an app's log in place.
 *
 * The log stays the same file: the process supervisor keeps it open (O_APPEND) for as long as the
 * process runs and deck appends to it by name, so moving it aside would send their next lines to a
 * file nobody reads. Instead the oldest whole filesystem blocks are cut from the file's start with
 * `fallocate --collapse-range` (Linux, ext4 and XFS): the kernel shifts the rest down under the file's
 * lock, and appends wait for it, so a line written during a trim lands after the last one, whole.
 * A cut through the middle of a line (the cut is a multiple of the block size) blanks what is left of
 * that line with spaces first; readers skip blank lines (deploy/app-log.ts), and followers find their
 * place again (they look for the end of their last line at offsets moved back by whole blocks).
 *
 * On a filesystem without collapse-range (tmpfs, btrfs, ZFS) a trim fails with a TrimError naming
 * fallocate's reason and the log is left as it is: the supervisor's own size cap (it moves a full log
 * aside) still applies.
 */

/** The file could not be cut: `fallocate` is missing or the filesystem refuses. */
export class TrimError extends Error {}

export interface TrimPlan {
  /** Keep at most this many bytes (the newest). */
  maxBytes: number;
  /** Drop lines written before this time (epoch ms). */
  beforeMs: number;
}

export interface TrimResult {
  /** Bytes the file lost. */
  removedBytes: number;
  /** The file's size before. */
  sizeBefore: number;
}

const CHUNK = 1024 * 1024;

/** Trims `file` to `plan`; nothing happens when it is within both limits. */
export async function trimLog(file: string, plan: TrimPlan): Promise<TrimResult> {
  const fh = await open(file, "r+");
  try {
    const st = await fh.stat();
    const blk = st.blksize || 4096;
    const cut = await cutPoint(fh, st.size, blk, plan);
    if (cut === 0) return { removedBytes: 0, sizeBefore: st.size };
    let whole = Math.floor(cut / blk) * blk;
    // Collapsing must leave at least one byte (the kernel refuses a range reaching the end).
    if (whole >= st.size) whole -= blk;
    // What is left of cut lines becomes one line of spaces (its newline, at cut - 1, stays).
    if (cut - 1 > whole) await fh.write(Buffer.alloc(cut - 1 - whole, 0x20), 0, cut - 1 - whole, whole);
    if (whole > 0) await collapseStart(file, whole);
    return { removedBytes: whole, sizeBefore: st.size };
  } finally {
    await fh.close();
  }
}

/**
 * The offset of the first line to keep: past every line older than the age limit, and far enough that
 * what is left after cutting whole blocks fits in the size limit.
 */
async function cutPoint(fh: FileHandle, size: number, blk: number, plan: TrimPlan): Promise<number> {
  let cut = 0;
  if (size > plan.maxBytes) cut = await lineStartAtOrAfter(fh, Math.ceil((size - plan.maxBytes) / blk) * blk, size);
  return firstLineSince(fh, cut, size, plan.beforeMs);
}

/** The start of the first whole line at or after `offset` (the file's end when there is none). */
async function lineStartAtOrAfter(fh: FileHandle, offset: number, size: number): Promise<number> {
  if (offset === 0) return 0;
  let pos = offset - 1;
  while (pos < size) {
    const buf = Buffer.alloc(Math.min(CHUNK, size - pos));
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
    if (nl !== -1) return pos + nl + 1;
    if (bytesRead === 0) break;
    pos += bytesRead;
  }
  return lastLineEnd(fh, size);
}

/** From `from`, the start of the first line written at or after `beforeMs` (blank and unreadable lines go with older ones). */
async function firstLineSince(fh: FileHandle, from: number, size: number, beforeMs: number): Promise<number> {
  let pos = from;
  while (pos < size) {
    const buf = Buffer.alloc(Math.min(CHUNK, size - pos));
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    const data = buf.subarray(0, bytesRead);
    let start = 0;
    for (let nl = data.indexOf(0x0a); nl !== -1; nl = data.indexOf(0x0a, start)) {
      const line = data.toString("utf8", start, nl);
      const entry = isBlankLogLine(line) ? null : parseAppLogLine(line);
      if (entry && Date.parse(entry.time) >= beforeMs) return pos + start;
      if (!entry && !isBlankLogLine(line)) {
        // A line in no known format (a writer of its own): kept, with everything after it.
        return pos + start;
      }
      start = nl + 1;
    }
    if (start === 0) {
      // One line longer than a chunk: never written by deck's writers; keep it.
      return pos;
    }
    pos += start;
  }
  return pos;
}

async function lastLineEnd(fh: FileHandle, size: number): Promise<number> {
  const len = Math.min(CHUNK, size);
  const buf = Buffer.alloc(len);
  await fh.read(buf, 0, len, size - len);
  return size - len + buf.lastIndexOf(0x0a) + 1;
}

/** Cuts `bytes` (a multiple of the block size) from the file's start. */
function collapseStart(file: string, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("fallocate", ["--collapse-range", "--offset", "0", "--length", String(bytes), file], { timeout: 60_000 }, (e, _out, stderr) => {
      if (!e) return resolve();
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return reject(new TrimError("the fallocate command (util-linux) is not installed"));
      reject(new TrimError(`fallocate --collapse-range failed: ${String(stderr).trim().split("\n")[0] || e.message}`));
    });
  });
}
