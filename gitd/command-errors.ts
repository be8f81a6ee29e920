import { randomBytes } from "node:crypto";
import { describeError, hiddenErrorMessage } from "../ops/index.ts";

/** What an SSH command that failed prints (one line on stderr) and, for an error it may not show, logs. */
export interface CommandErrorReport {
  line: string;
  /** For the deck server log; set only when the line does not carry the error's message. */
  log?: string;
}

/**
 * `deck: error (CODE): MESSAGE` for an error whose message may be shown (the error catalogue decides,
 * as it does for the API). Any other error prints the API's generic message instead, naming an id
 * under which its details go to the log.
 */
export function describeCommandError(e: unknown, command: string, newId: () => string = () => randomBytes(6).toString("hex")): CommandErrorReport {
  const d = describeError(e);
  if (d.shown) return { line: `deck: error (${d.code}): ${d.message.replace(/\s*\n\s*/g, " ").trim()}` };
  const id = newId();
  return { line: `deck: error (${d.code}): ${hiddenErrorMessage(command, id)}`, log: `command ${command} failed (id ${id}): ${d.detail}` };
}
