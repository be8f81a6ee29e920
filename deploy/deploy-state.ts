import { EventEmitter } from "node:events";
import type { ErrorCode } from "../core/index.ts";
import { q, type Db } from "../store/queries/index.ts";

/**
 * The states a deployment moves through, one `transition()` for every move:
 *
 *   queued ─▶ building ─▶ releasing ─▶ starting ─▶ checking ─▶ switching ─▶ draining ─▶ succeeded
 *     │          │            │           │           │            │
 *     └──────────┴────────────┴───────────┴───────────┴────────────┴──▶ failed | cancelled | interrupted
 *
 * A push goes through `building`; a config change, scale, restart or rollback starts at `releasing`
 * (the release command runs only where the release asks for it) or `starting`. Until `switching` the
 * live app is untouched; from `draining` on the new release is live. `interrupted`: the deck server
 * stopped while the deployment was under way (set when it starts again).
 */
export type DeployState =
  | "queued" | "building" | "releasing" | "starting" | "checking" | "switching" | "draining"
  | "succeeded" | "failed" | "cancelled" | "interrupted";

export type DeployKind = "push" | "config" | "scale" | "restart" | "rollback";

const ENDINGS = ["failed", "cancelled", "interrupted"] as const;

const MOVES: Record<DeployState, readonly DeployState[]> = {
  queued: ["building", "releasing", "starting", ...ENDINGS],
  building: ["releasing", "starting", ...ENDINGS],
  releasing: ["starting", ...ENDINGS],
  starting: ["checking", "switching", ...ENDINGS],
  checking: ["switching", ...ENDINGS],
  // The switch either puts the release live (draining) or is refused by the router (failed).
  switching: ["draining", "failed", "interrupted"],
  // Live already: only the old processes' drain is left, and it cannot fail the deployment.
  draining: ["succeeded", "interrupted"],
  succeeded: [],
  failed: [],
  cancelled: [],
  interrupted: [],
};

export const FINAL_STATES: readonly DeployState[] = ["succeeded", ...ENDINGS];
export const ACTIVE_STATES: readonly DeployState[] = (Object.keys(MOVES) as DeployState[]).filter((s) => !FINAL_STATES.includes(s));

export function isFinal(state: DeployState): boolean {
  return FINAL_STATES.includes(state);
}

export function canMove(from: DeployState, to: DeployState): boolean {
  return MOVES[from].includes(to);
}

/** One move of one deployment, as the log, the API's event stream and the dashboard see it. */
export interface DeployEvent {
  deploymentId: number;
  app: string;
  kind: DeployKind;
  from: DeployState;
  to: DeployState;
  at: string;
  /** For failed, cancelled and interrupted: the typed failure and its one-line message. */
  code?: string;
  message?: string;
}

/** Where deployment events go: every subscriber hears every move, in order, within this process. */
export class DeployEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  subscribe(listener: (event: DeployEvent) => void): () => void {
    this.emitter.on("event", listener);
    return () => this.emitter.off("event", listener);
  }

  emit(event: DeployEvent): void {
    this.emitter.emit("event", event);
  }
}

export interface TransitionDetails {
  code?: ErrorCode;
  message?: string;
  releaseId?: number;
  buildTimeMs?: number;
}

/**
 * Moves a deployment from the state it is known to be in to `to`: writes the row (only if it is still
 * in `from`; a final state gets its finish time), tells other deck servers (`deck_deploy_events`) and
 * emits the event here. A move the diagram does not allow is a bug and throws.
 */
export async function transition(db: Db, events: DeployEvents, d: { id: number; app: string; kind: DeployKind; state: DeployState }, to: DeployState, details: TransitionDetails = {}): Promise<DeployEvent> {
  if (!canMove(d.state, to)) throw new Error(`deployment ${d.id} of ${d.app} cannot move from ${d.state} to ${to}`);
  const event: DeployEvent = {
    deploymentId: d.id, app: d.app, kind: d.kind, from: d.state, to, at: new Date().toISOString(),
    ...(details.code ? { code: details.code } : {}), ...(details.message ? { message: details.message.slice(0, 500) } : {}),
  };
  const final = isFinal(to);
  const moved = await db.maybeOne(q`
    WITH moved AS (
      UPDATE deployments SET status = ${to}, updated_at = now(),
        error = COALESCE(${details.message ?? null}, error), error_code = COALESCE(${details.code ?? null}, error_code),
        release_id = COALESCE(${details.releaseId ?? null}, release_id), build_time = COALESCE(${details.buildTimeMs ?? null}, build_time),
        finished_at = CASE WHEN ${final} THEN now() ELSE finished_at END
       WHERE id = ${d.id} AND status = ${d.state} RETURNING id)
    SELECT id, pg_notify('deck_deploy_events', ${JSON.stringify(event)}) FROM moved`);
  if (!moved) throw new Error(`deployment ${d.id} of ${d.app} was no longer ${d.state} when it was to move to ${to}`);
  d.state = to;
  events.emit(event);
  return event;
}
