/**
 * The outbox end to end with real parts: PostgreSQL (embedded and external), webhook receivers on
 * loopback that refuse, hang or are not listening for a while, and a real SMTP server (aiosmtpd).
 * Every notice must arrive once per channel, in the channel's format, whatever was down meanwhile.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Notice } from "../../core/index.ts";
import { insertOrganization, insertUser, q, sql, type Db } from "../../store/queries/index.ts";
import { claimNotices, enqueueNotice, insertNotifyChannel, listNotifyChannels } from "../../store/queries/notify.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { alertmanagerPayload, messageIdFor, slackPayload } from "./formats.ts";
import { findAiosmtpdPython, SmtpServer, waitFor, WebhookReceiver, type Mail } from "./test-helpers.ts";
import { NotifyWorker, type NotifyTiming } from "./worker.ts";

const python = findAiosmtpdPython();
const missing = "python3-aiosmtpd is not installed (apt-get install -y python3-aiosmtpd), so e-mail delivery to a real SMTP server is not tested";
if (!python && process.env.CI === "true") throw new Error(`${missing} (required when CI=true)`);
if (!python) process.stderr.write(`${missing}\n`);

const FROM = "deck@deck.example.com";
const EXTERNAL_URL = "https://deck.example.com";
const TIMING: Partial<NotifyTiming> = { firstRetryMs: 300, maxRetryMs: 1_200, pollMs: 50, leaseMs: 3_000, sendTimeoutMs: 2_000 };

let serial = 0;
function notice(orgId: number, overrides: Partial<Notice> = {}): Notice {
  serial++;
  return {
    key: `crash_loop:web:${serial}:${Date.now()}`, status: "firing", orgId, org: "acme", app: "web", host: "deck-test",
    rule: "crash_loop", value: `${serial + 2} restarts in 5 min`, summary: `web is crash-looping (#${serial})`,
    startsAt: new Date().toISOString(), command: "ssh deck@deck-test metrics web --since 1h", ...overrides,
  };
}

interface Row { channelId: number; key: string; status: string; attempts: number; lastError: string | null }

async function rows(db: Db, keys: string[]): Promise<Row[]> {
  const found = await db.any(q`SELECT channel_id, notice_key, status, attempts, last_error FROM notify_outbox WHERE notice_key = ANY(${sql.array(keys, "text")}) ORDER BY id`);
  return found.map((r) => ({ channelId: Number(r.channel_id), key: String(r.notice_key), status: String(r.status), attempts: Number(r.attempts), lastError: r.last_error == null ? null : String(r.last_error) }));
}

const mailsFor = (mails: Mail[], key: string) => mails.filter((m) => m.headers["x-deck-notice-key"] === key);

for (const backend of await databaseBackends()) {
  describe(`the notification outbox (${backend.name} PostgreSQL)`, { skip: python ? false : missing }, () => {
    let tdb: TestDatabase;
    let db: Db;
    let orgId = 0;
    let webhook: WebhookReceiver;
    let slack: WebhookReceiver;
    let smtp: SmtpServer;
    const channel = { webhook: 0, slack: 0, email: 0 };
    const workers: NotifyWorker[] = [];
    const logs: string[] = [];

    const startWorker = (options: { timing?: Partial<NotifyTiming>; outboundAllow?: string[] } = {}): NotifyWorker => {
      const w = new NotifyWorker({
        db, databaseUrl: tdb.db.url, smtpUrl: smtp.url, mailFrom: FROM, externalUrl: EXTERNAL_URL,
        outboundAllow: options.outboundAllow ?? ["127.0.0.1/32"], timing: { ...TIMING, ...options.timing }, log: (l) => logs.push(l),
      });
      workers.push(w);
      w.start();
      return w;
    };
    const allSent = (keys: string[], count: number) => async () => {
      const r = await rows(db, keys);
      return r.length === count && r.every((x) => x.status === "sent") ? r : undefined;
    };

    before(async () => {
      tdb = await openTestDatabase(backend, { secrets: true });
      db = tdb.db.pool;
      const user = await insertUser(db, { email: "owner@example.com", isAdmin: false });
      orgId = (await insertOrganization(db, { name: "Acme", slug: "acme" })).id;
      webhook = await WebhookReceiver.create({ mode: "refuse" });
      slack = await WebhookReceiver.create({ listening: false });
      smtp = await SmtpServer.create(python!);
      const add = async (kind: "webhook" | "slack" | "email", target: string) =>
        (await insertNotifyChannel(db, { orgId, kind, target, targetDisplay: kind, createdBy: user.id })).id;
      channel.webhook = await add("webhook", webhook.url());
      channel.slack = await add("slack", slack.url("/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"));
      channel.email = await add("email", "ops@example.com");
    });

    after(async () => {
      for (const w of workers) await w.stop();
      await webhook?.shut();
      await slack?.shut();
      await smtp?.remove();
      await tdb?.cleanup();
    });

    it("retries a channel that is down, waiting longer each time, and delivers each notice once it is back", async () => {
      startWorker();
      const firing = notice(orgId);
      const resolved = notice(orgId, { status: "resolved", endsAt: new Date().toISOString() });
      assert.deepEqual((await enqueueNotice(db, firing)).sort(), [channel.webhook, channel.slack, channel.email].sort());
      await enqueueNotice(db, resolved);

      const failing = await waitFor("three failed tries on every channel", async () => {
        const r = await rows(db, [firing.key, resolved.key]);
        return r.length === 6 && r.every((x) => x.status === "pending" && x.attempts >= 3) ? r : undefined;
      });
      const errorOf = (id: number) => failing.find((r) => r.channelId === id && r.key === firing.key)?.lastError;
      assert.equal(errorOf(channel.webhook), `127.0.0.1:${webhook.port} answered HTTP 503 Service Unavailable: down for maintenance`);
      assert.equal(errorOf(channel.slack), `connection refused by 127.0.0.1:${slack.port}`);
      assert.equal(errorOf(channel.email), `connection refused by the SMTP server 127.0.0.1:${smtp.port}`);
      // 300 ms, then 600 ms, then 1,200 ms between tries (never sooner).
      const tries = webhook.received.filter((r) => r.key === firing.key).map((r) => r.at);
      for (let i = 1; i < Math.min(tries.length, 4); i++) {
        const wait = Math.min(300 * 2 ** (i - 1), 1_200);
        assert.ok(tries[i]! - tries[i - 1]! >= wait * 0.9, `try ${i + 1} came ${tries[i]! - tries[i - 1]!} ms after the one before, expected at least ${wait} ms`);
      }

      webhook.mode = "ok";
      await slack.open();
      await smtp.start();
      await waitFor("every notice delivered", allSent([firing.key, resolved.key], 6));
      const mails = await smtp.messages();
      for (const n of [firing, resolved]) {
        assert.equal(webhook.accepted(n.key).length, 1, `webhook got ${n.status} once`);
        assert.equal(slack.accepted(n.key).length, 1, `slack got ${n.status} once`);
        assert.equal(mailsFor(mails, n.key).length, 1, `e-mail got ${n.status} once`);
      }
    });

    it("sends each notice once per channel in the channel's format, even when it is queued twice", async () => {
      const n = notice(orgId, { url: "https://deck.example.com/apps/web" });
      await enqueueNotice(db, n);
      assert.deepEqual(await enqueueNotice(db, n), [], "queued again: nothing new");
      await waitFor("the notice delivered", allSent([n.key], 3));

      const [hook] = webhook.accepted(n.key);
      assert.equal(webhook.accepted(n.key).length, 1);
      assert.deepEqual(hook!.body, alertmanagerPayload(n, { receiver: "deck", externalUrl: EXTERNAL_URL }));
      assert.equal(hook!.headers["content-type"], "application/json");
      assert.equal(hook!.headers["x-deck-notice-key"], n.key);
      const alert = (hook!.body as { alerts: Array<{ labels: Record<string, string>; annotations: Record<string, string> }> }).alerts[0]!;
      assert.deepEqual(alert.labels, { alertname: "crash_loop", app: "web", org: "acme", host: "deck-test", severity: "critical" });
      assert.equal(alert.annotations.command, "ssh deck@deck-test metrics web --since 1h");

      assert.equal(slack.accepted(n.key).length, 1);
      assert.deepEqual(slack.accepted(n.key)[0]!.body, slackPayload(n));
      assert.equal(slack.accepted(n.key)[0]!.path, "/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX");

      const mails = mailsFor(await smtp.messages(), n.key);
      assert.equal(mails.length, 1);
      const mail = mails[0]!;
      assert.equal(mail.headers["x-rcptto"], "ops@example.com");
      assert.equal(mail.headers.from, FROM);
      assert.equal(mail.headers.subject, `[deck] FIRING: crash_loop on web (org acme, host deck-test): ${n.value}`);
      assert.equal(mail.headers["message-id"], messageIdFor(n.key, FROM));
      assert.match(mail.body, /^web is crash-looping/);
      assert.match(mail.body, /\nLook further: ssh deck@deck-test metrics web --since 1h or https:\/\/deck\.example\.com\/apps\/web\n/);
    });

    it("loses nothing when the sender restarts: a send cut off is handed back, and a dead sender's rows are taken once its lease runs out", async () => {
      webhook.mode = "hang";
      const cut = notice(orgId);
      await enqueueNotice(db, cut);
      await waitFor("the webhook send under way", () => webhook.received.some((r) => r.key === cut.key));
      for (const w of workers) await w.stop();
      const handedBack = (await rows(db, [cut.key])).find((r) => r.channelId === channel.webhook)!;
      assert.deepEqual([handedBack.status, handedBack.attempts], ["pending", 0]);

      // A deck server that took these rows and died before sending them.
      const orphaned = notice(orgId, { status: "resolved", endsAt: new Date().toISOString() });
      await enqueueNotice(db, orphaned);
      const taken = await claimNotices(db, { limit: 10, leaseSeconds: 1 });
      assert.deepEqual(taken.filter((t) => t.notice.key === orphaned.key).length, 3);
      assert.ok((await rows(db, [orphaned.key])).every((r) => r.status === "sending"));

      webhook.mode = "ok";
      startWorker();
      const done = await waitFor("both notices delivered", allSent([cut.key, orphaned.key], 6));
      assert.ok(done.filter((r) => r.key === orphaned.key).every((r) => r.attempts === 2), "the dead sender's try counts");
      const mails = await smtp.messages();
      for (const n of [cut, orphaned]) {
        assert.equal(webhook.accepted(n.key).length, 1);
        assert.equal(slack.accepted(n.key).length, 1);
        assert.equal(mailsFor(mails, n.key).length, 1);
      }
    });

    it("refuses loopback targets unless allowed, and keeps a notice it gave up on as dead, with its last error", async () => {
      for (const w of workers) await w.stop();
      const user = await insertUser(db, { email: "admin@example.com", isAdmin: false });
      const local = (await insertNotifyChannel(db, { orgId, kind: "webhook", target: `http://localhost:${webhook.port}/hook`, targetDisplay: `http://localhost:${webhook.port}/***`, createdBy: user.id })).id;
      startWorker({ outboundAllow: [], timing: { firstRetryMs: 100, maxRetryMs: 200, giveUpAfterMs: 1_000 } });
      const n = notice(orgId);
      await enqueueNotice(db, n);
      const end = await waitFor("the webhooks given up, the e-mail sent", async () => {
        const r = await rows(db, [n.key]);
        const hooks = r.filter((x) => x.channelId !== channel.email);
        return hooks.length === 3 && hooks.every((x) => x.status === "dead") && r.find((x) => x.channelId === channel.email)?.status === "sent" ? r : undefined;
      });
      const why = (id: number) => end.find((r) => r.channelId === id)!.lastError;
      const rule = "is a loopback, private or link-local address, which deck does not send to unless a platform admin allows it (DECK_OUTBOUND_ALLOW)";
      assert.equal(why(channel.webhook), `refused to connect: 127.0.0.1 ${rule}`);
      assert.match(why(local) ?? "", new RegExp(`^refused to connect: localhost \\((127\\.0\\.0\\.1|::1)(, (127\\.0\\.0\\.1|::1))?\\) ${rule.replace(/[().]/g, "\\$&")}$`));
      assert.equal(webhook.received.filter((r) => r.key === n.key).length, 0, "nothing reached the loopback receiver");

      const listed = await listNotifyChannels(db, orgId);
      const hook = listed.find((c) => c.id === channel.webhook)!;
      assert.equal(hook.dead, 1);
      assert.equal(hook.pending, 0);
      assert.deepEqual([hook.last?.ok, hook.last?.error], [false, why(channel.webhook)]);
      const mail = listed.find((c) => c.id === channel.email)!;
      assert.deepEqual([mail.dead, mail.pending, mail.last?.ok, mail.last?.error], [0, 0, true, null]);
      assert.ok(logs.some((l) => l.includes(`notice ${n.key} to webhook channel ${channel.webhook} failed`) && l.includes("giving up")), logs.join("\n"));
    });
  });
}
