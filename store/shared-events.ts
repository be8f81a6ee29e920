/**
 * Events every deck server on the database hears: each one is handed to this server's listeners at
 * once and sent to the others with `pg_notify` (channel `deck_events`), so `GET /api/v1/events` on any
 * server streams what happens on all of them. A server drops the echo of its own events by their origin.
 *
 * A notification's payload is capped by PostgreSQL (8,000 bytes): long texts inside an event are cut
 * for the other servers; an event still too long reaches this server's listeners only (said once in the log).
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { DatabasePool } from "slonik";
import { listenForNotifications, type NotificationListener } from "./notification-listener.ts";
import { q } from "./queries/db.ts";

export const EVENTS_CHANNEL = "deck_events";
const MAX_PAYLOAD = 7_900;
const MAX_TEXT = 500;

export interface SharedEventsOptions {
  db: DatabasePool;
  /** The database's URL, for the listening connection. */
  url: string;
  log(line: string): void;
}

export class SharedEvents<T extends object> {
  private readonly emitter = new EventEmitter();
  private readonly origin = randomUUID();
  private listener: NotificationListener | null = null;
  private warned = false;
  private connected: () => void = () => {};
  /** Resolves once this server hears the others (the listening connection is up). */
  readonly ready = new Promise<void>((r) => (this.connected = r));

  constructor(private readonly options: SharedEventsOptions) {
    this.emitter.setMaxListeners(0);
  }

  /** Starts hearing the other servers' events. */
  start(): void {
    this.listener ??= listenForNotifications({
      url: this.options.url, channels: [EVENTS_CHANNEL], log: this.options.log, onConnected: () => this.connected(),
      onNotification: (_channel, payload) => {
        let message: { origin?: unknown; event?: unknown };
        try {
          message = JSON.parse(payload) as typeof message;
        } catch {
          return;
        }
        if (message.origin !== this.origin && message.event !== null && typeof message.event === "object") this.emitter.emit("event", message.event as T);
      },
    });
  }

  async close(): Promise<void> {
    await this.listener?.close();
    this.listener = null;
  }

  emit(event: T): void {
    this.emitter.emit("event", event);
    const payload = JSON.stringify({ origin: this.origin, event: cutTexts(event) });
    if (Buffer.byteLength(payload) > MAX_PAYLOAD) {
      if (!this.warned) this.options.log("events: an event too large to send to the other deck servers was streamed from this server only");
      this.warned = true;
      return;
    }
    this.options.db.query(q`SELECT pg_notify(${EVENTS_CHANNEL}, ${payload})`).catch((e: Error) => {
      if (!this.warned) this.options.log(`events: cannot send an event to the other deck servers: ${e.message.split("\n")[0]}`);
      this.warned = true;
    });
  }

  subscribe(listener: (event: T) => void): () => void {
    this.emitter.on("event", listener);
    return () => this.emitter.off("event", listener);
  }
}

/** The event with every string longer than MAX_TEXT cut (messages, causes), however deep. */
function cutTexts(value: unknown): unknown {
  if (typeof value === "string") return value.length > MAX_TEXT ? `${value.slice(0, MAX_TEXT)}…` : value;
  if (Array.isArray(value)) return value.map(cutTexts);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, cutTexts(v)]));
  return value;
}
