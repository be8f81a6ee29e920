import type { LogEntry } from "./log-line.ts";

/**
 * What a drain sends for one line.
 *
 * Syslog drains get one RFC 5424 message per line, framed by octet counting (RFC 5425 §4.3, RFC 6587
 * §3.4.1: `LENGTH SP MESSAGE`):
 *
 *     <14>1 2026-01-05T10:00:00.123Z deck-host myapp web.1 app - the line's text
 *
 * PRI 14 is facility user, severity informational (deck does not know a line's severity); HOSTNAME is
 * the deck server's, APP-NAME the app, PROCID the process (web.1, build, deploy, or router for the
 * router's lines), MSGID the source (app, deck or router), no structured data.
 *
 * HTTPS drains get JSON lines, one object per line:
 *
 *     {"time":"…","app":"myapp","source":"app","process":"web.1","text":"…"}
 *
 * with the request's fields (`method`, `path`, `status`, `durationMs`, `client`, `host`, `requestId`)
 * added for the router's lines.
 */

const PRI = "<14>";

/** PRINTUSASCII of at most `max` characters, or the NILVALUE (RFC 5424 §6). */
function headerField(value: string, max: number): string {
  const v = value.replace(/[^\x21-\x7e]/g, "_").slice(0, max);
  return v === "" ? "-" : v;
}

export function syslogMessage(e: LogEntry, app: string, hostname: string): string {
  const procId = e.source === "router" ? "router" : e.process ?? "-";
  return `${PRI}1 ${e.time} ${headerField(hostname, 255)} ${headerField(app, 48)} ${headerField(procId, 128)} ${e.source} - ${e.text}`;
}

/** One message with its octet count in front. */
export function octetFrame(message: string): string {
  return `${Buffer.byteLength(message, "utf8")} ${message}`;
}

export function jsonLine(e: LogEntry, app: string): string {
  return JSON.stringify({ time: e.time, app, source: e.source, process: e.process, text: e.text, ...(e.request ?? {}) });
}
