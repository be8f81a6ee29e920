/**
 * The platform screens' tests (deploys, alerts, security, audit): the shared dashboard harness with a
 * platform admin signed in who belongs to no organisation, and small helpers those tests share.
 */
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import type { Me } from "../api-client.ts";
import { openDashboard, type DashboardOptions } from "./admin-harness.ts";

export { assertFits, footer } from "./admin-harness.ts";

export const PLATFORM_ADMIN: Me = { id: 1, email: "admin@example.com", name: "Admin", isAdmin: true, scopes: ["admin"], organizations: [] };

export function openPlatformDashboard(t: TestContext, options: DashboardOptions) {
  return openDashboard(t, { ...options, me: options.me ?? PLATFORM_ADMIN });
}

/** The line of the frame that holds `text`. */
export function lineWith(frame: string, text: string): string {
  const line = frame.split("\n").find((l) => l.includes(text));
  assert.ok(line !== undefined, `no line holds "${text}":\n${frame}`);
  return line;
}

/** A time `seconds` ago, as deck writes times. */
export function ago(seconds: number): string {
  return new Date(Date.now() - seconds * 1000).toISOString();
}
