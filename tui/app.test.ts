import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { render } from "ink-testing-library";
import { createApiClient, TOKEN_REFUSED, type Health } from "./api-client.ts";
import { sparkline } from "../core/index.ts";
import { App, type AppProps } from "./app.ts";
import { startFakeApi, waitForFrame, type FakeApiData } from "./fake-api.ts";

const GiB = 1024 ** 3;

function deckData(): FakeApiData {
  return {
    token: "tok-admin",
    apps: [
      { name: "shop", status: "running", framework: "node", createdAt: "2026-12-01T00:00:00Z" },
      { name: "blog", status: "running", framework: "ruby", createdAt: "2026-12-02T00:00:00Z" },
      { name: "worker-queue", status: "crashed", framework: null, createdAt: "2026-12-03T00:00:00Z" },
    ],
    metrics: {
      shop: { requestsPerSecond: [10, 20, 42.5], p95Ms: 180, rssBytes: 300 * 1024 * 1024, release: 7 },
      blog: { requestsPerSecond: [1, 2, 3.5], p95Ms: 95, rssBytes: 120 * 1024 * 1024, release: 3 },
    },
    deployments: {
      shop: { id: 31, kind: "push", status: "succeeded", commit: "abc", release: "v7", error: null, createdAt: new Date(Date.now() - 3 * 3600_000).toISOString(), finishedAt: null },
    },
    health: {
      host: { cpus: 4, load1: 1.5, memTotal: 8 * GiB, memFree: 2 * GiB, diskTotal: 100 * GiB, diskFree: 40 * GiB },
      services: [{ name: "api", up: true }, { name: "router", up: true, routerNodes: [] }, { name: "database", up: false, latencyMs: null }, { name: "builders", builderNodes: [{ name: "b1" }, { name: "b2" }] }],
      buildQueue: { waiting: 2, running: 1 },
      alertsFiring: 3,
    },
  };
}

async function open(t: TestContext, options: { data?: FakeApiData; token?: string; props?: Partial<AppProps> } = {}) {
  const data = options.data ?? deckData();
  const api = await startFakeApi(data);
  const client = createApiClient({ url: api.url, token: options.token ?? data.token });
  let exited = 0;
  const ui = render(React.createElement(App, { client, color: false, onExit: () => (exited += 1), ...options.props }));
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
  return { api, ui, press, exited: () => exited, frame: (test: (f: string) => boolean, timeoutMs?: number) => waitForFrame(ui.lastFrame, test, timeoutMs) };
}

test("the overview shows the host, the services up and down, the build queue, alerts and traffic", async (t) => {
  const { frame } = await open(t);
  const f = await frame((f) => f.includes("services"));
  assert.match(f, /4 CPUs, load 1\.50/);
  assert.match(f, /6\.0 GiB used of 8\.0 GiB/);
  assert.match(f, /api up\s+router up\s+database DOWN\s+builders 2 nodes/);
  assert.match(f, /1 of 4 services down/);
  assert.match(f, /2 waiting, 1 running/);
  assert.match(f, /3 firing/);
  // The router's traffic is the apps' requests/s added up per step.
  assert.ok(f.includes(`requests  46.0/s now  ${sparkline([11, 22, 46])}`), f);
});

test("the overview says health is not available when deck has no health route", async (t) => {
  const data = { ...deckData(), health: null };
  const { frame } = await open(t, { data });
  const f = await frame((f) => f.includes("requests"));
  assert.match(f, /health: not available \(404\)/);
});

test("a deck that sends the router's traffic in its health draws requests/s and p95 from it", async (t) => {
  const data = deckData();
  (data.health as Health).traffic = [
    { at: "2026-12-07T11:59:40Z", requestsPerSecond: 5, p95Ms: 40 },
    { at: "2026-12-07T11:59:50Z", requestsPerSecond: 9, p95Ms: null },
    { at: "2026-12-07T12:00:00Z", requestsPerSecond: 12.5, p95Ms: 120 },
  ];
  const { frame, api } = await open(t, { data });
  const f = await frame((f) => f.includes("p95 "));
  assert.ok(f.includes(`requests  12.5/s now  ${sparkline([5, 9, 12.5])}`), f);
  assert.ok(f.includes(`p95       120 ms now  ${sparkline([40, null, 120])}`), f);
  assert.ok(!api.requests.some((r) => r.includes("/metrics")), "no per-app metrics needed");
});

test("someone who is not a platform admin sees why there is no health, and still the traffic", async (t) => {
  const data: FakeApiData = { ...deckData(), health: "forbidden" };
  const { frame } = await open(t, { data });
  const f = await frame((f) => f.includes("requests"));
  assert.match(f, /health: only platform admins see the host and services \(403\)/);
  assert.match(f, /requests\s+46\.0\/s now/);
});

test("the apps table lists each app with its release, requests/s, p95, memory and last deploy", async (t) => {
  const { frame } = await open(t, { props: { start: "apps" } });
  const f = await frame((f) => f.includes("shop") && f.includes("blog"));
  const shop = f.split("\n").find((l) => l.includes("shop"))!;
  assert.match(shop, /shop\s+running\s+v7\s+42\.5\s+180 ms\s+300 MiB\s+3h ago/);
  const blog = f.split("\n").find((l) => l.includes("blog"))!;
  assert.match(blog, /blog\s+running\s+v3\s+3\.5\s+95 ms\s+120 MiB\s+–/);
  assert.match(f, /worker-queue\s+crashed\s+–/);
  assert.match(f, /3 of 3 apps, sorted by name/);
});

test("`s` sorts the table by requests/s, busiest first", async (t) => {
  const { frame, press } = await open(t, { props: { start: "apps" } });
  await frame((f) => f.includes("shop"));
  const names = (f: string) => f.split("\n").map((l) => /^[> ] (\S+)\s+(running|crashed)/.exec(l)?.[1]).filter(Boolean);
  assert.deepEqual(names((await frame((f) => f.includes("shop")))), ["blog", "shop", "worker-queue"]);
  await press("s");
  const f = await frame((f) => f.includes("sorted by requests/s"));
  assert.deepEqual(names(f), ["shop", "blog", "worker-queue"]);
});

test("`/` filters the list as you type, and Esc clears the filter", async (t) => {
  const { frame, press } = await open(t, { props: { start: "apps" } });
  await frame((f) => f.includes("shop"));
  // "sh" would also match worker-queue's status, crashed: the filter looks at names and statuses.
  await press("/sho");
  let f = await frame((f) => f.includes("1 of 3 apps"));
  assert.match(f, /shop/);
  assert.doesNotMatch(f, /blog|worker-queue/);
  assert.match(f, /^\/sho$/m);
  await press("\r");
  f = await frame((f) => f.includes("filter: sho"));
  await press("\u001B");
  f = await frame((f) => f.includes("3 of 3 apps"));
  assert.match(f, /blog/);
});

test("`:apps` switches from the overview to the apps table, and `:overview` back", async (t) => {
  const { frame, press, ui } = await open(t);
  await frame((f) => f.includes("services"));
  await press(":apps");
  await frame((f) => f.includes(":apps"));
  await press("\r");
  let f = await frame((f) => f.includes("NAME") && f.includes("shop"));
  assert.match(f.split("\n")[0]!, /· apps/);
  // Pasted, the command arrives in one chunk.
  ui.stdin.write(":overview\r");
  f = await frame((f) => f.includes("services"));
  assert.match(f.split("\n")[0]!, /· overview/);
});

test("Enter opens the selected app with its metrics and live deploy events; Esc goes back", async (t) => {
  const { frame, press, api } = await open(t, { props: { start: "apps" } });
  await frame((f) => f.includes("shop"));
  await press("j"); // blog, shop, worker-queue: the second is shop
  await press("\r");
  let f = await frame((f) => f.includes("app shop") && f.includes("requests/s"));
  assert.match(f, new RegExp(`requests/s\\s+42\\.5\\s+${sparkline([10, 20, 42.5])}`));
  assert.match(f, /p95\s+180 ms/);
  assert.match(f, /none since the dashboard started/);
  // Wait until the stream is open before sending.
  await waitForFrame(() => String(api.requests.filter((r) => r.startsWith("/api/v1/events")).length), (n) => n !== "0");
  api.emit("deploy", { app: "shop", deploymentId: 32, kind: "push", from: "building", to: "failed", at: "2026-12-07T12:01:02Z", message: "npm ci failed" });
  api.emit("deploy", { app: "blog", deploymentId: 9, kind: "push", from: "building", to: "releasing", at: "2026-12-07T12:01:03Z" });
  f = await frame((f) => f.includes("#32"));
  assert.match(f, /12:01:02 push #32 building → failed: npm ci failed/);
  assert.doesNotMatch(f, /#9/);
  await press("\u001B");
  f = await frame((f) => f.includes("NAME"));
  assert.match(f.split("\n")[0]!, /· apps/);
});

test("a deploy event refreshes the apps table", async (t) => {
  const data = deckData();
  const { frame, api } = await open(t, { data, props: { start: "apps" } });
  await frame((f) => f.includes("shop"));
  await waitForFrame(() => String(api.requests.filter((r) => r.startsWith("/api/v1/events")).length), (n) => n !== "0");
  data.apps.push({ name: "newcomer", status: "deploying", framework: null, createdAt: "2026-12-07T12:00:00Z" });
  api.emit("deploy", { app: "newcomer", deploymentId: 1, kind: "push", from: "queued", to: "building" });
  const f = await frame((f) => f.includes("newcomer"), 3000);
  assert.match(f, /4 of 4 apps/);
});

test("`q` quits, and so does `:q`", async (t) => {
  const a = await open(t);
  await a.frame((f) => f.includes("services"));
  await a.press("q");
  assert.equal(a.exited(), 1);
  const b = await open(t);
  await b.frame((f) => f.includes("services"));
  await b.press(":q\r");
  assert.equal(b.exited(), 1);
});

test("a refused token shows one line saying to sign in again", async (t) => {
  const { frame } = await open(t, { token: "wrong" });
  const f = await frame((f) => f.includes("refused"));
  assert.ok(f.split("\n").some((l) => l.trim() === TOKEN_REFUSED), f);
});

test("an answer of an unexpected shape fails its screen in one line, and the other screens still work", async (t) => {
  const data = deckData();
  // An app without a name: not something deck sends, but a proxy or a newer deck might.
  data.apps.push({ status: "running" } as unknown as FakeApiData["apps"][number]);
  const { frame, press } = await open(t, { data, props: { start: "apps" } });
  const f = await frame((f) => f.includes("this screen failed"));
  assert.match(f, /^this screen failed: .+ \(Esc or :overview\)$/m);
  await press(":o\r");
  await frame((f) => f.includes("services"));
});

test("`?` shows the keys and hides them again", async (t) => {
  const { frame, press } = await open(t);
  await frame((f) => f.includes("services"));
  await press("?");
  let f = await frame((f) => f.includes(":apps (:a)"));
  assert.match(f, /Esc back/);
  await press("?");
  f = await frame((f) => f.includes("services"));
  assert.doesNotMatch(f, /:apps \(:a\)/);
});

test("without colour the frames hold no ANSI escapes; with it they do", async (t) => {
  // Ink styles text with chalk, which turns itself off when the output is not a terminal (as under
  // test): turn it on so that only the dashboard's colour flag decides.
  const { default: chalk } = await import("chalk");
  const level = chalk.level;
  chalk.level = 1;
  t.after(() => void (chalk.level = level));
  const plain = await open(t, { props: { start: "apps" } });
  assert.doesNotMatch(await plain.frame((f) => f.includes("shop")), /\u001B\[/);
  const coloured = await open(t, { props: { start: "apps", color: true } });
  assert.match(await coloured.frame((f) => f.includes("shop")), /\u001B\[/);
});

test("at 80 columns no line of the apps table is wider than the terminal", async (t) => {
  const data = deckData();
  data.apps[0]!.name = "a-very-long-application-name-that-would-never-fit-in-the-column";
  data.metrics[data.apps[0]!.name] = data.metrics.shop!;
  const { frame, ui } = await open(t, { data, props: { start: "apps" } });
  // ink-testing-library's terminal is 100 columns; make it 80 and tell the dashboard, as a terminal would.
  Object.defineProperty(ui.stdout, "columns", { get: () => 80 });
  ui.stdout.emit("resize");
  const f = await frame((f) => f.includes("a-very-long") && f.split("\n")[0]!.length <= 80);
  for (const line of f.split("\n")) assert.ok(line.length <= 80, `${line.length}: ${line}`);
  assert.match(f, /> a-very-long-\S*… running/);
});
