import type { CommonQueryMethods } from "slonik";
import { sql } from "slonik";

/** Any slonik pool, connection or transaction: query functions take this so callers choose the scope. */
export type Db = CommonQueryMethods;
export const q = sql.unsafe;
export { sql };

export function toIso(v: unknown): string {
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "number") return new Date(v).toISOString();
  return v == null ? "" : new Date(String(v)).toISOString();
}
