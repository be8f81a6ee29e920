import { randomUUID } from "node:crypto";
import https from "node:https";
import { connect as connectTcp, isIP, type Socket } from "node:net";
import { connect as connectTls, rootCertificates } from "node:tls";
import { jsonLine, octetFrame, syslogMessage } from "./drain-format.ts";
import type { DrainTarget } from "./drain-url.ts";
import type { LogEntry } from "./log-line.ts";
import type { OutboundPolicy } from "../notify/index.ts";

/**
 * Sending a batch of lines to one drain. `send` resolves once the batch is handed over: for HTTPS,
 * when the receiver answered 2xx; for syslog, when the bytes are written to the connection (syslog
 * has no acknowledgement, RFC 5425 §4.1: lines in flight when a connection breaks can be lost, and
 * are counted as delivered). A failed `send` may be called again with the same batch.
 */
export interface DrainTransport {
  send(batch: LogEntry[]): Promise<void>;
  close(): void;
}

export interface TransportOptions {
  app: string;
  /** HOSTNAME of syslog messages. */
  hostname: string;
  policy: OutboundPolicy;
  /** Also trusted besides the system CAs (a receiver with a private CA; tests). */
  ca?: string | Buffer;
  /** Connecting, and waiting for an HTTP answer. */
  timeoutMs: number;
}

export function createTransport(target: DrainTarget, options: TransportOptions): DrainTransport {
  return target.kind === "https" ? new HttpsTransport(target, options) : new SyslogTransport(target, options);
}

const trusted = (ca: string | Buffer | undefined) => (ca === undefined ? undefined : [...rootCertificates, ca.toString()]);

/**
 * A host given as an address is checked here; a name is checked by the policy's lookup, on the addresses
 * it resolves to when the connection is made (the address connected to is the one checked).
 */
function refuseAddress(policy: OutboundPolicy, host: string, where: string): void {
  if (isIP(host) === 0) return;
  const why = policy.refusal(host);
  if (why !== null) throw new Error(`${where}: ${why}`);
}

/** Error messages of the socket layer, as one line for drains:list. */
function describe(e: unknown, where: string): Error {
  const err = e as NodeJS.ErrnoException;
  const words: Record<string, string> = {
    ECONNREFUSED: "connection refused", ECONNRESET: "connection reset", ETIMEDOUT: "timed out", EHOSTUNREACH: "host unreachable",
    ENETUNREACH: "network unreachable", ENOTFOUND: "host name not found", EAI_AGAIN: "host name lookup failed",
  };
  const what = err.code && words[err.code] ? words[err.code] : err.message.split("\n")[0]!.slice(0, 300);
  return new Error(`${where}: ${what}`);
}

class SyslogTransport implements DrainTransport {
  #socket: Socket | null = null;

  constructor(private readonly target: DrainTarget, private readonly options: TransportOptions) {}

  async send(batch: LogEntry[]): Promise<void> {
    const socket = this.#socket ?? (await this.#connect());
    const data = batch.map((e) => octetFrame(syslogMessage(e, this.options.app, this.options.hostname))).join("");
    await new Promise<void>((resolve, reject) => {
      // A receiver that stops reading fills the connection: after the timeout it is dropped and the batch retried.
      const timer = setTimeout(() => socket.destroy(new Error(`the receiver took nothing for ${this.options.timeoutMs / 1000} s`)), this.options.timeoutMs);
      const failed = (e: Error) => {
        clearTimeout(timer);
        reject(describe(e, `${this.target.host}:${this.target.port}`));
      };
      socket.once("error", failed);
      socket.write(data, (e) => {
        clearTimeout(timer);
        socket.off("error", failed);
        if (e) failed(e);
        else resolve();
      });
    });
  }

  async #connect(): Promise<Socket> {
    const { host, port } = this.target;
    const where = `${host}:${port}`;
    refuseAddress(this.options.policy, host, where);
    const lookup = this.options.policy.lookup;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s: Socket = this.target.kind === "syslog+tls"
        ? connectTls({ host, port, lookup, ca: trusted(this.options.ca), ...(isIP(host) ? {} : { servername: host }) })
        : connectTcp({ host, port, lookup });
      const timer = setTimeout(() => s.destroy(new Error(`no connection within ${this.options.timeoutMs / 1000} s`)), this.options.timeoutMs);
      s.once(this.target.kind === "syslog+tls" ? "secureConnect" : "connect", () => {
        clearTimeout(timer);
        s.off("error", failed);
        resolve(s);
      });
      const failed = (e: Error) => {
        clearTimeout(timer);
        reject(describe(e, where));
      };
      s.once("error", failed);
    });
    // A receiver says nothing; its closing the connection (or an error) means the next batch reconnects.
    socket.resume();
    socket.on("error", () => {});
    socket.on("close", () => {
      if (this.#socket === socket) this.#socket = null;
    });
    socket.on("end", () => socket.destroy());
    this.#socket = socket;
    return socket;
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = null;
  }
}

class HttpsTransport implements DrainTransport {
  readonly #agent: https.Agent;
  /** The batch being sent and its id: a retry of the same batch carries the same X-Deck-Batch. */
  #batch: { lines: LogEntry[]; id: string } | null = null;

  constructor(private readonly target: DrainTarget, private readonly options: TransportOptions) {
    this.#agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: trusted(options.ca) });
  }

  async send(batch: LogEntry[]): Promise<void> {
    if (this.#batch?.lines !== batch) this.#batch = { lines: batch, id: randomUUID() };
    const id = this.#batch.id;
    const body = batch.map((e) => jsonLine(e, this.options.app)).join("\n") + "\n";
    const url = new URL(this.target.url);
    const where = url.host;
    refuseAddress(this.options.policy, this.target.host, where);
    await new Promise<void>((resolve, reject) => {
      const req = https.request(url, {
        method: "POST",
        agent: this.#agent,
        headers: { "content-type": "application/x-ndjson", "content-length": Buffer.byteLength(body), "x-deck-batch": id, "user-agent": "deck-log-drain" },
        lookup: this.options.policy.lookup,
      }, (res) => {
        res.resume();
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) resolve();
          else reject(new Error(`${where}: answered HTTP ${status}`));
        });
        res.on("error", (e) => reject(describe(e, where)));
      });
      req.setTimeout(this.options.timeoutMs, () => req.destroy(new Error(`no answer within ${this.options.timeoutMs / 1000} s`)));
      req.on("error", (e) => reject(describe(e, where)));
      req.end(body);
    });
    this.#batch = null;
  }

  close(): void {
    this.#agent.destroy();
  }
}
