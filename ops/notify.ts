import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { decide, DeckError, type Notice } from "../core/index.ts";
import type { DeployDeps } from "../deploy/index.ts";
import { audit, type OrgRow } from "../store/queries/index.ts";
import {
  deleteNotifyChannel, enqueueNotice, insertNotifyChannel, listNotifyChannels, noticeDeliveries, NOTIFY_KINDS,
  type LastDelivery, type NotifyChannelSummary, type NotifyKind,
} from "../store/queries/notify.ts";
import type { Caller } from "./access.ts";
import { visibleOrg } from "./accounts.ts";
import { recordAction } from "./audit.ts";

/**
 * Notification channels of an organisation: where its alert notices go (a webhook in Alertmanager's
 * format, a Slack-compatible incoming webhook, an e-mail address). Channels speak for the org to
 * people outside deck, so every operation needs notify:manage (admins and owners). The sending itself
 * is the notification outbox's (monitor/notify).
 */

export interface NotifyChannelView {
  id: number;
  kind: NotifyKind;
  /** The target with its secret parts masked. */
  target: string;
  createdBy: string | null;
  createdAt: string;
  /** Notices waiting to be sent. */
  pending: number;
  /** Notices deck gave up on after a day of failures. */
  dead: number;
  lastDelivery: LastDelivery | null;
}

export interface NotifyTestResult {
  id: number;
  kind: NotifyKind;
  target: string;
  delivered: boolean;
  /** `delivered`, or `not yet delivered: REASON (retrying in Ns)`. */
  message: string;
}

/** How long notify:test waits for every channel to answer. */
export const NOTIFY_TEST_WAIT_MS = 15_000;

type Check<T> = { ok: true; value: T } | { ok: false; message: string };

const MAX_URL = 2048;
const CONTROL_OR_SPACE = /[\s\x00-\x1f\x7f]/;
// One mailbox, no display name, no list: nothing that could add a recipient or a header.
const EMAIL = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * The URL as users see it: scheme and host; the path and query, where the secret is, masked (a long one
 * keeps its last 4 characters, enough to tell two hooks on one host apart); never a user or password.
 */
export function maskNotifyUrl(url: URL): string {
  const rest = `${url.pathname}${url.search}`.replace(/^\//, "");
  if (rest === "") return `${url.protocol}//${url.host}/`;
  return `${url.protocol}//${url.host}/***${rest.length > 24 ? rest.slice(-4) : ""}`;
}

/** Accepts a channel target of the kind and gives it with the form users are shown. */
export function checkNotifyTarget(kind: string, raw: string): Check<{ kind: NotifyKind; target: string; display: string }> {
  if (!(NOTIFY_KINDS as readonly string[]).includes(kind)) {
    return { ok: false, message: `"${kind.slice(0, 20)}" is not a channel kind: webhook, slack or email` };
  }
  const k = kind as NotifyKind;
  if (k === "email") {
    if (raw.length > 254 || !EMAIL.test(raw)) return { ok: false, message: `"${raw.slice(0, 80)}" is not an e-mail address (like ops@example.com)` };
    return { ok: true, value: { kind: k, target: raw, display: raw } };
  }
  const example = k === "slack" ? "https://hooks.slack.com/services/T000/B000/XXXX" : "https://alerts.example.com/deck";
  const usage = `a ${k} URL starts with https:// or http:// (like ${example})`;
  if (raw.length > MAX_URL) return { ok: false, message: `the ${k} URL is longer than ${MAX_URL} characters` };
  if (CONTROL_OR_SPACE.test(raw)) return { ok: false, message: `the ${k} URL must not contain spaces or control characters` };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: usage };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return { ok: false, message: `${usage}; ${url.protocol.slice(0, 20)}// URLs are not sent to` };
  if (!url.hostname) return { ok: false, message: `the ${k} URL names no host; ${usage}` };
  return { ok: true, value: { kind: k, target: url.toString(), display: maskNotifyUrl(url) } };
}

/** The org, when the caller may manage its channels; other orgs are reported as missing. */
async function orgForNotify(deps: DeployDeps, caller: Caller, slug: string): Promise<OrgRow> {
  const org = await visibleOrg(deps, caller, slug);
  if (!decide(caller.actor, "notify:manage", org.id).allow) {
    await audit(deps.db, { userId: caller.user.id, action: "notify:manage", target: `org:${org.slug}`, sourceIp: caller.sourceIp, result: "denied", data: { via: caller.via, orgId: org.id } });
    throw new DeckError("forbidden", `permission denied: notify:manage in ${org.slug} needs the admin or owner role`);
  }
  return org;
}

export async function listNotifyChannelsOf(deps: DeployDeps, caller: Caller, orgSlug: string): Promise<NotifyChannelView[]> {
  const org = await orgForNotify(deps, caller, orgSlug);
  return (await listNotifyChannels(deps.db, org.id)).map((c) => ({
    id: c.id, kind: c.kind, target: c.targetDisplay, createdBy: c.createdByEmail, createdAt: c.createdAt, pending: c.pending, dead: c.dead, lastDelivery: c.last,
  }));
}

/** Channels an org may have: every notice goes to each. */
export const MAX_CHANNELS_PER_ORG = 10;
/** A test is refused while the org's channels have this many notices waiting (a test adds one per channel). */
const MAX_PENDING_FOR_TEST = 100;
/** Orgs whose test runs now: one at a time each. */
const testing = new Set<number>();

/** Adds a channel (`webhook URL`, `slack URL`, `email ADDRESS`) to the org. */
export async function addNotifyChannel(deps: DeployDeps, caller: Caller, orgSlug: string, kind: string, target: string): Promise<NotifyChannelView> {
  const org = await orgForNotify(deps, caller, orgSlug);
  const checked = checkNotifyTarget(kind, target);
  if (!checked.ok) throw new DeckError("bad_argument", checked.message);
  const { value } = checked;
  if ((await listNotifyChannels(deps.db, org.id)).length >= MAX_CHANNELS_PER_ORG) {
    throw new DeckError("conflict", `${org.slug} has ${MAX_CHANNELS_PER_ORG} notification channels, the most an org may have; remove one first (notify:remove ${org.slug} ID)`);
  }
  const row = await insertNotifyChannel(deps.db, { orgId: org.id, kind: value.kind, target: value.target, targetDisplay: value.display, createdBy: caller.user.id });
  await recordAction(deps, caller, "notify:add", `org:${org.slug}`, { orgId: org.id, channel: row.id, kind: row.kind, target: row.targetDisplay });
  return { id: row.id, kind: row.kind, target: row.targetDisplay, createdBy: caller.user.email, createdAt: row.createdAt, pending: 0, dead: 0, lastDelivery: null };
}

/** Removes a channel by id, with the notices still queued for it. */
export async function removeNotifyChannel(deps: DeployDeps, caller: Caller, orgSlug: string, rawId: string): Promise<void> {
  const org = await orgForNotify(deps, caller, orgSlug);
  if (!/^\d{1,15}$/.test(rawId)) throw new DeckError("bad_argument", `"${rawId.slice(0, 20)}" is not a channel id; notify:list ${org.slug} shows them`);
  const row = await deleteNotifyChannel(deps.db, org.id, Number(rawId));
  if (!row) throw new DeckError("not_found", `${org.slug} has no notification channel ${rawId}; notify:list ${org.slug} shows them`);
  await recordAction(deps, caller, "notify:remove", `org:${org.slug}`, { orgId: org.id, channel: row.id, kind: row.kind, target: row.targetDisplay });
}

/** The notice notify:test sends: it names the org and who asked. */
export function testNotice(org: OrgRow, caller: Caller, sshCommand: string): Notice {
  return {
    key: `test:${org.id}:${randomUUID()}`,
    status: "firing",
    orgId: org.id,
    org: org.slug,
    app: "(test)",
    host: hostname(),
    rule: "test",
    value: `test notice requested by ${caller.user.email}`,
    summary: `Test notice from deck for ${org.slug}: this channel receives its alerts`,
    startsAt: new Date().toISOString(),
    command: `${sshCommand} notify:list ${org.slug}`,
  };
}

/**
 * Queues a test notice to every channel of the org, then waits (up to `waitMs`) until each has it, and
 * tells for each whether it was delivered, or why not yet and when the next try is.
 */
export async function testNotifyChannels(deps: DeployDeps, caller: Caller, orgSlug: string, options: { waitMs?: number } = {}): Promise<NotifyTestResult[]> {
  const org = await orgForNotify(deps, caller, orgSlug);
  const channels = await listNotifyChannels(deps.db, org.id);
  if (channels.length === 0) throw new DeckError("not_found", `${org.slug} has no notification channels yet; add one with notify:add ${org.slug} webhook|slack URL or notify:add ${org.slug} email ADDRESS`);
  if (testing.has(org.id)) throw new DeckError("conflict", `a test of ${org.slug}'s channels is under way; wait for its answer`);
  const waiting = channels.reduce((n, c) => n + c.pending, 0);
  if (waiting >= MAX_PENDING_FOR_TEST) throw new DeckError("conflict", `${org.slug}'s channels have ${waiting} notices waiting; see notify:list ${org.slug} and fix the channels that do not answer first`);
  testing.add(org.id);
  try {
    return await sendTest(deps, caller, org, channels, options);
  } finally {
    testing.delete(org.id);
  }
}

async function sendTest(deps: DeployDeps, caller: Caller, org: OrgRow, channels: NotifyChannelSummary[], options: { waitMs?: number }): Promise<NotifyTestResult[]> {
  const port = deps.config?.sshPort;
  const notice = testNotice(org, caller, `ssh ${port && port !== 22 ? `-p ${port} ` : ""}deck@${hostname()}`);
  await enqueueNotice(deps.db, notice);
  const deadline = Date.now() + (options.waitMs ?? NOTIFY_TEST_WAIT_MS);
  let deliveries = await noticeDeliveries(deps.db, notice.key);
  while (Date.now() < deadline && deliveries.some((d) => d.status === "pending" || d.status === "sending")) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    deliveries = await noticeDeliveries(deps.db, notice.key);
  }
  const results = channels.map((c): NotifyTestResult => {
    const d = deliveries.find((x) => x.channelId === c.id);
    const base = { id: c.id, kind: c.kind, target: c.targetDisplay };
    if (!d) return { ...base, delivered: false, message: "not sent: the channel was removed meanwhile" };
    if (d.status === "sent") return { ...base, delivered: true, message: "delivered" };
    if (d.status === "dead") return { ...base, delivered: false, message: `not delivered: ${d.lastError ?? "unknown error"} (given up)` };
    if (d.status === "sending") return { ...base, delivered: false, message: "not yet delivered: still waiting for the answer" };
    if (d.attempts === 0) return { ...base, delivered: false, message: "not yet delivered: not tried yet" };
    return { ...base, delivered: false, message: `not yet delivered: ${d.lastError ?? "unknown error"} (retrying in ${Math.max(1, Math.ceil(d.retryInMs / 1000))}s)` };
  });
  await recordAction(deps, caller, "notify:test", `org:${org.slug}`, { orgId: org.id, channels: results.length, delivered: results.filter((r) => r.delivered).length });
  return results;
}
