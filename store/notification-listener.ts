/**
 * A PostgreSQL LISTEN connection that stays up: it reconnects after the server or the network drops
 * it (backoff 250 ms doubling to 5 s) and tells its owner, who must then re-read whatever it may have
 * missed, because notifications sent while no session listens are lost.
 *
 * Runs on its own `pg` client: a pooled connection cannot hold a LISTEN.
 */
import pg from "pg";
import { redactUrl } from "./database.ts";

export interface NotificationListenerOptions {
  url: string;
  channels: string[];
  onNotification(channel: string, payload: string): void;
  /** Called after each (re)connect, once LISTEN is in place: re-read state here. */
  onConnected(): void | Promise<void>;
  log?: (line: string) => void;
}

export interface NotificationListener {
  /** True while a listening connection is up. */
  readonly connected: boolean;
  /** Drops the current connection (when one seems dead) and connects afresh. */
  reconnect(): void;
  close(): Promise<void>;
}

const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;

export function listenForNotifications(options: NotificationListenerOptions): NotificationListener {
  const log = options.log ?? (() => {});
  let client: pg.Client | null = null;
  let closed = false;
  let backoff = MIN_BACKOFF_MS;
  let timer: NodeJS.Timeout | undefined;
  let connecting = false;
  let lastError = "";

  const schedule = (ms: number) => {
    if (closed || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, ms);
  };

  const connect = async (): Promise<void> => {
    if (closed || connecting || client !== null) return;
    connecting = true;
    const c = new pg.Client({ connectionString: options.url, keepAlive: true, connectionTimeoutMillis: 5_000 });
    // Failures surface as 'end' (after connect) or as the rejected connect; nothing may crash the process.
    c.on("error", () => {});
    try {
      await c.connect();
      for (const channel of options.channels) await c.query(`LISTEN ${c.escapeIdentifier(channel)}`);
    } catch (e) {
      connecting = false;
      // The connect or LISTEN failure is logged below; ending the broken client can only fail the same way.
      void c.end().catch(() => {});
      const message = (e as Error).message.split("\n")[0] ?? String(e);
      if (message !== lastError) log(`database: cannot listen on ${redactUrl(options.url)} (${message}); retrying`);
      lastError = message;
      schedule(backoff);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      return;
    }
    connecting = false;
    // Closed while connecting: this client was never used, so a failure to end it changes nothing.
    if (closed) return void c.end().catch(() => {});
    client = c;
    backoff = MIN_BACKOFF_MS;
    if (lastError !== "") log("database: listening again");
    lastError = "";
    c.on("notification", (n) => {
      if (options.channels.includes(n.channel)) options.onNotification(n.channel, n.payload ?? "");
    });
    c.once("end", () => {
      if (client !== c) return;
      client = null;
      if (closed) return;
      lastError = "connection lost";
      log("database: the listening connection was lost; reconnecting");
      schedule(MIN_BACKOFF_MS);
    });
    try {
      await options.onConnected();
    } catch (e) {
      log(`database: re-reading after connecting failed: ${(e as Error).message.split("\n")[0]}`);
    }
  };

  void connect();

  return {
    get connected() {
      return client !== null;
    },
    reconnect() {
      if (closed) return;
      const c = client;
      client = null;
      // Not awaited: ending a connection whose peer is gone can take as long as TCP does to notice.
      // It is being dropped for a new one, so its failing to end cleanly is expected.
      if (c) void c.end().catch(() => {});
      schedule(0);
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      const c = client;
      client = null;
      // Closing: a connection that fails to end cleanly is gone all the same.
      if (c) await c.end().catch(() => {});
    },
  };
}
