import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { addUser, apiClient, type Api, type TestUser } from "./helpers/accounts.ts";
import { embeddedBackendOnly } from "./helpers/database.ts";
import { Deck, makeRepo, nodeApp, type PushResult } from "./helpers/deck.ts";

/**
 * What a user controls per app in the router, through real SSH commands and the REST API against a
 * real deck server: maintenance mode, ps:stop / ps:start (kept across a deck restart), the per-client
 * rate limit (429 + Retry-After), the request body limit (413), bad input, and who may change them.
 */

// One backend is enough: nothing here depends on how PostgreSQL is run (the queue and node suites run both).
const backends = embeddedBackendOnly();
const APP = "shop";

interface Answer { status: number; body: string; headers: http.IncomingHttpHeaders }

/**
 * A request through deck's router with the app's host name (no keep-alive, so each is a fresh
 * connection), from 127.0.0.1 unless `from` names another loopback address (a client of its own).
 */
function request(port: number, method: string, path: string, body?: Buffer, from?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { host: `${APP}.localhost` };
    if (body) headers["content-length"] = body.length;
    const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false, timeout: 10_000, localAddress: from }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

function assertOneLineError(r: PushResult, pattern: RegExp, what: string): void {
  assert.equal(r.code, 1, `${what}: exit status\n${r.stdout}${r.stderr}`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `${what}: one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0], pattern, what);
}

function assertMaintenancePage(a: Answer, what: string): void {
  assert.equal(a.status, 503, `${what}: ${a.status} ${a.body}`);
  assert.match(a.body, new RegExp(APP), `${what}: the page names the app`);
  assert.match(a.body, /maintenance/i, `${what}: the page says the app is under maintenance`);
}

for (const backend of backends) {
  describe(`per-app router control: maintenance, ps:stop/start, limits (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let api: Api;
    let work: string;
    let member: TestUser;
    let viewer: TestUser;
    const get = (path = "/") => request(deck.ports.http, "GET", path);
    const ssh = async (command: string, opts: { keyFile?: string } = {}) => deck.ssh(command, opts);
    const sshOk = async (command: string): Promise<string> => {
      const r = await ssh(command);
      assert.equal(r.code, 0, `${command}:\n${r.stderr}`);
      return r.stdout;
    };
    const psReport = async () => JSON.parse(await sshOk(`ps:report ${APP} --json`));
    const routerReport = async () => JSON.parse(await sshOk(`router:report ${APP} --json`));

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-router-settings-"));
      deck = await Deck.start({ backend });
      api = apiClient(deck);
      member = await addUser(api, work, { email: "member@example.com", org: "default", role: "member" });
      viewer = await addUser(api, work, { email: "viewer@example.com", org: "default", role: "viewer" });
      const repo = await makeRepo(join(work, APP), nodeApp("v1"));
      const push = await deck.push(repo, APP);
      assert.equal(push.code, 0, push.stderr);
      assert.match((await get()).body, /^v1 /);
    });

    after(async () => {
      await deck?.stop();
      if (work) await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    it("maintenance:on answers every request with a 503 page naming the app; maintenance:off serves again", async () => {
      const pidBefore = (await psReport()).processes[0].pid;
      assert.match(await sshOk(`maintenance:on ${APP}`), /maintenance/);
      assertMaintenancePage(await get(), "GET / in maintenance");
      assertMaintenancePage(await get("/orders?id=1"), "any path in maintenance");
      assert.deepEqual(JSON.parse(await sshOk(`maintenance:report ${APP} --json`)), { app: APP, maintenance: true, stopped: false });
      const during = await psReport();
      assert.equal(during.maintenance, true);
      assert.equal(during.processes.length, 1, "the app's processes keep running");
      assert.equal(during.processes[0].pid, pidBefore);
      assert.match(await sshOk(`ps:report ${APP}`), /maintenance page \(503\)/);

      await sshOk(`maintenance:off ${APP}`);
      const back = await get();
      assert.equal(back.status, 200, back.body);
      assert.match(back.body, /^v1 /);

      // The same through the REST API.
      const on = await api("POST", `/apps/${APP}/maintenance`, { enabled: true });
      assert.equal(on.status, 200, on.text);
      assert.deepEqual(on.json, { app: APP, maintenance: true, stopped: false });
      assertMaintenancePage(await get(), "maintenance on through the API");
      assert.equal((await api("GET", `/apps/${APP}`)).json.maintenance, true);
      const off = await api("POST", `/apps/${APP}/maintenance`, { enabled: false });
      assert.equal(off.status, 200, off.text);
      assert.equal((await get()).status, 200);
    });

    it("ps:stop stops every process and shows the maintenance page, still after a deck restart; ps:start serves again", async () => {
      const stop = await ssh(`ps:stop ${APP}`);
      assert.equal(stop.code, 0, stop.stderr);
      assert.match(stop.stdout, new RegExp(`stopped ${APP} \\(1 process\\)`));
      assertMaintenancePage(await get(), "GET / while stopped");
      const stopped = await psReport();
      assert.equal(stopped.status, "stopped");
      assert.equal(stopped.stopped, true);
      assert.deepEqual(stopped.processes, [], "no process of the app runs");
      assert.match(await sshOk(`ps:report ${APP}`), new RegExp(`Status: +stopped \\(ps:start ${APP}`));

      // A deck restart does not bring the app back.
      const server = deck.server!;
      const exited = once(server, "exit");
      server.kill("SIGTERM");
      await exited;
      deck.server = null;
      await deck.startServer();
      const afterRestart = await psReport();
      assert.equal(afterRestart.stopped, true);
      assert.deepEqual(afterRestart.processes, [], "still no process after the restart");
      assertMaintenancePage(await get(), "GET / after the restart");

      const start = await ssh(`ps:start ${APP}`);
      assert.equal(start.code, 0, start.stderr);
      assert.match(start.stdout, new RegExp(`started ${APP} \\(v1\\)`));
      const served = await get();
      assert.equal(served.status, 200, served.body);
      assert.match(served.body, /^v1 /);
      const running = await psReport();
      assert.equal(running.stopped, false);
      assert.equal(running.processes.length, 1);
      assert.match(await sshOk(`ps:start ${APP}`), /is not stopped/, "ps:start of a running app changes nothing");

      // The same through the REST API.
      const apiStop = await api("POST", `/apps/${APP}/ps/stop`);
      assert.equal(apiStop.status, 200, apiStop.text);
      assert.equal(apiStop.json.stopped, 1);
      assertMaintenancePage(await get(), "stopped through the API");
      const shown = (await api("GET", `/apps/${APP}`)).json;
      assert.equal(shown.status, "stopped");
      assert.deepEqual(shown.processes, []);
      const apiStart = await api("POST", `/apps/${APP}/ps/start`);
      assert.equal(apiStart.status, 200, apiStart.text);
      assert.equal(apiStart.json.outcome, "started");
      assert.equal((await get()).status, 200);
    });

    it("router:set rate-limit 2 and rate-burst 2: a burst from one client gets 429 with Retry-After after the first 2", async () => {
      assert.match(await sshOk(`router:set ${APP} rate-limit 2`), /rate-limit 2\/s per client IP/);
      await sshOk(`router:set ${APP} rate-burst 2`);
      const answers: Answer[] = [];
      for (let i = 0; i < 4; i++) answers.push(await get(`/burst-${i}`));
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 429, 429], answers.map((a) => `${a.status} ${a.body}`).join("\n"));
      for (const limited of answers.slice(2)) {
        assert.match(String(limited.headers["retry-after"]), /^[1-9]\d*$/, "a 429 says when to retry");
      }
      const report = await routerReport();
      assert.deepEqual(report.settings.rateLimitRps, { key: "rate-limit", value: 2, default: false });
      assert.deepEqual(report.settings.rateLimitBurst, { key: "rate-burst", value: 2, default: false });

      // Back to the server default (this server runs with DECK_RATE_LIMIT=0: no limit).
      assert.match(await sshOk(`router:set ${APP} rate-limit`), /back to the server default, 0 \(no limit, default\)/);
      await sshOk(`router:set ${APP} rate-burst`);
      assert.equal((await get("/after-reset")).status, 200);
      const text = await sshOk(`router:report ${APP}`);
      assert.match(text, /rate-limit: +0 \(no limit, default\)/);
      assert.match(text, /rate-burst: +2000 \(default\)/);
    });

    it("router:set rate-limit alone: the burst in effect is twice the rate, and router:report says so", async () => {
      // A client of its own (127.0.0.2), so the earlier test's bucket does not count.
      const fromNewClient = (path: string) => request(deck.ports.http, "GET", path, undefined, "127.0.0.2");
      assert.match(await sshOk(`router:set ${APP} rate-limit 1`), /^shop: rate-limit 1\/s per client IP; rate-burst 2 \(default: twice the rate-limit\)$/m);
      const report = await routerReport();
      assert.deepEqual(report.settings.rateLimitBurst, { key: "rate-burst", value: 2, default: true, derivedFrom: "rate-limit" });
      assert.match(await sshOk(`router:report ${APP}`), /^rate-burst: +2 \(default: twice the rate-limit\)$/m);
      const answers: Answer[] = [];
      for (let i = 0; i < 3; i++) answers.push(await fromNewClient(`/derived-${i}`));
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 429], "the router applies the burst the report shows");

      await sshOk(`router:set ${APP} rate-burst 5`);
      assert.match(await sshOk(`router:set ${APP} rate-burst`), /^shop: rate-burst is back to twice the app's rate-limit, 2$/m);
      const viaApi = await api("GET", `/apps/${APP}/router`);
      assert.deepEqual(viaApi.json.settings.rateLimitBurst, { key: "rate-burst", value: 2, default: true, derivedFrom: "rate-limit" });

      assert.match(await sshOk(`router:set ${APP} rate-limit`), /^shop: rate-limit is back to the server default, 0 \(no limit, default\)$/m);
      assert.deepEqual((await routerReport()).settings.rateLimitBurst, { key: "rate-burst", value: 2000, default: true });
    });

    it("router:set max-body-size 1k: a 2 KB POST gets 413, a 500 B POST passes", async () => {
      assert.match(await sshOk(`router:set ${APP} max-body-size 1k`), /max-body-size 1k/);
      const big = await request(deck.ports.http, "POST", "/upload", Buffer.alloc(2048, "x"));
      assert.equal(big.status, 413, big.body);
      const small = await request(deck.ports.http, "POST", "/upload", Buffer.alloc(500, "x"));
      assert.equal(small.status, 200, small.body);
      assert.match(small.body, /^v1 /);

      // Through the API: a size string or bytes; null is the server default (100m).
      const set = await api("PATCH", `/apps/${APP}/router`, { maxBodyBytes: "4k" });
      assert.equal(set.status, 200, set.text);
      assert.deepEqual(set.json.settings.maxBodyBytes, { key: "max-body-size", value: 4096, default: false });
      assert.equal((await request(deck.ports.http, "POST", "/upload", Buffer.alloc(2048, "x"))).status, 200);
      const reset = await api("PATCH", `/apps/${APP}/router`, { maxBodyBytes: null });
      assert.equal(reset.status, 200, reset.text);
      assert.deepEqual(reset.json.settings.maxBodyBytes, { key: "max-body-size", value: 100 * 1024 ** 2, default: true });
      assert.equal((await api("GET", `/apps/${APP}/router`)).json.settings.maxBodyBytes.default, true);
    });

    it("router:set redirect-https and hsts are off by default and shown as set once set", async () => {
      const before = await routerReport();
      assert.deepEqual(before.settings.redirectHttps, { key: "redirect-https", value: false, default: true });
      assert.deepEqual(before.settings.hsts, { key: "hsts", value: false, default: true });
      const r = await api("PATCH", `/apps/${APP}/router`, { hsts: true });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.settings.hsts, { key: "hsts", value: true, default: false });
      assert.match(await sshOk(`router:report ${APP}`), /^hsts: +true$/m);
      await sshOk(`router:set ${APP} hsts`);
      assert.deepEqual((await routerReport()).settings.hsts, { key: "hsts", value: false, default: true });
    });

    it("refuses bad keys and values with one line and changes nothing", async () => {
      const before = await routerReport();
      assertOneLineError(await ssh(`router:set ${APP} speed 3`), /^deck: error \(bad_argument\): "speed" is not a router setting; use one of rate-limit, rate-burst, max-body-size, redirect-https, hsts$/, "unknown key");
      assertOneLineError(await ssh(`router:set ${APP} rate-limit fast`), /^deck: error \(bad_argument\): "fast" is not a valid rate-limit: give a number of requests per second/, "rate-limit fast");
      assertOneLineError(await ssh(`router:set ${APP} rate-limit -1`), /not a valid rate-limit/, "rate-limit -1");
      assertOneLineError(await ssh(`router:set ${APP} rate-limit 0.0000001`), /^deck: error \(bad_argument\): "0.0000001" is not a valid rate-limit: give a number of requests per second per client IP from 0\.000001 to 1000000/, "rate-limit below the slowest");
      assertOneLineError(await ssh(`router:set ${APP} rate-burst 0`), /^deck: error \(bad_argument\): "0" is not a valid rate-burst: give a whole number/, "rate-burst 0");
      assertOneLineError(await ssh(`router:set ${APP} rate-burst 1.5`), /not a valid rate-burst/, "rate-burst 1.5");
      assertOneLineError(await ssh(`router:set ${APP} max-body-size 10q`), /^deck: error \(bad_argument\): "10q" is not a valid max-body-size: give a size like 10m, 512k or 1g \(0 = no limit\)$/, "max-body-size 10q");
      assertOneLineError(await ssh(`router:set ${APP} hsts yes`), /^deck: error \(bad_argument\): "yes" is not a valid hsts: give true or false$/, "hsts yes");
      assertOneLineError(await ssh(`router:set ${APP}`), /^deck: error \(bad_argument\): missing KEY; usage: router:set APP KEY \[VALUE\]/, "no key");
      assertOneLineError(await ssh(`router:set ${APP} hsts true extra`), /^deck: error \(bad_argument\): too many arguments/, "extra argument");
      assertOneLineError(await ssh(`maintenance:on`), /^deck: error \(bad_argument\): missing app name; usage: maintenance:on APP$/, "maintenance:on without app");
      assertOneLineError(await ssh(`ps:stop nosuchapp`), /^deck: error \(app_not_found\): app "nosuchapp" does not exist/, "ps:stop of a missing app");

      for (const [body, pattern] of [
        [{ rateLimitRps: -1 }, /body\.rateLimitRps/],
        // The same bounds as router:set: these once broke limits (1e-25) or the request (1e-50: a 500).
        ...[1e-25, 1e-50, 0.0000009, 2_000_000].map((v) => [{ rateLimitRps: v }, /^body\.rateLimitRps: a number of requests per second per client IP from 0\.000001 to 1000000, like 10 or 0\.5 \(0 = no limit\)$/] as const),
        [{ rateLimitBurst: 0 }, /body\.rateLimitBurst/],
        [{ maxBodyBytes: "lots" }, /body\.maxBodyBytes: a number of bytes or a size like 10m/],
        [{ speed: 3 }, /unknown field "speed"/],
        [{ hsts: "yes" }, /body\.hsts/],
        [{}, /give at least one of rateLimitRps/],
      ] as const) {
        const r = await api("PATCH", `/apps/${APP}/router`, body);
        assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
        assert.match(r.json.error.message, pattern, JSON.stringify(body));
        assert.doesNotMatch(r.json.error.message, /\n/);
      }
      const bad = await api("POST", `/apps/${APP}/maintenance`, { enabled: "yes" });
      assert.equal(bad.status, 400, bad.text);

      assert.deepEqual(await routerReport(), before, "nothing changed");
      assert.equal((await get()).status, 200);
    });

    it("denies members and viewers, naming the missing permission; both may read the reports", async () => {
      for (const user of [member, viewer]) {
        for (const [command, action] of [
          [`maintenance:on ${APP}`, "router:set"],
          [`router:set ${APP} rate-limit 1`, "router:set"],
          [`ps:stop ${APP}`, "ps:scale"],
          [`ps:start ${APP}`, "ps:scale"],
        ] as const) {
          const r = await ssh(command, { keyFile: user.keyFile });
          assertOneLineError(r, new RegExp(`^deck: error \\(forbidden\\): permission denied: ${action} on ${APP} `), `${user.email}: ${command}`);
          assert.equal(r.stdout, "");
        }
        for (const [method, path, body, action] of [
          ["PATCH", `/apps/${APP}/router`, { rateLimitRps: 1 }, "router:set"],
          ["POST", `/apps/${APP}/maintenance`, { enabled: true }, "router:set"],
          ["POST", `/apps/${APP}/ps/stop`, undefined, "ps:scale"],
          ["POST", `/apps/${APP}/ps/start`, undefined, "ps:scale"],
        ] as const) {
          const r = await api(method, path, body, { token: user.accessToken });
          assert.equal(r.status, 403, `${user.email}: ${method} ${path}: ${r.text}`);
          assert.match(r.json.error.message, new RegExp(`^permission denied: ${action} on ${APP} `));
        }
        const report = await ssh(`router:report ${APP}`, { keyFile: user.keyFile });
        assert.equal(report.code, 0, report.stderr);
        assert.match(report.stdout, /rate-limit:/);
        assert.equal((await ssh(`maintenance:report ${APP}`, { keyFile: user.keyFile })).code, 0);
        assert.equal((await api("GET", `/apps/${APP}/router`, undefined, { token: user.accessToken })).status, 200);
      }
      // Nothing they tried took effect.
      const served = await get();
      assert.equal(served.status, 200, served.body);
      const report = await routerReport();
      assert.equal(report.maintenance, false);
      assert.equal(report.settings.rateLimitRps.default, true);
      assert.equal((await psReport()).processes.length, 1);
    });
  });
}
