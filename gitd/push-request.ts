/**
 * What deck reads of a push as it streams to `git receive-pack`: the update request that precedes
 * the pack (gitprotocol-pack, "Reference Update Request and Packfile Transfer") and how many bytes of
 * pack follow it. The pack itself is never parsed; git does that.
 */

export interface RefUpdateCommand { oldSha: string; newSha: string; ref: string }

export interface PushCommands {
  updates: RefUpdateCommand[];
  capabilities: string[];
}

/** pkt-line framing (gitprotocol-common): 4 hex digits of length, counting themselves, then the data. */
export function pktLine(data: string | Buffer): Buffer {
  const body = typeof data === "string" ? Buffer.from(data) : data;
  return Buffer.concat([Buffer.from((body.length + 4).toString(16).padStart(4, "0")), body]);
}

const FLUSH = Buffer.from("0000");
/** Longest pkt-line payload (LARGE_PACKET_DATA_MAX in git). */
const MAX_PKT_DATA = 65516;

/**
 * commands: reading pkt-lines up to the flush that ends the command list; options: the push options
 * section that follows when the client asked for `push-options`; pack: every further byte is pack;
 * invalid: not a push request git would accept (every further byte counts as pack, git refuses it).
 */
type MeterState = "commands" | "options" | "pack" | "invalid";

/** Counts a push's pack bytes as they stream, so a limit can be checked on the same measure git uses. */
export class PushMeter {
  private state: MeterState = "commands";
  private pending: Buffer = Buffer.alloc(0);
  private readonly updates: RefUpdateCommand[] = [];
  private capabilities: string[] = [];
  private packCount = 0;
  private received = 0;

  /** Bytes of the request before the pack (commands, push options); final once `commands` is set. */
  get headerBytes(): number {
    return this.received - this.packCount - this.pending.length;
  }

  /** Bytes of pack received so far (git's receive.maxInputSize counts the same bytes). */
  get packBytes(): number {
    return this.packCount;
  }

  /** The command list once it has been read in full, else null. */
  get commands(): PushCommands | null {
    return this.state === "pack" || this.state === "invalid" ? { updates: [...this.updates], capabilities: [...this.capabilities] } : null;
  }

  feed(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.state === "pack" || this.state === "invalid") {
      this.packCount += chunk.length;
      return;
    }
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.state === "commands" || this.state === "options") {
      if (this.pending.length < 4) return;
      const len = parseInt(this.pending.subarray(0, 4).toString("latin1"), 16);
      if (!/^[0-9a-f]{4}$/i.test(this.pending.subarray(0, 4).toString("latin1")) || (len > 0 && len < 4) || len > MAX_PKT_DATA + 4) {
        this.state = "invalid";
        break;
      }
      if (len === 0) {
        this.pending = this.pending.subarray(4);
        this.state = this.state === "commands" && this.capabilities.includes("push-options") ? "options" : "pack";
        continue;
      }
      if (this.pending.length < len) return;
      if (this.state === "commands") this.readCommand(this.pending.subarray(4, len).toString("utf8"));
      this.pending = this.pending.subarray(len);
    }
    this.packCount += this.pending.length;
    this.pending = Buffer.alloc(0);
  }

  private readCommand(line: string): void {
    const nul = line.indexOf("\0");
    if (nul >= 0) {
      this.capabilities = line.slice(nul + 1).trim().split(/\s+/).filter(Boolean);
      line = line.slice(0, nul);
    }
    const m = /^([0-9a-f]{40,64}) ([0-9a-f]{40,64}) (\S+)\n?$/.exec(line);
    if (m) this.updates.push({ oldSha: m[1], newSha: m[2], ref: m[3] });
  }
}

/** 1073741824 → "1 GiB", 524288000 → "500 MiB". */
export function formatSize(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let n = bytes;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
}

/** The line a pusher sees when their pack is over DECK_MAX_PUSH_SIZE, with what to do about it. */
export function pushTooLargeLine(limitBytes: number): string {
  return `deck: push refused: the pack is larger than DECK_MAX_PUSH_SIZE (${formatSize(limitBytes)}); `
    + "nothing was changed. Keep large files and build output out of the repository (.gitignore, git rm --cached), "
    + "or ask the deck admin to raise DECK_MAX_PUSH_SIZE";
}

/**
 * A receive-pack response refusing every ref of `commands`, as git itself would frame it for the
 * capabilities the client asked for: `messages` on sideband 2 (shown as "remote: …"), then the
 * report-status (an "unpack" line and one "ng" per ref) on sideband 1, then a flush.
 */
export function refusalResponse(commands: PushCommands, messages: string[], reason: string): Buffer {
  const caps = commands.capabilities;
  const wantsReport = caps.includes("report-status") || caps.includes("report-status-v2");
  const report = wantsReport
    ? Buffer.concat([pktLine(`unpack ${reason}\n`), ...commands.updates.map((u) => pktLine(`ng ${u.ref} ${reason}\n`)), FLUSH])
    : Buffer.alloc(0);
  const band = caps.includes("side-band-64k") ? MAX_PKT_DATA - 1 : caps.includes("side-band") ? 995 : 0;
  if (band === 0) return report;
  const parts: Buffer[] = messages.map((m) => pktLine(Buffer.concat([Buffer.from([2]), Buffer.from(`${m}\n`)])));
  for (let i = 0; i < report.length; i += band) parts.push(pktLine(Buffer.concat([Buffer.from([1]), report.subarray(i, i + band)])));
  parts.push(FLUSH);
  return Buffer.concat(parts);
}
