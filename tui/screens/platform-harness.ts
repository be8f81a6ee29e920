/**
 * The platform screens' tests (deploys, alerts, security, audit): the real dashboard (root, footer,
 * questions) with these screens added, against the fake API with the routes a test gives, in an
 * 80-column terminal.
 */
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { render } from "ink-testing-library";
import { createApiClient, type Me } from "../api-client.ts";
import { App } from "../app.ts";
import { startFakeApi, waitForFrame, type FakeApiData } from "../fake-api.ts";
import type { ScreenDef } from "../screen.ts";
import { ALERTS_SCREEN } from "./alerts.ts";
import { AUDIT_SCREEN } from "./audit.ts";
import { BUILD_SCREEN, DEPLOYS_SCREEN } from "./deploys.ts";
import { SCREENS } from "./index.ts";
import { SECURITY_SCREEN } from "./security.ts";

export const PLATFORM_SCREENS: ScreenDef[] = [DEPLOYS_SCREEN, BUILD_SCREEN, ALERTS_SCREEN, SECURITY_SCREEN, AUDIT_SCREEN];

export const PLATFORM_ADMIN: Me = { id: 1, email: "admin@example.com", name: "Admin", isAdmin: true, scopes: ["admin"], organizations: [] };

export interface PlatformDashboardOptions {
  routes: FakeApiData["routes"];
  start: string;
  me?: Me;
  readonly?: boolean;
}

export async function openPlatformDashboard(t: TestContext, options: PlatformDashboardOptions) {
  const api = await startFakeApi({ token: "tok-admin", apps: [], metrics: {}, deployments: {}, health: null, me: options.me ?? PLATFORM_ADMIN, routes: options.routes });
  const client = createApiClient({ url: api.url, token: "tok-admin" });
  const ui = render(React.createElement(App, { client, color: false, readonly: options.readonly ?? false, screens: [...SCREENS, ...PLATFORM_SCREENS], start: options.start }));
  // ink-testing-library's terminal is 100 columns; make it 80, as most terminals are.
  Object.defineProperty(ui.stdout, "columns", { get: () => 80 });
  ui.stdout.emit("resize");
  t.after(async () => {
    ui.unmount();
    await api.close();
  });
  const press = async (keys: string) => {
    for (const k of keys) {
      ui.stdin.write(k);
      await new Promise((r) => setTimeout(r, 15));
    }
  };
  const frame = (test: (f: string) => boolean, timeoutMs?: number) => waitForFrame(ui.lastFrame, (f) => f.split("\n")[0]!.length <= 80 && test(f), timeoutMs);
  /** The calls that changed something ("METHOD /api/v1/…"), in order. */
  const changes = () => api.requests.filter((r) => !r.startsWith("/"));
  /** Waits until the dashboard knows who is signed in (the footer's action keys depend on it). */
  const signedIn = () => waitForFrame(() => String(api.requests.includes("/api/v1/users/me")), (v) => v === "true");
  return { api, ui, press, frame, changes, signedIn };
}

/** Every line of the frame fits in 80 columns. */
export function assertFits(frame: string): void {
  for (const line of frame.split("\n")) assert.ok(line.length <= 80, `${line.length} columns: ${line}`);
}

/** The footer's key hint: the frame's last line. */
export function footer(frame: string): string {
  return frame.split("\n").at(-1)!;
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
