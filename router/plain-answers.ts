/** The router's own short answers (404, 413, 429, 502, 503 …) as plain text. */
import type { ProxyResponse } from "./client-connection.ts";
import type { Duplex } from "node:stream";

export function plainText(res: ProxyResponse, status: number, body: string, extra?: Record<string, string | number>): void {
  const headers: Record<string, string | number> = { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(body) };
  if (extra) Object.assign(headers, extra);
  res.writeHead(status, headers);
  res.end(body);
}

/** The same on a raw socket (an upgrade request, which has no ServerResponse); closes the connection. */
export function rawPlainText(socket: Duplex, status: number, reason: string, body: string, extra = ""): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
  );
}
