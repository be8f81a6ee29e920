import { randomUUID } from "node:crypto";
import type { Caller } from "../ops/index.ts";
import type { AppRow } from "../store/queries/index.ts";

/** A push in progress: who is pushing to which app, and how to cancel it if they go away. */
export interface PushSession {
  id: string;
  caller: Caller;
  app: AppRow;
  abort: AbortController;
  /** The commit this push deploys, once its hook has read the ref updates (null: nothing to deploy). */
  deployCommit: string | null;
  /** Settles when git has finished with the push (refs updated or the push refused). */
  finished: Promise<void>;
  markFinished: () => void;
}

export class PushRegistry {
  private readonly sessions = new Map<string, PushSession>();

  open(caller: Caller, app: AppRow): PushSession {
    let markFinished!: () => void;
    const finished = new Promise<void>((r) => (markFinished = r));
    const s: PushSession = { id: randomUUID(), caller, app, abort: new AbortController(), deployCommit: null, finished, markFinished };
    this.sessions.set(s.id, s);
    return s;
  }

  get(id: string): PushSession | undefined {
    return this.sessions.get(id);
  }

  /** The pusher's connection ended; a deploy that has not switched yet is cancelled. */
  close(id: string, reason?: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    if (reason) s.abort.abort(new Error(reason));
    s.markFinished();
  }
}
