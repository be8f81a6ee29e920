/** The router's own short answers (404, 413, 429, 502, 503 …) as plain text. */
import type { ProxyResponse } from "./client-messages.ts";
import type { Duplex } from "node:stream";

/** Reason phrases of the statuses the router answers or relays most (RFC 9110 §15). */
export const REASONS: Record<number, string> = {
  200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
  304: "Not Modified", 308: "Permanent Redirect", 400: "Bad Request", 404: "Not Found", 408: "Request Timeout",
  413: "Content Too Large", 417: "Expectation Failed", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
  500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
};

export function plainText(res: ProxyResponse, status: number, body: string, extra?: Record<string, string | number>): void {
  const headers: Record<string, string | number> = { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(body) };
  if (extra) Object.assign(headers, extra);
  res.writeHead(status, headers);
  res.end(body);
}

/** The same on a raw socket (an upgrade request, which has no ServerResponse); closes the connection. */
export function rawPlainText(socket: Duplex, status: number, body: string, extra = ""): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
}

let dateSecond = 0;
let dateValue = "";
/** The Date field value (RFC 9110 §6.6.1), computed once a second. */
export function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

