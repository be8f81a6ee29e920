import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { render } from "ink-testing-library";
import { Deck, makeRepo, ROOT } from "../test/helpers/deck.ts";
import { createApiClient } from "./api-client.ts";
import { App } from "./app.ts";
import { waitForFrame } from "./fake-api.ts";

// The dashboard against a real deck: the shapes it reads are deck's own, not a copy of them.
let deck: Deck;
let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "deck-tui-"));
  // Traffic sampled every second, so a request count moves while the test watches.
  deck = await Deck.start({ backend: { name: "embedded" }, env: { DECK_METRICS_INTERVAL: "1" } });
});
after(async () => {
  await deck?.stop();
  await rm(work, { recursive: true, force: true });
});

const LIVE_APP: Record<string, string> = {
  "package.json": JSON.stringify({ name: "tui-live", version: "1.0.0", private: true, scripts: { start: "node server.js" } }),
  "server.js": `require("http").createServer((req, res) => res.end("live\\n")).listen(process.env.PORT);\n`,
};

test("a real deck's apps show in the table, and its overview renders", async (t) => {
  const url = `http://127.0.0.1:${deck.ports.api}`;
  for (const name of ["tui-shop", "tui-blog"]) {
    const res = await fetch(`${url}/api/v1/apps`, { method: "POST", headers: { authorization: `Bearer ${deck.token}`, "content-type": "application/json" }, body: JSON.stringify({ name }) });
    assert.equal(res.status, 201, await res.text());
  }
  const ui = render(React.createElement(App, { client: createApiClient({ url, token: deck.token }), color: false, start: "apps" }));
  t.after(() => ui.unmount());
  const f = await waitForFrame(ui.lastFrame, (f) => f.includes("tui-shop") && f.includes("tui-blog"), 15_000);
  assert.match(f, /2 of 2 apps/);
  assert.doesNotMatch(f, /not found|refused|answered/);
  ui.stdin.write(":o\r");
  const o = await waitForFrame(ui.lastFrame, (f) => f.includes("requests "), 15_000);
  // Either this deck serves /health (services and the build queue) or it says it does not.
  assert.ok(/health: not available \(404\)/.test(o) || /builds\s+\d+ waiting, \d+ running/.test(o), o);
});

test("every screen reads a real deck's answers: deploys, alerts, security, audit, users, orgs, billing, support", async (t) => {
  const url = `http://127.0.0.1:${deck.ports.api}`;
  const made = await fetch(`${url}/api/v1/users`, { method: "POST", headers: { authorization: `Bearer ${deck.token}`, "content-type": "application/json" }, body: JSON.stringify({ email: "screens@example.com", org: "default", role: "viewer" }) });
  assert.equal(made.status, 201, await made.text());
  const ui = render(React.createElement(App, { client: createApiClient({ url, token: deck.token }), color: false }));
  t.after(() => ui.unmount());
  const expected: Record<string, RegExp> = {
    deploys: /recent|no build|queue/i, alerts: /firing|history|no alert/i, security: /failed sign-ins/i, audit: /ACTION|action/,
    users: /screens@example\.com/, orgs: /default/, billing: /MRR/,
  };
  for (const [screen, shows] of Object.entries(expected)) {
    ui.stdin.write(`:${screen}\r`);
    const f = await waitForFrame(ui.lastFrame, (f) => f.split("\n")[0]!.includes(` · ${screen === "orgs" ? "organisations" : screen}`) && !f.includes("loading…") && shows.test(f), 15_000)
      .catch((err: Error) => assert.fail(`:${screen}: ${err.message}`));
    assert.doesNotMatch(f, /this screen failed|deck answered|not allowed|not found|unexpected/, `:${screen} shows a real answer:\n${f}`);
  }
  // Support: a user found by email shows their organisation and role.
  ui.stdin.write(":support\r");
  await waitForFrame(ui.lastFrame, (f) => /find user by email/.test(f), 10_000);
  ui.stdin.write("screens@example.com\r");
  const support = await waitForFrame(ui.lastFrame, (f) => /default/.test(f) && /viewer/.test(f), 15_000);
  assert.doesNotMatch(support, /this screen failed|deck answered|not found/);
});

/** tmux is how a person's terminal is stood in for; under CI it must be there (.ci/run installs it). */
function tmuxMissing(): string | null {
  if (spawnSync("tmux", ["-V"]).status === 0) return null;
  if (process.env.CI === "true") throw new Error("tmux is not installed (required when CI=true: .ci/run installs it)");
  return "tmux is not installed, so the dashboard is not tried in a real terminal";
}

test("deck tui in a real terminal (tmux): the overview, then :apps, then q", async (t) => {
  const missing = tmuxMissing();
  if (missing) return t.skip(missing);
  // A tmux server of its own (-L), started with a plain environment: not the test runner's.
  const session = `deck-tui-${process.pid}`;
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", TERM: "xterm-256color" };
  const tmux = (...args: string[]) => spawnSync("tmux", ["-L", session, ...args], { env, encoding: "utf8" });
  const url = `http://127.0.0.1:${deck.ports.api}`;
  const started = tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", "-e", `DECK_TOKEN=${deck.token}`, "-e", "NO_COLOR=1",
    `${join(ROOT, "bin", "deck")} tui --url ${url}`);
  assert.equal(started.status, 0, started.stderr);
  t.after(() => void tmux("kill-server"));
  const until = async (what: string, ok: (s: string) => boolean) => {
    const deadline = Date.now() + 30_000;
    let last = "";
    while (Date.now() < deadline) {
      last = tmux("has-session", "-t", session).status === 0 ? tmux("capture-pane", "-p", "-t", session).stdout : "(the dashboard exited)";
      if (ok(last)) return last;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`${what} did not show; the terminal shows:\n${last}`);
  };
  const overview = await until("the overview", (s) => /services\s+api up\s+database up/.test(s));
  assert.match(overview, /^deck http:\/\/127\.0\.0\.1:\d+ · overview\s+\d\d:\d\d:\d\d UTC$/m);
  assert.match(overview, /^builds\s+\d+ waiting, \d+ running$/m);
  assert.match(overview, /^q quit/m);
  tmux("send-keys", "-t", session, ":apps", "Enter");
  const apps = await until("the apps screen", (s) => /2 of 2 apps/.test(s));
  assert.match(apps, /^>? *tui-blog\s/m);
  assert.match(apps, /^\s*tui-shop\s/m);
  assert.ok(apps.split("\n").every((l) => l.length <= 100), "nothing wider than the terminal");

  // A push shows up as a row of its own, running its first release, without a key pressed.
  const push = await deck.push(await makeRepo(join(work, "tui-live"), LIVE_APP), "tui-live");
  assert.equal(push.code, 0, push.stderr);
  const pushed = await until("the pushed app's row", (s) => /^\s*tui-live\s+running\s+v1\s/m.test(s));
  assert.match(pushed, /3 of 3 apps/);
  // Under load its requests/s column moves from nothing to a number.
  assert.match(pushed, /^\s*tui-live\s+running\s+v1\s+(–|0\.0)\s/m, "no traffic before the load");
  let loading = true;
  const load = (async () => {
    while (loading) await deck.get("tui-live", "/").catch(() => undefined);
  })();
  try {
    const busy = await until("a request rate on the pushed app's row", (s) => /^\s*tui-live\s+running\s+v1\s+(\d+(\.\d)?)\s/m.test(s) && Number(/^\s*tui-live\s+running\s+v1\s+(\d+(?:\.\d)?)\s/m.exec(s)![1]) > 0);
    assert.match(busy, /^\s*tui-live\s+running\s+v1\s+\d/m);
  } finally {
    loading = false;
    await load;
  }

  // A platform admin suspends a user from the users screen; the row then says so, and deck refuses them.
  const made = await fetch(`${url}/api/v1/users`, { method: "POST", headers: { authorization: `Bearer ${deck.token}`, "content-type": "application/json" }, body: JSON.stringify({ email: "tui-victim@example.com" }) });
  assert.equal(made.status, 201, await made.text());
  const keys = async (...k: string[]) => {
    for (const key of k) {
      tmux("send-keys", "-t", session, ...(key === "Enter" || key === "Escape" ? [key] : ["-l", key]));
      await new Promise((r) => setTimeout(r, 150));
    }
  };
  await keys(":users", "Enter");
  await until("the users screen", (s) => /tui-victim@example\.com\s.*active/.test(s));
  await keys("/tui-victim", "Enter");
  await until("the filtered user", (s) => /^> *tui-victim@example\.com/m.test(s));
  await keys("S");
  await until("the question", (s) => /suspend tui-victim@example\.com\? \(type y to confirm/.test(s));
  await keys("y", "Enter");
  await until("the reason question", (s) => /reason \(optional\):/.test(s));
  await keys("laptop lost", "Enter");
  const suspended = await until("the suspended row", (s) => /^> *tui-victim@example\.com\s.*suspended since/m.test(s));
  assert.ok(suspended.split("\n").every((l) => l.length <= 100));
  const listed = await deck.ssh("users:list --json");
  assert.match(listed.stdout, /"email":"tui-victim@example\.com"[^}]*"suspendedAt":"\d{4}-/, "deck has the user suspended");

  tmux("send-keys", "-t", session, "q");
  await until("the dashboard to exit", (s) => s === "(the dashboard exited)");
});
