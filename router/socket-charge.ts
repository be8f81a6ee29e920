/**
 * Metering of HTTP/1 connections: each request is charged the bytes its connection moved since the
 * previous request on it was charged.
 */
import type { Socket } from "node:net";

/** Byte counts of a client connection already charged to earlier requests on it. */
const CHARGED_IN = Symbol("deck.chargedIn");
const CHARGED_OUT = Symbol("deck.chargedOut");
export type ChargedSocket = Socket & { [CHARGED_IN]?: number; [CHARGED_OUT]?: number };

/** Bytes moved on a connection since the last call for it (its earlier requests are already charged). */
export function chargeSocket(socket: ChargedSocket | null | undefined): [number, number] {
  if (!socket || typeof socket.bytesRead !== "number") return [0, 0];
  const read = socket.bytesRead;
  const written = socket.bytesWritten;
  const inBytes = read - (socket[CHARGED_IN] ?? 0);
  const outBytes = written - (socket[CHARGED_OUT] ?? 0);
  socket[CHARGED_IN] = read;
  socket[CHARGED_OUT] = written;
  return [inBytes, outBytes];
}

/**
 * Bytes read on a connection that no later request is charged: the rest of a body the router drops
 * after the request was answered (the app never got them, and the next request did not send them).
 * Bytes read before the request was charged are its own already: the mark never passes what was read.
 */
export function leaveUncharged(socket: ChargedSocket, bytesIn: number): void {
  socket[CHARGED_IN] = Math.min(socket.bytesRead, (socket[CHARGED_IN] ?? 0) + bytesIn);
}
