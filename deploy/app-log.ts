import { appendFileSync, mkdirSync } from "node:fs";
import { open, stat } from "node:fs/promises";
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

/** The last `n` lines of a log file, reading only its end. */
export async function readLogTail(file: string, n: number): Promise<string[]> {
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
    while (start > 0) {
      const len = Math.min(64 * 1024, start);
      start -= len;
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, start);
      text = buf.toString("utf8") + text;
      if (text.split("\n").length > n + 1) break;
    }
    const lines = text.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    return lines.slice(-n);
  } finally {
    await fh.close();
  }
}

/** Calls `onLine` for every line appended to the file from now on, until the signal aborts. */
export async function followLog(file: string, onLine: (line: string) => void, signal: AbortSignal): Promise<void> {
  let offset = 0;
  try {
    offset = (await stat(file)).size;
  } catch {
    offset = 0;
  }
  let carry = "";
  while (!signal.aborted) {
    try {
      const { size } = await stat(file);
      if (size < offset) offset = 0; // truncated or replaced
      if (size > offset) {
        const fh = await open(file, "r");
        const buf = Buffer.alloc(size - offset);
        await fh.read(buf, 0, buf.length, offset);
        await fh.close();
        offset = size;
        const parts = (carry + buf.toString("utf8")).split("\n");
        carry = parts.pop() ?? "";
        for (const p of parts) onLine(p);
      }
    } catch {
      // The log appears with the first line an app writes.
    }
    await new Promise((r) => {
      const t = setTimeout(r, 200);
      signal.addEventListener("abort", () => { clearTimeout(t); r(undefined); }, { once: true });
    });
  }
}
