/**
 * The dashboard screens' tests: the real dashboard (root, footer, questions, every registered screen)
 * against the fake API with the routes a test gives, in an 80-column terminal.
 */
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { render } from "ink-testing-library";
import { createApiClient, type Me } from "../api-client.ts";
import { App } from "../app.ts";
import { startFakeApi, waitForFrame, type FakeApiData } from "../fake-api.ts";

export const ADMIN_ME: Me = { id: 1, email: "admin@example.com", name: "Admin", isAdmin: true, scopes: ["admin"], organizations: [{ slug: "default", role: "owner" }] };

export interface DashboardOptions {
  routes: FakeApiData["routes"];
  start: string;
  me?: Me;
  readonly?: boolean;
}

export async function openDashboard(t: TestContext, options: DashboardOptions) {
  const api = await startFakeApi({ token: "tok-admin", apps: [], metrics: {}, deployments: {}, health: null, me: options.me ?? ADMIN_ME, routes: options.routes });
  const client = createApiClient({ url: api.url, token: "tok-admin" });
  const ui = render(React.createElement(App, { client, color: false, readonly: options.readonly ?? false, start: options.start }));
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
  /** Types an answer to a question and presses Enter. */
  const answer = async (text: string) => press(text + "\r");
  const frame = async (test: (f: string) => boolean, timeoutMs?: number) => {
    const f = await waitForFrame(ui.lastFrame, (f) => f.split("\n")[0]!.length <= 80 && test(f), timeoutMs);
    // A screen's key handler is put in place just after its first frame is drawn: a key sent at once
    // (faster than anyone types) could arrive before it.
    await new Promise((r) => setTimeout(r, 40));
    return f;
  };
  /** The calls that changed something ("METHOD /api/v1/…"), in order. */
  const changes = () => api.requests.filter((r) => !r.startsWith("/"));
  /** Waits until the dashboard knows who is signed in (the footer's action keys depend on it). */
  const signedIn = () => waitForFrame(() => String(api.requests.includes("/api/v1/users/me")), (v) => v === "true");
  return { api, ui, press, answer, frame, changes, signedIn };
}

/** Every line of the frame fits in 80 columns. */
export function assertFits(frame: string): void {
  for (const line of frame.split("\n")) assert.ok(line.length <= 80, `${line.length} columns: ${line}`);
}

/** The footer's key hint: the frame's last line. */
export function footer(frame: string): string {
  return frame.split("\n").at(-1)!;
}
