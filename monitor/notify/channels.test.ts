/**
 * Notification channels through the faces users have: the SSH commands (the command table the SSH
 * server runs) and the REST API (a real HTTP server with real session tokens), on a real database,
 * with the sender running and real receivers on loopback. Only an org's admins and owners manage its
 * channels; a member is refused and another org's admin is told the org does not exist.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createApiApp } from "../../api/app.ts";
import { createAuthDeps, SESSION_SCOPES } from "../../api/auth/index.ts";
import { helpText, runCommand } from "../../gitd/commands.ts";
import { callerFor, type Caller, type DeployDeps } from "../../ops/index.ts";
import { testNotifyChannels } from "../../ops/notify.ts";
import { addMember, insertOrganization, insertUser, q, type Db } from "../../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { waitFor, WebhookReceiver } from "./test-helpers.ts";
import { NotifyWorker } from "./worker.ts";

const SLACK_SECRET = "T0001/B0002/s3cr3tS1ackT0kenAbcdEFGH";
const HOOK_SECRET = "hook/4f0c2b7e9a1d4c3b8e6f5a7d9c0b1e2f";
const DENIED = "deck: error (forbidden): permission denied: notify:manage in acme needs the admin or owner role";
const HIDDEN = 'deck: error (not_found): organisation "acme" does not exist';

interface Reply { status: number; json: Record<string, unknown> & { error?: { code: string; message: string } }; text: string }

for (const backend of await databaseBackends()) {
  describe(`notification channels over SSH and the API (${backend.name} PostgreSQL)`, () => {
    let tdb: TestDatabase;
    let db: Db;
    let deps: DeployDeps;
    let server: http.Server;
    let base = "";
    let worker: NotifyWorker;
    let hook: WebhookReceiver;
    let slack: WebhookReceiver;
    const callers = {} as Record<"admin" | "member" | "other", Caller>;
    const sessions = {} as Record<"admin" | "member" | "other", string>;
    const logs: string[] = [];

    const ssh = async (who: keyof typeof callers, ...words: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const status = await runCommand(deps, callers[who], words, { out: (l) => void out.push(l), err: (l) => void err.push(l), signal: new AbortController().signal });
      return { status, out, err };
    };
    const api = async (who: keyof typeof sessions, method: string, path: string, body?: unknown): Promise<Reply> => {
      const headers: Record<string, string> = { authorization: `Bearer ${sessions[who]}` };
      if (body !== undefined) headers["content-type"] = "application/json";
      const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      return { status: res.status, json: text ? JSON.parse(text) : {}, text };
    };
    const channelIds = async () => (await db.anyFirst(q`SELECT c.id FROM notify_channels c JOIN organizations o ON o.id = c.org_id WHERE o.slug = 'acme' ORDER BY c.id`)).map(Number);

    before(async () => {
      tdb = await openTestDatabase(backend, { secrets: true });
      db = tdb.db.pool;
      const auth = await createAuthDeps({ db, dataDir: tdb.dataDir });
      const acme = await insertOrganization(db, { name: "Acme", slug: "acme" });
      const other = await insertOrganization(db, { name: "Other", slug: "other" });
      for (const [who, orgId, role] of [["admin", acme.id, "admin"], ["member", acme.id, "member"], ["other", other.id, "admin"]] as const) {
        const user = await insertUser(db, { email: `${who}@example.com`, isAdmin: false });
        await addMember(db, orgId, user.id, role);
        callers[who] = await callerFor(db, user, "ssh", "127.0.0.1");
        sessions[who] = await auth.keys.signAccessToken({ userId: user.id, scopes: SESSION_SCOPES });
      }
      deps = { db, log: (l: string) => logs.push(l), config: { sshPort: 2222 } } as unknown as DeployDeps;
      server = http.createServer(createApiApp(deps, { extra: { auth } }).callback());
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
      hook = await WebhookReceiver.create();
      slack = await WebhookReceiver.create();
      worker = new NotifyWorker({
        db, databaseUrl: tdb.db.url, outboundAllow: ["127.0.0.1/32"], log: (l) => logs.push(l),
        timing: { firstRetryMs: 5_000, pollMs: 50, sendTimeoutMs: 2_000 },
      });
      worker.start();
    });

    after(async () => {
      await worker?.stop();
      await hook?.shut();
      await slack?.shut();
      if (server) await new Promise((resolve) => server.close(resolve));
      await tdb?.cleanup();
    });

    it("an org admin adds channels over SSH and the API and sees them with their secrets masked", async () => {
      const added = await ssh("admin", "notify:add", "acme", "webhook", hook.url(`/${HOOK_SECRET}`));
      const [id] = await channelIds();
      assert.deepEqual(added, { status: 0, err: [], out: [`added webhook channel ${id} to acme: http://127.0.0.1:${hook.port}/***1e2f`, "send it a test notice with: notify:test acme"] });

      const viaApi = await api("admin", "POST", "/orgs/acme/notify", { kind: "slack", target: slack.url(`/services/${SLACK_SECRET}`) });
      assert.equal(viaApi.status, 201, viaApi.text);
      assert.deepEqual(viaApi.json, {
        id: (await channelIds())[1], kind: "slack", target: `http://127.0.0.1:${slack.port}/***EFGH`, createdBy: "admin@example.com",
        createdAt: viaApi.json.createdAt, pending: 0, dead: 0, lastDelivery: null,
      });

      const listed = await ssh("admin", "notify:list", "acme");
      assert.equal(listed.status, 0);
      assert.match(listed.out[0]!, /^ID +KIND +TARGET +PENDING +DEAD +LAST DELIVERY$/);
      assert.match(listed.out[1]!, new RegExp(`^${id} +webhook +http://127\\.0\\.0\\.1:${hook.port}/\\*\\*\\*1e2f +0 +0 +never sent$`));
      assert.match(listed.out[2]!, /^\d+ +slack +http:\/\/127\.0\.0\.1:\d+\/\*\*\*EFGH +0 +0 +never sent$/);
      const json = await ssh("admin", "notify:list", "acme", "--json");
      const fromApi = await api("admin", "GET", "/orgs/acme/notify");
      assert.deepEqual(JSON.parse(json.out[0]!), (fromApi.json as { items: unknown[] }).items);
      for (const text of [...listed.out, ...json.out, fromApi.text, viaApi.text]) {
        assert.ok(!text.includes(SLACK_SECRET) && !text.includes(HOOK_SECRET), text);
      }
      // At rest too: sealed, like config vars.
      for (const target of await db.anyFirst(q`SELECT target FROM notify_channels`)) {
        assert.match(String(target), /^v1:/);
        assert.ok(!String(target).includes("s3cr3t") && !String(target).includes("4f0c2b7e"));
      }
      const audited = await db.any(q`SELECT action, result, data FROM audit_log WHERE action = 'notify:add' ORDER BY id`);
      assert.deepEqual(audited.map((a) => [a.result, (a.data as { target: string }).target]), [
        ["ok", `http://127.0.0.1:${hook.port}/***1e2f`], ["ok", `http://127.0.0.1:${slack.port}/***EFGH`],
      ]);
    });

    it("refuses a URL that is not http(s), an address that is not one, and missing arguments, saying what to give", async () => {
      assert.deepEqual(await ssh("admin", "notify:add", "acme", "webhook", "ftp://example.com/hook"), {
        status: 1, out: [],
        err: ["deck: error (bad_argument): a webhook URL starts with https:// or http:// (like https://alerts.example.com/deck); ftp:// URLs are not sent to"],
      });
      assert.deepEqual((await ssh("admin", "notify:add", "acme", "email", "ops@example.com,boss@example.com")).err, [
        'deck: error (bad_argument): "ops@example.com,boss@example.com" is not an e-mail address (like ops@example.com)',
      ]);
      assert.deepEqual((await ssh("admin", "notify:add", "acme", "webhook")).err, [
        "deck: error (bad_argument): missing TARGET (a URL, or an e-mail address); usage: notify:add ORG webhook|slack URL | notify:add ORG email ADDRESS",
      ]);
      const r = await api("admin", "POST", "/orgs/acme/notify", { kind: "slack", target: "gopher://example.com/x" });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error?.code, "bad_argument");
      assert.match(r.json.error?.message ?? "", /^a slack URL starts with https:\/\/ or http:\/\//);
      assert.equal((await channelIds()).length, 2, "nothing was added");
    });

    it("a member of the org is refused every notify operation, and each refusal is audited", async () => {
      const [id] = await channelIds();
      for (const words of [["notify:add", "acme", "webhook", hook.url()], ["notify:list", "acme"], ["notify:remove", "acme", String(id)], ["notify:test", "acme"]]) {
        assert.deepEqual(await ssh("member", ...words), { status: 1, out: [], err: [DENIED] }, words[0]);
      }
      for (const [method, path, body] of [["GET", "/orgs/acme/notify"], ["POST", "/orgs/acme/notify", { kind: "webhook", target: hook.url() }], ["DELETE", `/orgs/acme/notify/${id}`], ["POST", "/orgs/acme/notify/test"]] as const) {
        const r = await api("member", method, path, body);
        assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
        assert.deepEqual([r.json.error?.code, r.json.error?.message], ["forbidden", DENIED.replace("deck: error (forbidden): ", "")]);
      }
      assert.equal(Number(await db.oneFirst(q`SELECT count(*) FROM audit_log WHERE action = 'notify:manage' AND result = 'denied' AND target = 'org:acme'`)), 8);
      assert.equal((await channelIds()).length, 2, "nothing changed");
      assert.equal(hook.received.length + slack.received.length, 0, "no test notice went out");
    });

    it("another org's admin is told the org does not exist, over SSH and the API", async () => {
      const [id] = await channelIds();
      for (const words of [["notify:add", "acme", "webhook", hook.url()], ["notify:list", "acme"], ["notify:remove", "acme", String(id)], ["notify:test", "acme"]]) {
        assert.deepEqual(await ssh("other", ...words), { status: 1, out: [], err: [HIDDEN] }, words[0]);
      }
      for (const [method, path] of [["GET", "/orgs/acme/notify"], ["DELETE", `/orgs/acme/notify/${id}`], ["POST", "/orgs/acme/notify/test"]] as const) {
        const r = await api("other", method, path);
        assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
        assert.equal(r.json.error?.code, "not_found");
      }
      assert.deepEqual(await ssh("other", "notify:list", "other"), { status: 0, err: [], out: ["other has no notification channels yet; add one with notify:add other webhook|slack URL or notify:add other email ADDRESS"] });
      assert.equal(hook.received.length + slack.received.length, 0);
    });

    it("notify:test sends every channel a test notice and says which got it, or why not and when it tries again", async () => {
      const [hookId, slackId] = await channelIds();
      const sent = await ssh("admin", "notify:test", "acme");
      assert.equal(sent.status, 0, sent.err.join("\n"));
      assert.equal(sent.out.length, 2);
      assert.match(sent.out[0]!, new RegExp(`^${hookId} +webhook +http://127\\.0\\.0\\.1:${hook.port}/\\*\\*\\*1e2f +delivered$`));
      assert.match(sent.out[1]!, new RegExp(`^${slackId} +slack +http://127\\.0\\.0\\.1:${slack.port}/\\*\\*\\*EFGH +delivered$`));
      const [got] = hook.accepted();
      assert.equal(hook.accepted().length, 1);
      assert.match(got!.key ?? "", /^test:\d+:/);
      const alert = (got!.body as { alerts: Array<{ labels: Record<string, string>; annotations: Record<string, string> }> }).alerts[0]!;
      assert.deepEqual([alert.labels.alertname, alert.labels.org, alert.labels.severity], ["test", "acme", "info"]);
      assert.equal(alert.annotations.value, "test notice requested by admin@example.com");
      assert.match(alert.annotations.command, /^ssh -p 2222 deck@\S+ notify:list acme$/);
      assert.match((slack.accepted()[0]!.body as { text: string }).text, /^FIRING: test on \(test\) \(org acme, host \S+\): test notice requested by admin@example\.com\n/);

      const viaApi = await api("admin", "POST", "/orgs/acme/notify/test");
      assert.equal(viaApi.status, 200, viaApi.text);
      assert.deepEqual((viaApi.json as { results: Array<{ id: number; delivered: boolean; message: string }> }).results.map((r) => [r.id, r.delivered, r.message]), [
        [hookId, true, "delivered"], [slackId, true, "delivered"],
      ]);

      // A channel whose receiver is not listening.
      const down = await WebhookReceiver.create({ listening: false });
      await ssh("admin", "notify:add", "acme", "webhook", down.url());
      const downId = (await channelIds())[2]!;
      const results = await testNotifyChannels(deps, callers.admin, "acme", { waitMs: 3_000 });
      assert.deepEqual(results.map((r) => [r.id, r.delivered]), [[hookId, true], [slackId, true], [downId, false]]);
      assert.match(results[2]!.message, new RegExp(`^not yet delivered: connection refused by 127\\.0\\.0\\.1:${down.port} \\(retrying in [1-5]s\\)$`));

      const listed = await ssh("admin", "notify:list", "acme");
      assert.match(listed.out[1]!, / +0 +0 +delivered \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
      assert.match(listed.out[3]!, new RegExp(` +1 +0 +failed \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d: connection refused by 127\\.0\\.0\\.1:${down.port}$`));
      const audited = await db.any(q`SELECT data FROM audit_log WHERE action = 'notify:test' AND result = 'ok' ORDER BY id`);
      assert.deepEqual(audited.map((a) => [(a.data as { channels: number }).channels, (a.data as { delivered: number }).delivered]), [[2, 2], [2, 2], [3, 2]]);
    });

    it("removing a channel stops its notices and takes its queue with it", async () => {
      const [hookId, slackId, downId] = await channelIds();
      assert.ok(Number(await db.oneFirst(q`SELECT count(*) FROM notify_outbox WHERE channel_id = ${downId!}`)) > 0);
      assert.deepEqual(await ssh("admin", "notify:remove", "acme", String(downId)), { status: 0, err: [], out: [`removed notification channel ${downId} from acme`] });
      assert.equal(Number(await db.oneFirst(q`SELECT count(*) FROM notify_outbox WHERE channel_id = ${downId!}`)), 0);
      assert.deepEqual((await ssh("admin", "notify:remove", "acme", String(downId))).err, [`deck: error (not_found): acme has no notification channel ${downId}; notify:list acme shows them`]);
      assert.deepEqual((await ssh("admin", "notify:remove", "acme", "first")).err, ['deck: error (bad_argument): "first" is not a channel id; notify:list acme shows them']);
      const r = await api("admin", "DELETE", `/orgs/acme/notify/${slackId}`);
      assert.deepEqual([r.status, r.json], [200, { ok: true }]);
      assert.deepEqual(await channelIds(), [hookId]);
      const removed = await db.any(q`SELECT data FROM audit_log WHERE action = 'notify:remove' ORDER BY id`);
      assert.deepEqual(removed.map((a) => (a.data as { channel: number }).channel), [downId, slackId]);
      await waitFor("no send still under way", async () => Number(await db.oneFirst(q`SELECT count(*) FROM notify_outbox WHERE status = 'sending'`)) === 0);
    });

    it("help lists the notify commands", () => {
      const help = helpText().join("\n");
      for (const usage of ["notify:add ORG webhook|slack|email TARGET", "notify:list ORG [--json]", "notify:remove ORG ID", "notify:test ORG"]) assert.ok(help.includes(usage), usage);
    });
  });
}
