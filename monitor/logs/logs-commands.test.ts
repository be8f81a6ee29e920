/**
 * `logs` search, `logs:retention` and drains through the faces users have: the SSH command table and
 * the REST API (a real HTTP server with session tokens), on a real database and real log files. The
 * router's access log holds lines of three apps in two organisations: each app sees its own only.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createApiApp } from "../../api/app.ts";
import { createAuthDeps, SESSION_SCOPES } from "../../api/auth/index.ts";
import { pathsFor } from "../../deploy/paths.ts";
import { runCommand } from "../../gitd/commands.ts";
import { callerFor, type Caller, type DeployDeps } from "../../ops/index.ts";
import { addMember, insertApp, insertOrganization, insertUser, type Db } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { join } from "node:path";
import { routerAccessLog } from "./search.ts";
import { accessLine, appendLines, appLine, waitFor } from "./test-support.ts";

type Who = "admin" | "member" | "viewer" | "rival";

for (const backend of await databaseBackends()) {
  describe(`logs, logs:retention and drains over SSH and the API (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let db: Db;
    let deps: DeployDeps;
    let server: http.Server;
    let base = "";
    const callers = {} as Record<Who, Caller>;
    const sessions = {} as Record<Who, string>;
    const now = Date.now();
    const shopLines = [
      appLine(now - 7_200_000, "deck", "build", "-----> Building shop"),
      appLine(now - 3_000_000, "app", "web.1", "listening"),
      appLine(now - 600_000, "app", "web.2", "ERROR card declined"),
      appLine(now - 300_000, "deck", "web.1", "exited with code 1"),
      appLine(now - 60_000, "app", "worker.1", "queue drained"),
    ];
    const routerLine = (app: string, path: string, minutesAgo: number) => accessLine(now - minutesAgo * 60_000, app, "GET", path, 200, 4);

    const ssh = async (who: Who, ...words: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const status = await runCommand(deps, callers[who], words, { out: (l) => void out.push(l), err: (l) => void err.push(l), signal: new AbortController().signal });
      return { status, out, err };
    };
    const api = async (who: Who, method: string, path: string, body?: unknown) => {
      const headers: Record<string, string> = { authorization: `Bearer ${sessions[who]}` };
      if (body !== undefined) headers["content-type"] = "application/json";
      const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      return { status: res.status, json: (text ? JSON.parse(text) : {}) as Record<string, unknown> & { error?: { code: string; message: string } }, text };
    };

    before(async () => {
      t = await openTestDatabase(backend, { secrets: true });
      db = t.db.pool;
      const auth = await createAuthDeps({ db, dataDir: t.dataDir });
      const acme = await insertOrganization(db, { name: "Acme", slug: "acme" });
      const other = await insertOrganization(db, { name: "Other", slug: "other" });
      for (const [who, orgId, role] of [["admin", acme.id, "admin"], ["member", acme.id, "member"], ["viewer", acme.id, "viewer"], ["rival", other.id, "owner"]] as const) {
        const user = await insertUser(db, { email: `${who}@example.com`, isAdmin: false });
        await addMember(db, orgId, user.id, role);
        callers[who] = await callerFor(db, user, "ssh", "127.0.0.1");
        sessions[who] = await auth.keys.signAccessToken({ userId: user.id, scopes: SESSION_SCOPES });
      }
      for (const [name, orgId] of [["shop", acme.id], ["shopper", acme.id], ["rival", other.id]] as const) await insertApp(db, { name, orgId, createdBy: null });
      deps = { db, paths: pathsFor(t.dataDir), log: () => undefined, config: { sshPort: 2222 } } as unknown as DeployDeps;
      mkdirSync(join(t.dataDir, "logs"), { recursive: true });
      appendLines(deps.paths.appLog("shop"), shopLines);
      appendLines(routerAccessLog(t.dataDir), [routerLine("shop", "/a", 50), routerLine("shopper", "/shopper-only", 40), routerLine("rival", "/rival-only", 30), routerLine("shop", "/b", 20)]);
      server = http.createServer(createApiApp(deps, { extra: { auth } }).callback());
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
    });
    after(async () => {
      if (server) await new Promise((resolve) => server.close(resolve));
      await t?.cleanup();
    });

    it("logs APP [-n N] prints the log exactly as written; filters search it", async () => {
      assert.deepEqual(await ssh("member", "logs", "shop", "-n", "2"), { status: 0, out: shopLines.slice(-2), err: [] });
      assert.deepEqual((await ssh("member", "logs", "shop")).out, shopLines);
      assert.deepEqual((await ssh("member", "logs", "shop", "--grep", "error")).out, [shopLines[2]]);
      assert.deepEqual((await ssh("member", "logs", "shop", "--process", "web.1")).out, [shopLines[1], shopLines[3]]);
      assert.deepEqual((await ssh("member", "logs", "shop", "--since", "1h", "--source", "deck")).out, [shopLines[3]]);
      assert.deepEqual((await ssh("member", "logs", "shop", "--process", "worker", "--json")).out, [JSON.stringify({ time: new Date(now - 60_000).toISOString(), source: "app", process: "worker.1", text: "queue drained" })]);
      assert.deepEqual((await ssh("member", "logs", "shop", "--since", "2x")).err, ['deck: error (bad_argument): --since takes a duration like 30m, 1h or 2d, or a time like 2026-01-05T10:00:00Z; got "2x"']);
      assert.deepEqual((await ssh("member", "logs", "shop", "--source", "nginx")).err, ['deck: error (bad_argument): --source takes app, deck, router, a list like app,router, or all; got "nginx"']);
      const viewer = await ssh("viewer", "logs", "shop", "--grep", "x");
      assert.equal(viewer.status, 1);
      assert.match(viewer.err[0]!, /^deck: error \(forbidden\): permission denied: app:logs on shop/);
    });

    it("--source router shows the app's own requests and never another app's", async () => {
      const at = (m: number) => new Date(now - m * 60_000).toISOString();
      assert.deepEqual((await ssh("member", "logs", "shop", "--source", "router")).out, [`${at(50)} router: GET /a 200 4.0ms 203.0.113.7`, `${at(20)} router: GET /b 200 4.0ms 203.0.113.7`]);
      assert.deepEqual((await ssh("member", "logs", "shopper", "--source", "router")).out, [`${at(40)} router: GET /shopper-only 200 4.0ms 203.0.113.7`]);
      assert.deepEqual((await ssh("member", "logs", "rival", "--source", "router")).err, ['deck: error (app_not_found): app "rival" does not exist (see apps:list)']);
      assert.deepEqual((await ssh("rival", "logs", "shop", "--source", "router")).err, ['deck: error (app_not_found): app "shop" does not exist (see apps:list)']);
      const all = (await ssh("member", "logs", "shop", "--source", "all", "--since", "25m")).out;
      assert.deepEqual(all, [`${at(20)} router: GET /b 200 4.0ms 203.0.113.7`, shopLines[2], shopLines[3], shopLines[4]]);

      // -t follows with the same filters, until the client goes.
      const stop = new AbortController();
      const out: string[] = [];
      const following = runCommand(deps, callers.member, ["logs", "shop", "--source", "router", "-n", "0", "-t"], { out: (l) => void out.push(l), err: () => undefined, signal: stop.signal });
      await waitFor("the follower to start", () => {
        appendLines(routerAccessLog(t.dataDir), [routerLine("shop", "/sync", 0)]);
        return out.length > 0;
      });
      appendLines(routerAccessLog(t.dataDir), [routerLine("shopper", "/not-shop", 0), routerLine("shop", "/after", 0)]);
      await waitFor("the new request", () => out.some((l) => l.includes("/after")));
      stop.abort();
      assert.equal(await following, 0);
      assert.ok(out.every((l) => / router: GET \/(sync|after) 200 /.test(l)), out.join("\n"));
    });

    it("GET /apps/APP/logs takes the same filters as query parameters", async () => {
      assert.deepEqual((await api("member", "GET", "/apps/shop/logs?lines=2")).json, { lines: shopLines.slice(-2) });
      const grep = await api("member", "GET", "/apps/shop/logs?grep=ERROR&format=json");
      assert.deepEqual(grep.json, { entries: [{ time: new Date(now - 600_000).toISOString(), source: "app", process: "web.2", text: "ERROR card declined" }], unsearched: null });
      const router = await api("member", "GET", "/apps/shopper/logs?source=router&format=json");
      const entries = router.json.entries as { request: { path: string; host: string } }[];
      assert.equal(entries[0]?.request.path, "/shopper-only");
      assert.ok(entries.every((e) => e.request.host === "shopper.localhost"), router.text);
      const hidden = await api("member", "GET", "/apps/rival/logs?source=router");
      assert.deepEqual([hidden.status, hidden.json.error?.code], [404, "app_not_found"]);
      const bad = await api("member", "GET", "/apps/shop/logs?process=web.1;rm");
      assert.deepEqual([bad.status, bad.json.error?.message], [400, '--process takes a process like web.1 or a process type like web; got "web.1;rm"']);

      // follow=true: server-sent events with the same filters.
      const controller = new AbortController();
      const res = await fetch(`${base}/apps/shop/logs?source=router&lines=1&follow=true`, { headers: { authorization: `Bearer ${sessions.member}` }, signal: controller.signal });
      assert.equal(res.headers.get("content-type"), "text/event-stream");
      const reader = res.body!.getReader();
      let received = "";
      const readUntil = async (text: string) => {
        while (!received.includes(text)) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`the stream ended before ${text}`);
          received += Buffer.from(value).toString("utf8");
        }
      };
      await readUntil("router: GET /");
      await waitFor("the stream to follow", async () => {
        appendLines(routerAccessLog(t.dataDir), [routerLine("shop", "/streamed", 0)]);
        await Promise.race([readUntil("/streamed"), new Promise((r) => setTimeout(r, 100))]);
        return received.includes("/streamed");
      });
      controller.abort();
      assert.ok(!received.includes("/not-shop") && !received.includes("rival"), received);
    });

    it("retention and drains over the API, for those who may manage them", async () => {
      const shown = await api("admin", "GET", "/apps/shop/logs/retention");
      assert.deepEqual(shown.json, { app: "shop", size: { value: 50 * 1024 * 1024, default: true }, age: { value: 604_800, default: true } });
      const set = await api("admin", "PUT", "/apps/shop/logs/retention", { size: "200m", age: "14d" });
      assert.deepEqual(set.json, { app: "shop", size: { value: 200 * 1024 * 1024, default: false }, age: { value: 14 * 86_400, default: false } });
      assert.deepEqual((await api("admin", "PUT", "/apps/shop/logs/retention", { size: null })).json.size, { value: 50 * 1024 * 1024, default: true });
      assert.deepEqual((await ssh("admin", "logs:retention", "shop")).out, ["=== shop log retention", "size: 50 MiB (default)", "age:  14d"]);
      const denied = await api("member", "PUT", "/apps/shop/logs/retention", { size: "1g" });
      assert.deepEqual([denied.status, denied.json.error?.code], [403, "forbidden"]);

      const added = await api("admin", "POST", "/apps/shop/drains", { url: "syslog+tls://Logs.Example.com:6514", source: "app,router" });
      assert.equal(added.status, 201, added.text);
      assert.deepEqual({ ...added.json, id: 0, createdAt: "" }, {
        id: 0, url: "syslog+tls://logs.example.com:6514", sources: ["app", "router"], delivered: 0, dropped: 0, lastError: null, lastErrorAt: null, lastDeliveredAt: null, createdAt: "",
      });
      const listed = await api("admin", "GET", "/apps/shop/drains");
      assert.deepEqual((listed.json.items as unknown[]).length, 1);
      assert.deepEqual((await ssh("admin", "drains:list", "shop", "--json")).out, [JSON.stringify(listed.json.items)]);
      assert.deepEqual((await api("rival", "GET", "/apps/shop/drains")).status, 404);
      assert.deepEqual((await api("member", "POST", "/apps/shop/drains", { url: "syslog://10.0.0.5:514" })).status, 403);
      assert.equal((await api("admin", "DELETE", `/apps/shop/drains/${added.json.id}`)).status, 200);
      assert.deepEqual((await api("admin", "GET", "/apps/shop/drains")).json, { items: [] });
    });
  });
}
