/**
 * Usage measured per time slot (storage per clock hour, domains per UTC day): each thing has one
 * ledger entry per slot, keyed by the thing and the slot's start, so measuring a slot again adds
 * nothing. After a gap (deck stopped, the database away) the slots since the newest recorded one are
 * filled, at most GAP_FILL_MS back.
 */
import { findRecordedKeys, type Db } from "../../store/queries/index.ts";

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/** How far back a gap is filled: older slots are left empty rather than guessed at. */
export const GAP_FILL_MS = 7 * DAY_MS;

/** The start of the slot of `stepMs` (an hour or a day, UTC) that `ms` falls in. */
export function startOfSlot(ms: number, stepMs: number): number {
  return Math.floor(ms / stepMs) * stepMs;
}

/** Slot starts from the one holding `fromMs` to the one holding `toMs`, oldest first (none when from is later). */
export function listSlots(fromMs: number, toMs: number, stepMs: number): number[] {
  const slots: number[] = [];
  for (let s = startOfSlot(fromMs, stepMs); s <= toMs; s += stepMs) slots.push(s);
  return slots;
}

/**
 * For each series (its slots' keys, oldest first; the last is the current slot), the index of the
 * first slot after the newest one recorded: `keys.length` when the current one is, 0 when none is.
 * Probes the current slot of every series first, then the one before, and only then the rest of the
 * window for what is still unknown: in steady state that is one or two indexed lookups per series.
 */
export async function findFirstUnrecorded(db: Db, series: ReadonlyArray<readonly string[]>): Promise<number[]> {
  const first = series.map(() => -1);
  const probe = async (pick: (keys: readonly string[]) => ReadonlyArray<{ key: string; index: number }>) => {
    const asked: Array<{ s: number; key: string; index: number }> = [];
    series.forEach((keys, s) => {
      if (first[s] === -1) for (const p of pick(keys)) asked.push({ s, ...p });
    });
    if (asked.length === 0) return;
    const found = await findRecordedKeys(db, asked.map((a) => a.key));
    for (const a of asked) if (found.has(a.key)) first[a.s] = Math.max(first[a.s]!, a.index + 1);
  };
  const at = (keys: readonly string[], index: number) => (index >= 0 ? [{ key: keys[index]!, index }] : []);
  await probe((keys) => at(keys, keys.length - 1));
  await probe((keys) => at(keys, keys.length - 2));
  await probe((keys) => keys.slice(0, Math.max(0, keys.length - 2)).map((key, index) => ({ key, index })));
  return first.map((f) => Math.max(f, 0));
}
