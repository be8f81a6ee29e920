/**
 * What the admin screens (users, orgs, billing, support) share: a selection moved with ↑↓ / k j that
 * the key handler reads through a ref (keys can come faster than renders), the lines of a screen
 * scrolled so the selected one stays in view, money in dollars, and the path of a user.
 */
import React from "react";
import { Box, Text, type Key } from "ink";
import { truncateText } from "../table.ts";

const h = React.createElement;

export interface Selection<Row> {
  /** The selected index (clamped to the rows). */
  at: number;
  /** The rows and the selected one as the latest key left them. */
  now: () => { rows: readonly Row[]; at: number; row: Row | undefined };
  /** Moves on ↑/↓ or k/j; true when the key was one of them. */
  move: (input: string, key: Key) => boolean;
}

export function useSelection<Row>(rows: readonly Row[]): Selection<Row> {
  const [selected, setSelected] = React.useState(0);
  const at = Math.min(selected, Math.max(0, rows.length - 1));
  const current = React.useRef({ rows, at });
  current.current = { rows, at };
  const moveTo = (i: number) => {
    current.current = { ...current.current, at: i };
    setSelected(i);
  };
  return {
    at,
    now: () => ({ ...current.current, row: current.current.rows[current.current.at] }),
    move: (input, key) => {
      const { rows, at } = current.current;
      if (key.downArrow || input === "j") moveTo(Math.min(at + 1, Math.max(0, rows.length - 1)));
      else if (key.upArrow || input === "k") moveTo(Math.max(at - 1, 0));
      else return false;
      return true;
    },
  };
}

/**
 * A number that changes when the screen should load again: after an action of its own (`bump`),
 * or when `event` (the newest relevant event, a new object each time) changes.
 */
export function useRefreshKey(event: unknown): { key: object; bump: () => void } {
  const [n, setN] = React.useState(0);
  const key = React.useMemo(() => ({ n, event }), [n, event]);
  return { key, bump: () => setN((v) => v + 1) };
}

/** One line of a screen; `selected` marks the row the selection is on ("> "). */
export interface Line { key: string; text: string; color?: string; bold?: boolean; dim?: boolean; selected?: boolean }

/**
 * The lines that fit in `height` rows, scrolled so the selected line shows, each cut to `width`.
 * Colour only when `color`.
 */
export function renderLines(lines: readonly Line[], options: { width: number; height: number; color: boolean }): React.ReactElement {
  const height = Math.max(1, options.height);
  const chosen = lines.findIndex((l) => l.selected);
  const first = chosen < height ? 0 : Math.min(chosen - height + 1, lines.length - height);
  return h(Box, { flexDirection: "column" }, ...lines.slice(first, first + height).map((l) => h(Text, {
    key: l.key, wrap: "truncate",
    color: options.color ? (l.selected ? "cyan" : l.color) : undefined,
    bold: options.color && l.bold, dimColor: options.color && l.dim,
  }, truncateText(l.text, options.width))));
}

/** "$1,234.56" from cents. */
export function formatDollars(cents: number): string {
  const sign = cents < 0 ? "-" : "";
  const abs = Math.abs(Math.round(cents));
  const dollars = Math.floor(abs / 100).toLocaleString("en-US");
  return `${sign}$${dollars}.${String(abs % 100).padStart(2, "0")}`;
}

/** "2026-12-07" from an ISO time ("–" for none). */
export function formatDate(iso: string | null | undefined): string {
  return iso ? iso.slice(0, 10) : "–";
}

/** A user's API path: the email as one path segment ("@" needs no escaping there). */
export function userPath(email: string): string {
  return `/users/${encodeURIComponent(email).replace(/%40/g, "@")}`;
}

export const ROLES = ["owner", "admin", "member", "viewer"] as const;

/** A role typed by the user, or undefined when it is not one of deck's. */
export function parseRole(text: string): (typeof ROLES)[number] | undefined {
  const t = text.trim().toLowerCase();
  return (ROLES as readonly string[]).includes(t) ? (t as (typeof ROLES)[number]) : undefined;
}
