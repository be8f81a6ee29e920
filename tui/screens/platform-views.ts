/**
 * What the platform-wide screens (deploys, alerts, security, audit) share: a 403 kept as the one line
 * to show, who may act on an org's apps, a question asked from a key, and the time formats.
 */
import React from "react";
import { Text, type Key } from "ink";
import { ROLE_ACTIONS, isRole, type Action } from "../../core/index.ts";
import { ApiError, type Me } from "../api-client.ts";
import type { ScreenProps } from "../screen.ts";
import { truncateText } from "../table.ts";

const h = React.createElement;

/** An answer, or the line saying the caller may not see it: these views are for platform admins. */
export type Guarded<T> = { allowed: true; data: T } | { allowed: false; message: string };

export async function guardForbidden<T>(load: () => Promise<T>): Promise<Guarded<T>> {
  try {
    return { allowed: true, data: await load() };
  } catch (err) {
    if (err instanceof ApiError && err.code === "forbidden") return { allowed: false, message: err.message };
    throw err;
  }
}

/** The one line a screen shows instead of its body: "loading…", a failure, or why it is not allowed. */
export function statusLine(props: Pick<ScreenProps, "color" | "width">, text: string, failed: boolean): React.ReactElement {
  return h(Text, { wrap: "truncate", color: props.color && failed ? "red" : undefined }, truncateText(text, props.width));
}

/**
 * Whether `me` may do `action` on the apps of `org`: platform admins may do everything, anyone else
 * as their role in the org allows (core/policy.ts, the table deck itself decides by).
 */
export function mayAct(me: Me | undefined, org: string, action: Action): boolean {
  if (!me) return false;
  if (me.isAdmin) return true;
  const role = me.organizations.find((o) => o.slug === org)?.role;
  return role !== undefined && isRole(role) && ROLE_ACTIONS[role].has(action);
}

/** Whether a key for `action` belongs in the footer: not read-only, and allowed in at least one org. */
export function mayActSomewhere(p: { readonly: boolean; me: Me | undefined }, action: Action): boolean {
  if (p.readonly || !p.me) return false;
  return p.me.isAdmin || p.me.organizations.some((o) => mayAct(p.me, o.slug, action));
}

/**
 * Questions asked from a screen's key. The root reads every key too, before or after the screen:
 * the question is put once the key that asked has been read by both (or the root would type that
 * key into the answer), and the Enter or Esc that ends the question does not act on the screen.
 */
export function useQuestions(): { put: (ask: () => void) => void; swallow: (key: Key) => boolean } {
  const open = React.useRef(false);
  return {
    put: (ask) => {
      open.current = true;
      queueMicrotask(ask);
    },
    swallow: (key) => {
      if (!open.current) return false;
      if (key.return || key.escape) open.current = false;
      return true;
    },
  };
}

/**
 * The latest props, for a key handler: Ink hands a key to the handler of the last render whose
 * effects have run, which may be older than the frame on the screen (who is signed in, read-only).
 */
export function useLatest<T>(value: T): React.RefObject<T> {
  const ref = React.useRef(value);
  ref.current = value;
  return ref;
}

/** A notice sent once the root has read the key (it clears the footer line on every key). */
export function notifyAfterKey(props: Pick<ScreenProps, "notify">, text: string, tone?: "ok" | "error"): void {
  queueMicrotask(() => props.notify(text, tone));
}

/** "42s", "1m 05s", "2h 03m" ("–" for none). */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** "12-07 12:01:02" (UTC, as the header's clock) from an ISO time ("–" for none). */
export function formatClock(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(5, 19).replace("T", " ");
}

/** The first line of a message, for a table cell. */
export function firstLine(text: string | null | undefined): string {
  return text ? text.split("\n")[0]!.trim() : "–";
}

/** Whether any of `cells` holds the `/` filter (case-insensitive; "" keeps everything). */
export function matchesFilter(filter: string, cells: readonly (string | null | undefined)[]): boolean {
  const f = filter.toLowerCase();
  return !f || cells.some((c) => c?.toLowerCase().includes(f));
}
