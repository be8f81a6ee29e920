/** Messages between the router's supervisor (supervisor.ts) and its workers (router-worker.ts). */

/** Which listening port a handed-off connection came in on. */
export type ConnectionKind = "http" | "https";

/** Supervisor → worker. A `connection` message carries the accepted socket as its handle. */
export type SupervisorMessage = { type: "serve" } | { type: "connection"; kind: ConnectionKind; id: number };

/**
 * Worker → supervisor: `loaded` once its code is loaded (a standby is ready), `serving` once it
 * answers, `took` for connections it received: until then the supervisor keeps its own copy of each,
 * to hand to the next worker should this one die first.
 */
export type WorkerMessage = { type: "loaded" } | { type: "serving" } | { type: "took"; ids: number[] };

export function isSupervisorMessage(value: unknown): value is SupervisorMessage {
  const m = value as SupervisorMessage | null;
  if (typeof m !== "object" || m === null) return false;
  return m.type === "serve" || (m.type === "connection" && (m.kind === "http" || m.kind === "https") && Number.isSafeInteger(m.id));
}

export function isWorkerMessage(value: unknown): value is WorkerMessage {
  const m = value as WorkerMessage | null;
  if (typeof m !== "object" || m === null) return false;
  return m.type === "loaded" || m.type === "serving" || (m.type === "took" && Array.isArray(m.ids) && m.ids.every(Number.isSafeInteger));
}
