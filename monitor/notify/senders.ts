import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { createTransport } from "nodemailer";
import { NOTICE_KEY_HEADER, type EmailMessage } from "./formats.ts";
import { OutboundRefused, type OutboundPolicy } from "./outbound.ts";

/**
 * Carrying a notice's bytes to a channel. Any 2xx answer (or an SMTP server accepting the message) is
 * a delivery; anything else, or no answer within the timeout, is a failure with a one-line reason.
 */
export type SendOutcome = { ok: true } | { ok: false; reason: string };

export interface SendContext {
  /** The notice key, sent along so receivers can drop a duplicate. */
  key: string;
  timeoutMs: number;
  /** Aborted when the worker stops. */
  signal: AbortSignal;
}

const USER_AGENT = "deck-notify/1";
/** Enough of an error answer to say why (Slack answers `invalid_token`, `no_service`, …). */
const REASON_BODY_BYTES = 200;

const oneLine = (s: string, max = 200) => s.replace(/[\x00-\x1f\x7f]+/g, " ").trim().slice(0, max);
const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/** Why a request failed before an answer, as one line without the URL's secret parts. */
function describeRequestError(e: NodeJS.ErrnoException, where: string, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `no answer from ${where} within ${seconds(timeoutMs)}`;
  if (e instanceof OutboundRefused) return `refused to connect: ${e.message}`;
  switch (e.code) {
    case "ECONNREFUSED": return `connection refused by ${where}`;
    case "ECONNRESET": return `${where} closed the connection before answering`;
    case "ENOTFOUND": case "EAI_AGAIN": return `host ${where.replace(/:\d+$/, "")} not found`;
    case "EHOSTUNREACH": case "ENETUNREACH": return `${where} is unreachable`;
    default:
      return `${where}: ${oneLine(e.code ? `${e.code} ${e.message}` : e.message)}`;
  }
}

/** POSTs JSON to an http(s) URL; success is a 2xx answer. Redirects are not followed. */
export function postJson(rawUrl: string, body: unknown, ctx: SendContext & { policy: OutboundPolicy }): Promise<SendOutcome> {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    return Promise.resolve({ ok: false, reason: "the channel's URL is not a valid URL; remove it and add it again" });
  }
  const where = url.host;
  const literal = url.hostname.replace(/^\[|\]$/g, "");
  // An address in the URL is never looked up, so it is checked here.
  if (isIP(literal) !== 0) {
    const refusal = ctx.policy.refusal(literal);
    if (refusal) return Promise.resolve({ ok: false, reason: `refused to connect: ${refusal}` });
  }
  const data = Buffer.from(JSON.stringify(body));
  const timeout = AbortSignal.timeout(ctx.timeoutMs);
  const signal = AbortSignal.any([timeout, ctx.signal]);
  const client = url.protocol === "https:" ? https : http;
  return new Promise((resolve) => {
    const req = client.request(url, {
      method: "POST", agent: false, lookup: ctx.policy.lookup, signal,
      headers: { "content-type": "application/json", "content-length": data.length, "user-agent": USER_AGENT, [NOTICE_KEY_HEADER]: ctx.key },
    }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) {
        // The answer's body is not needed; a connection cut while it drains changes nothing.
        res.on("error", () => {});
        res.resume();
        resolve({ ok: true });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = () => {
        const text = oneLine(Buffer.concat(chunks).toString("utf8"));
        const redirect = status >= 300 && status < 400 ? " (deck does not follow redirects: give the final URL)" : "";
        resolve({ ok: false, reason: `${where} answered HTTP ${status}${res.statusMessage ? ` ${oneLine(res.statusMessage, 60)}` : ""}${text ? `: ${text}` : ""}${redirect}` });
        res.destroy();
      };
      res.on("data", (c: Buffer) => {
        chunks.push(c);
        size += c.length;
        if (size >= REASON_BODY_BYTES) finish();
      });
      res.on("end", finish);
      res.on("error", finish);
    });
    req.on("error", (e: NodeJS.ErrnoException) => resolve({ ok: false, reason: describeRequestError(e, where, timeout.aborted, ctx.timeoutMs) }));
    req.end(data);
  });
}

export interface Mailer {
  send(to: string, message: EmailMessage, ctx: SendContext): Promise<SendOutcome>;
  close(): void;
}

/** E-mail over SMTP to the server of `smtpUrl` (DECK_SMTP_URL: smtp://, smtps://, with user:password@ when needed). */
export function createMailer(options: { smtpUrl?: string; from: string; timeoutMs: number }): Mailer {
  if (!options.smtpUrl) {
    return {
      send: async () => ({ ok: false, reason: "deck has no SMTP server to send e-mail through: a platform admin sets DECK_SMTP_URL" }),
      close: () => {},
    };
  }
  const where = smtpHost(options.smtpUrl);
  const transport = createTransport({
    url: options.smtpUrl,
    connectionTimeout: options.timeoutMs, greetingTimeout: options.timeoutMs, socketTimeout: options.timeoutMs,
  });
  return {
    async send(to, message, ctx) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<SendOutcome>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, reason: `no answer from the SMTP server ${where} within ${seconds(ctx.timeoutMs)}` }), ctx.timeoutMs);
      });
      const sent = transport.sendMail({
        from: options.from, to, subject: message.subject, text: message.text, messageId: message.messageId,
        headers: { [NOTICE_KEY_HEADER]: ctx.key },
      }).then(
        (info): SendOutcome => (info.rejected.length > 0 ? { ok: false, reason: `the SMTP server ${where} refused ${to}` } : { ok: true }),
        (e: SmtpError): SendOutcome => ({ ok: false, reason: describeSmtpError(e, where, to) }),
      );
      try {
        return await Promise.race([sent, late]);
      } finally {
        clearTimeout(timer);
      }
    },
    close: () => transport.close(),
  };
}

type SmtpError = Error & { code?: string; response?: string };

/** nodemailer's failure as one line: what the server said, or why it could not be reached. */
function describeSmtpError(e: SmtpError, where: string, to: string): string {
  const said = e.response ? oneLine(e.response) : "";
  if (/ECONNREFUSED/.test(e.message)) return `connection refused by the SMTP server ${where}`;
  if (/ENOTFOUND|EAI_AGAIN/.test(e.message)) return `the SMTP server's host ${where.replace(/:\d+$/, "")} not found`;
  switch (e.code) {
    case "ETIMEDOUT": case "ECONNECTION": return `no answer from the SMTP server ${where}${said ? `: ${said}` : ""}`;
    case "EAUTH": return `the SMTP server ${where} refused deck's login (check DECK_SMTP_URL)${said ? `: ${said}` : ""}`;
    case "EENVELOPE": return `the SMTP server ${where} refused ${to}${said ? `: ${said}` : ""}`;
    default: return `the SMTP server ${where}: ${said || oneLine(e.code ? `${e.code} ${e.message}` : e.message)}`;
  }
}

/** host:port of an SMTP URL, for messages (never its password). */
function smtpHost(raw: string): string {
  try {
    return new URL(raw).host;
  } catch {
    return "(DECK_SMTP_URL)";
  }
}
