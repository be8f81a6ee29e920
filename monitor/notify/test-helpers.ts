/**
 * Real receivers on loopback for the notification tests: webhook endpoints (node:http) that can be
 * down (refusing, hanging, or not listening at all) and come back, and an SMTP server (Debian's
 * python3-aiosmtpd) writing each message it accepts to a Maildir.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../test/helpers/deck.ts";

/** Polls `check` until it returns a value other than undefined/false, or fails with `what` after `ms`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
}

export interface Received {
  at: number;
  path: string;
  key: string | undefined;
  headers: http.IncomingHttpHeaders;
  body: unknown;
  /** Whether it was answered 2xx. */
  accepted: boolean;
}

/** `ok`: 200; `refuse`: 503; `hang`: never answers. */
export type ReceiverMode = "ok" | "refuse" | "hang";

export class WebhookReceiver {
  mode: ReceiverMode = "ok";
  readonly received: Received[] = [];
  private server: http.Server | null = null;
  private readonly hanging = new Set<http.ServerResponse>();

  private constructor(readonly port: number) {}

  /** A receiver on a free port; listening unless `listening: false` (a closed port until `open()`). */
  static async create(options: { listening?: boolean; mode?: ReceiverMode } = {}): Promise<WebhookReceiver> {
    const r = new WebhookReceiver(await freePort());
    r.mode = options.mode ?? "ok";
    if (options.listening !== false) await r.open();
    return r;
  }

  url(path = "/hook/0123456789abcdef0123456789"): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  async open(): Promise<void> {
    if (this.server) return;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // kept as text
        }
        const mode = this.mode;
        this.received.push({ at: Date.now(), path: req.url ?? "", key: req.headers["x-deck-notice-key"] as string | undefined, headers: req.headers, body, accepted: mode === "ok" });
        if (mode === "hang") return void this.hanging.add(res);
        res.writeHead(mode === "ok" ? 200 : 503, { "content-type": "text/plain" });
        res.end(mode === "ok" ? "ok" : "down for maintenance");
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.server = server;
  }

  /** Stops listening (the port refuses connections) and cuts off requests left hanging. */
  async shut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const res of this.hanging) res.destroy();
    this.hanging.clear();
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** What was answered 2xx, optionally for one notice key. */
  accepted(key?: string): Received[] {
    return this.received.filter((r) => r.accepted && (key === undefined || r.key === key));
  }
}

export interface Mail {
  headers: Record<string, string>;
  body: string;
}

/** The python with aiosmtpd: Debian's (/usr/bin/python3) first, then python3 on PATH. */
export function findAiosmtpdPython(): string | null {
  for (const python of ["/usr/bin/python3", "python3"]) {
    const r = spawnSync(python, ["-c", "import aiosmtpd"], { stdio: "ignore" });
    if (r.status === 0) return python;
  }
  return null;
}

/** aiosmtpd on 127.0.0.1:port with its Mailbox handler: every accepted message becomes a file. */
export class SmtpServer {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  private constructor(readonly python: string, readonly port: number, readonly maildir: string) {}

  static async create(python: string, port?: number): Promise<SmtpServer> {
    return new SmtpServer(python, port ?? (await freePort()), await mkdtemp(join(tmpdir(), "deck-smtp-")));
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const maildir = join(this.maildir, "Maildir");
    let stderr = "";
    const child = spawn(this.python, ["-m", "aiosmtpd", "-n", "-l", `127.0.0.1:${this.port}`, "-c", "aiosmtpd.handlers.Mailbox", maildir], { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    await waitFor(`aiosmtpd on port ${this.port}`, async () => {
      if (child.exitCode !== null) throw new Error(`aiosmtpd exited: ${stderr.slice(-500)}`);
      return new Promise<boolean>((resolve) => {
        const s = net.connect(this.port, "127.0.0.1", () => {
          s.destroy();
          resolve(true);
        });
        s.on("error", () => resolve(false));
      });
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child) return;
    child.kill("SIGTERM");
    await this.exited;
  }

  async remove(): Promise<void> {
    await this.stop();
    await rm(this.maildir, { recursive: true, force: true });
  }

  async messages(): Promise<Mail[]> {
    const dir = join(this.maildir, "Maildir", "new");
    const names = await readdir(dir).catch(() => [] as string[]);
    return Promise.all(names.sort().map(async (n) => parseMail(await readFile(join(dir, n), "utf8"))));
  }
}

/** Headers (unfolded, names lowercased, RFC 2047 words decoded) and the body (quoted-printable decoded). */
export function parseMail(raw: string): Mail {
  const text = raw.replace(/\r\n/g, "\n");
  const split = text.indexOf("\n\n");
  const head = split === -1 ? text : text.slice(0, split);
  let body = split === -1 ? "" : text.slice(split + 2);
  const headers: Record<string, string> = {};
  for (const line of head.replace(/\n[ \t]+/g, " ").split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).toLowerCase()] = decodeWords(line.slice(i + 1).trim());
  }
  if (/quoted-printable/i.test(headers["content-transfer-encoding"] ?? "")) {
    body = body.replace(/=\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  } else if (/base64/i.test(headers["content-transfer-encoding"] ?? "")) {
    body = Buffer.from(body, "base64").toString("utf8");
  }
  return { headers, body };
}

function decodeWords(v: string): string {
  return v.replace(/=\?utf-8\?([QB])\?([^?]*)\?=\s*/gi, (_, enc: string, data: string) =>
    enc.toUpperCase() === "B"
      ? Buffer.from(data, "base64").toString("utf8")
      : Buffer.from(data.replace(/_/g, " ").replace(/=([0-9A-F]{2})/gi, (__, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("utf8"));
}
