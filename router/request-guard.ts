/**
 * The last line of defence around serving a request: an exception (a bug, or an input no one
 * thought of) costs the request it was serving a 500, or its connection, and a log line with the
 * stack; never the router, which serves every app.
 */
import type { Duplex } from "node:stream";
import type { ProxyRequest, ProxyResponse } from "./client-messages.ts";
import { plainText, rawPlainText } from "./plain-answers.ts";

/** How the log line of an exception caught while serving a request starts (the fuzzer looks for it). */
export const INTERNAL_ERROR = "internal error";

/** Logs an exception caught while serving `what` (stack included: it is a bug to fix). */
export function logInternalError(log: (line: string) => void, what: string, err: unknown): void {
  log(`${INTERNAL_ERROR} while serving ${what.slice(0, 200)}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
}

/** Runs one step of serving a request; if it throws, the request gets a 500 or its connection (or stream) is cut. */
export function guardRequest(log: (line: string) => void, req: ProxyRequest, res: ProxyResponse, step: () => void): void {
  try {
    step();
  } catch (err) {
    logInternalError(log, `${req.method} ${req.url}`, err);
    answerInternalError(req, res);
  }
}

/** As guardRequest, for an upgrade request: its connection gets the 500, or is closed. */
export function guardUpgrade(log: (line: string) => void, req: ProxyRequest, socket: Duplex, step: () => void): void {
  try {
    step();
  } catch (err) {
    logInternalError(log, `upgrade ${req.method} ${req.url}`, err);
    if (socket.destroyed) return;
    try {
      socket.resume();
      rawPlainText(socket, 500, "the router failed to serve this request\n");
    } catch {
      socket.destroy();
    }
  }
}

/** The answer to a request whose serving threw: a 500 if nothing was sent yet, else its connection (or stream) is cut. */
function answerInternalError(req: ProxyRequest, res: ProxyResponse): void {
  try {
    if (res.headersSent || res.writableFinished) return void res.destroy();
    if (req.httpVersionMajor !== 2) res.shouldKeepAlive = false;
    plainText(res, 500, "the router failed to serve this request\n");
  } catch {
    try {
      res.destroy();
    } catch {
      req.socket.destroy();
    }
  }
}
