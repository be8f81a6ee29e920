import { appendFileSync, mkdirSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { DatabasePool } from "slonik";
import { insertBuildLogs } from "../store/queries/index.ts";

/** Appends one line to an app's log in the format `ISO-TIME source: text` shared with the runtime. */
export function appendAppLog(file: string, source: string, text: string): void {
  try {
    appendFileSync(file, `${new Date().toISOString()} ${source}: ${text}\n`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    mkdirSync(dirname(file), { recursive: true });
    appendFileSync(file, `${new Date().toISOString()} ${source}: ${text}\n`);
  }
}

/**
 * Output of one deployment: every line goes to the pusher at once, to the app log, and (in batches)
 * to `build_logs`, so it stays readable after the push has gone.
 */
export class DeployOutput {
  private pending: { level: string; message: string; at: Date }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private deploymentId: number | null = null;

  constructor(
    private readonly db: DatabasePool,
    private readonly logFile: string,
    private readonly sink: (line: string) => void,
  ) {}

  attach(deploymentId: number): void {
    this.deploymentId = deploymentId;
  }

  line = (text: string, level: "info" | "error" = "info"): void => {
    this.sink(text);
    appendAppLog(this.logFile, "deck[build]", text);
    if (this.deploymentId === null) return;
    this.pending.push({ level, message: text, at: new Date() });
    if (this.pending.length >= 200) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), 300);
  };

  error = (text: string): void => this.line(text, "error");

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    const id = this.deploymentId;
    this.flushing = this.flushing.then(async () => {
      if (id !== null && batch.length) await insertBuildLogs(this.db, id, batch);
    });
    await this.flushing;
  }
}

/**
 * The app log as readers see it. Besides whole lines, a log may hold lines of spaces: the retention job
 * (monitor/logs/retention.ts) trims the oldest lines in place, removing whole filesystem blocks from
 * the file's start and blanking the part of a line it cut through. No writer ever writes such a line
 * (every line starts with its time), so readers skip them.
 */
export const isBlankLogLine = (line: string): boolean => line.trim() === "";

/** The last `n` lines of a log file, reading only its end. */
export async function readLogTail(file: string, n: number): Promise<string[]> {
  if (n <= 0) return [];
  let fh;
  try {
    fh = await open(file, "r");
  } catch {
    return [];
  }
  try {
    const { size } = await fh.stat();
    let start = size;
    let text = "";
    let lines: string[] = [];
    while (start > 0) {
      const len = Math.min(64 * 1024, start);
      start -= len;
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, start);
      text = buf.toString("utf8") + text;
      lines = text.split("\n").filter((l) => !isBlankLogLine(l));
      if (lines.length > n + 1) break;
    }
    // A first line cut by the chunk boundary is left out by taking the last n of more than n + 1.
    return lines.slice(-n);
  } finally {
    await fh.close();
  }
}

/**
 * A place in a log after a whole line, as a follower hands it out with each line: saved, it lets a later
 * follower go on from there (FollowOptions.from), across restarts of deck.
 */
export interface LogPosition {
  /** The file's inode: a file replaced under the same name since is read from its start. */
  ino: number;
  /** The offset after the line. */
  offset: number;
  /** The end of the line (at most ANCHOR_BYTES, base64): a trim moves the line, and this finds it again. */
  anchor: string;
}

/** How far a follower has read: the file (inode), the offset after the last whole line, and that line's end. */
interface FollowPosition {
  ino: number;
  offset: number;
  /** The last bytes (at most ANCHOR_BYTES) of the last line read, ending at `offset`. */
  anchor: Buffer;
  /** Searches in a row that did not find the anchor again. */
  misses?: number;
}

const ANCHOR_BYTES = 256;
const FOLLOW_CHUNK = 1024 * 1024;
const RELOCATE_TRIES = 5;
/** Before any line of any file: no file has inode 0, so whatever file is there is read from its start. */
const BEFORE_ANY_FILE: FollowPosition = { ino: 0, offset: 0, anchor: Buffer.alloc(0) };

const toLogPosition = (p: FollowPosition): LogPosition => ({ ino: p.ino, offset: p.offset, anchor: p.anchor.toString("base64") });
const fromLogPosition = (p: LogPosition): FollowPosition => ({ ino: p.ino, offset: p.offset, anchor: Buffer.from(p.anchor, "base64") });

export interface FollowOptions {
  /** How often the file is checked for new lines (default 200 ms). */
  intervalMs?: number;
  /** Where to start: a position an earlier follower handed out (default: the end of the file). */
  from?: LogPosition;
  /**
   * Called once the follower has its place, with that place: every line written after it reaches the
   * follower (the start of any file when there is none yet).
   */
  onReady?: (start: LogPosition) => void;
}

/**
 * Calls `onLine` for every line appended to the file from now on (or after `options.from`), with the
 * position after that line, until the signal aborts.
 *
 * A follower keeps its place through what happens to the file: a file replaced under the same name
 * (the process supervisor moves a full log aside) is read from its start; a log trimmed in place by the
 * retention job (whole blocks cut from its start, so every offset moves back by a multiple of the
 * block size) is found again by the end of the last line read, so no line is shown twice or skipped.
 * A saved position is treated the same way: its file replaced means the new file from its start, its
 * line trimmed away means all that is left.
 */
export async function followLog(
  file: string,
  onLine: (line: string, position: LogPosition) => void,
  signal: AbortSignal,
  options: FollowOptions = {},
): Promise<void> {
  const every = options.intervalMs ?? 200;
  let pos: FollowPosition = BEFORE_ANY_FILE;
  if (options.from) {
    pos = fromLogPosition(options.from);
  } else {
    try {
      pos = await endOfLog(file);
    } catch {
      // The log appears with the first line an app writes: it is read from its start.
    }
  }
  options.onReady?.(toLogPosition(pos));
  while (!signal.aborted) {
    let more = false;
    try {
      const next: { pos: FollowPosition; more: boolean } = await readNewLines(file, pos, onLine);
      pos = next.pos;
      more = next.more;
    } catch (e) {
      // The log appears with the first line an app writes (or is back after apps:destroy).
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    if (more) continue;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const t = setTimeout(done, every);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

/** The position after the last whole line: a line being written now is read in full later. */
async function endOfLog(file: string): Promise<FollowPosition> {
  const fh = await open(file, "r");
  try {
    const st = await fh.stat();
    const len = Math.min(ANCHOR_BYTES + 1, st.size);
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, st.size - len);
    const data = buf.subarray(0, bytesRead);
    const end = data.lastIndexOf(0x0a) + 1;
    return { ino: st.ino, offset: st.size - len + end, anchor: lastLineOf(data, end) };
  } finally {
    await fh.close();
  }
}

/** The end (at most ANCHOR_BYTES) of the last line in data[0, end). */
function lastLineOf(data: Buffer, end: number): Buffer {
  const lastStart = end >= 2 ? data.lastIndexOf(0x0a, end - 2) + 1 : 0;
  return Buffer.from(data.subarray(Math.max(lastStart, end - ANCHOR_BYTES), end));
}

/** Reads what was appended since `pos` (at most FOLLOW_CHUNK at a time); `more` when there is more already. */
async function readNewLines(
  file: string,
  pos: FollowPosition,
  onLine: (line: string, position: LogPosition) => void,
): Promise<{ pos: FollowPosition; more: boolean }> {
  const fh = await open(file, "r");
  try {
    const st = await fh.stat();
    let at: FollowPosition = pos.ino === st.ino ? pos : { ino: st.ino, offset: 0, anchor: Buffer.alloc(0) };
    if (st.size <= at.offset && (await endsAt(fh, at.offset, at.anchor, st.size))) return { pos: at, more: false };
    // The anchor is read with the new bytes: a trim between checking it and reading would shift them.
    const a = at.anchor.length;
    const len = Math.min(FOLLOW_CHUNK, Math.max(0, st.size - at.offset));
    const buf = Buffer.alloc(a + len);
    const { bytesRead } = await fh.read(buf, 0, buf.length, at.offset - a);
    if (bytesRead < a || !buf.subarray(0, a).equals(at.anchor)) return moved(await relocate(fh, at));
    const data = buf.subarray(a, bytesRead);
    let end = data.lastIndexOf(0x0a) + 1;
    // A line longer than a whole chunk (never written by deck's writers) is passed on in pieces.
    if (end === 0 && data.length === FOLLOW_CHUNK) end = data.length;
    if (end === 0) return { pos: at, more: false };
    // A trim that began while the bytes were read may have mixed old and new: they count only if the
    // anchor is still in its place once they are in.
    if (!(await endsAt(fh, at.offset, at.anchor, Infinity))) return moved(await relocate(fh, at));
    passLines(data, end, { ino: st.ino, offset: at.offset }, onLine);
    const offset = at.offset + end;
    return { pos: { ino: st.ino, offset, anchor: lastLineOf(data, end) }, more: offset < st.size };
  } finally {
    await fh.close();
  }
}

/** Hands each line of data[0, end) (read at `base.offset`) to `onLine`, with the position after it. */
function passLines(data: Buffer, end: number, base: { ino: number; offset: number }, onLine: (line: string, position: LogPosition) => void): void {
  for (let start = 0; start < end;) {
    const nl = data.indexOf(0x0a, start);
    const lineEnd = nl === -1 || nl >= end ? end : nl;
    const next = Math.min(lineEnd + 1, end);
    const line = data.toString("utf8", start, lineEnd);
    if (!isBlankLogLine(line)) {
      onLine(line, { ino: base.ino, offset: base.offset + next, anchor: data.toString("base64", Math.max(start, next - ANCHOR_BYTES), next) });
    }
    start = next;
  }
}

/** Read again at once when the place was found; after a miss, at the next check. */
const moved = (pos: FollowPosition) => ({ pos, more: !pos.misses });

/**
 * After a trim: where the last line read is now. A search that overlaps a trim in progress can miss it,
 * so only after several searches in a row find nothing is the line taken for trimmed away (the follower
 * was further behind than the trim): then all that is left is new to it.
 */
async function relocate(fh: FileHandle, at: FollowPosition): Promise<FollowPosition> {
  const st = await fh.stat();
  const offset = await findAnchor(fh, at, st.size, st.blksize || 4096);
  if (offset !== null) return { ...at, offset, misses: 0 };
  const misses = (at.misses ?? 0) + 1;
  return misses < RELOCATE_TRIES ? { ...at, misses } : { ino: at.ino, offset: 0, anchor: Buffer.alloc(0) };
}

async function endsAt(fh: FileHandle, offset: number, anchor: Buffer, size: number): Promise<boolean> {
  if (offset > size) return false;
  if (anchor.length === 0) return true;
  const buf = Buffer.alloc(anchor.length);
  const { bytesRead } = await fh.read(buf, 0, anchor.length, offset - anchor.length);
  return bytesRead === anchor.length && buf.equals(anchor);
}

/** Where the anchor ends now, looking at every offset a block-aligned cut from the start could have moved it to. */
async function findAnchor(fh: FileHandle, pos: FollowPosition, size: number, blk: number): Promise<number | null> {
  const a = pos.anchor.length;
  if (a === 0) return null;
  let hi = pos.offset - blk * Math.max(1, Math.ceil((pos.offset - size) / blk));
  while (hi >= a) {
    const lowest = hi - blk * Math.min(255, Math.floor((hi - a) / blk));
    const base = lowest - a;
    const buf = Buffer.alloc(hi - base);
    await fh.read(buf, 0, buf.length, base);
    for (let c = hi; c >= lowest; c -= blk) {
      if (buf.subarray(c - a - base, c - base).equals(pos.anchor)) return c;
    }
    hi = lowest - blk;
  }
  return null;
}
