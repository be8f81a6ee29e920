/**
 * The sender of the notification outbox. Every deck server runs one; they share the outbox in
 * PostgreSQL: a row is taken with FOR UPDATE SKIP LOCKED and leased while it is sent, then marked
 * sent, or failed and due again after a backoff (10 s doubling to 10 min), or dead once it has failed
 * for a day. A server that dies mid-send leaves a lease that runs out, and another sender (or this one
 * after its restart) takes the row again; every send carries the notice key so a receiver can drop the
 * rare duplicate that makes.
 *
 * Woken by `deck_notify` notifications when a notice is queued, and by a poll for retries that come due.
 */
import { hostname } from "node:os";
import { coalesced } from "../../core/index.ts";
import { listenForNotifications, type NotificationListener } from "../../store/notification-listener.ts";
import type { Db } from "../../store/queries/index.ts";
import {
  claimNotices, markNoticeFailed, markNoticeSent, NOTIFY_CHANNEL, pruneNotices, releaseNotice, type ClaimedNotice,
} from "../../store/queries/notify.ts";
import { alertmanagerPayload, emailMessage, slackPayload } from "./formats.ts";
import { createOutboundPolicy, type OutboundPolicy } from "./outbound.ts";
import { createMailer, postJson, type Mailer, type SendOutcome } from "./senders.ts";

export interface NotifyTiming {
  /** Wait before the first retry; each later one waits twice as long as the one before. */
  firstRetryMs: number;
  /** Longest wait between two tries. */
  maxRetryMs: number;
  /** A notice still failing this long after it was queued is given up on (dead). */
  giveUpAfterMs: number;
  /** How long a sender holds a row it is sending; past it, the row is taken for abandoned. */
  leaseMs: number;
  /** How often the outbox is read for rows that came due without a notification. */
  pollMs: number;
  /** How long one send may take. */
  sendTimeoutMs: number;
}

export const NOTIFY_TIMING: NotifyTiming = {
  firstRetryMs: 10_000,
  maxRetryMs: 600_000,
  giveUpAfterMs: 24 * 3_600_000,
  leaseMs: 60_000,
  pollMs: 1_000,
  sendTimeoutMs: 10_000,
};

/** The wait after the `failures`-th failed try in a row. */
export function retryDelayMs(failures: number, timing: Pick<NotifyTiming, "firstRetryMs" | "maxRetryMs"> = NOTIFY_TIMING): number {
  return Math.min(timing.firstRetryMs * 2 ** Math.max(0, failures - 1), timing.maxRetryMs);
}

export interface NotifyWorkerOptions {
  db: Db;
  /** The database URL, for the notification connection. */
  databaseUrl: string;
  /** DECK_SMTP_URL; unset = e-mail channels fail with a message saying so. */
  smtpUrl?: string;
  /** Sender of notice e-mails; default deck@HOSTNAME. */
  mailFrom?: string;
  /** deck's public URL, Alertmanager's `externalURL` (DECK_PUBLIC_URL). */
  externalUrl?: string;
  /** Address ranges webhooks may reach although they are not public (DECK_OUTBOUND_ALLOW). */
  outboundAllow?: readonly string[];
  /** Sends at once. */
  concurrency?: number;
  /** Shorter waits for tests. */
  timing?: Partial<NotifyTiming>;
  log(line: string): void;
}

type WorkerState = "idle" | "running" | "stopping" | "stopped";

export class NotifyWorker {
  private prune: NodeJS.Timeout | undefined;
  private state: WorkerState = "idle";
  private readonly timing: NotifyTiming;
  private readonly policy: OutboundPolicy;
  private readonly mailer: Mailer;
  private readonly from: string;
  private readonly concurrency: number;
  private readonly sending = new Map<number, { controller: AbortController; done: Promise<void> }>();
  private poll: NodeJS.Timeout | undefined;
  private listener: NotificationListener | undefined;

  constructor(private readonly options: NotifyWorkerOptions) {
    this.timing = { ...NOTIFY_TIMING, ...options.timing };
    this.policy = createOutboundPolicy(options.outboundAllow);
    this.from = options.mailFrom ?? `deck@${hostname()}`;
    this.mailer = createMailer({ smtpUrl: options.smtpUrl, from: this.from, timeoutMs: this.timing.sendTimeoutMs });
    this.concurrency = options.concurrency ?? 8;
  }

  start(): void {
    if (this.state !== "idle") throw new Error(`the notification sender cannot start: it is ${this.state}`);
    this.state = "running";
    this.poll = setInterval(() => void this.take(), this.timing.pollMs);
    // The outbox keeps what was sent a week and what was given up a month (notify:list counts them).
    const prune = () => pruneNotices(this.options.db).catch((e: Error) => this.options.log(`notifications: pruning the outbox failed: ${e.message}`));
    this.prune = setInterval(prune, 3600_000);
    this.prune.unref();
    void prune();
    this.listener = listenForNotifications({
      url: this.options.databaseUrl, channels: [NOTIFY_CHANNEL], log: this.options.log,
      onNotification: () => void this.take(),
      onConnected: () => void this.take(),
    });
    void this.take();
  }

  /** Stops taking rows; sends under way are cut off and their rows handed back, due at once. */
  async stop(): Promise<void> {
    if (this.state !== "running") {
      this.state = "stopped";
      return;
    }
    this.state = "stopping";
    clearInterval(this.poll);
    clearInterval(this.prune);
    await this.listener?.close();
    // The run under way (if any) ends at once now that it is stopped.
    await this.take();
    for (const s of this.sending.values()) s.controller.abort();
    await Promise.all([...this.sending.values()].map((s) => s.done));
    this.mailer.close();
    this.state = "stopped";
  }

  /** Takes due rows while there is room; one call at a time. */
  private readonly take = coalesced(async () => {
    while (this.state === "running" && this.sending.size < this.concurrency) {
      const claims = await claimNotices(this.options.db, {
        limit: this.concurrency - this.sending.size, leaseSeconds: this.timing.leaseMs / 1000,
        // A quarter of the senders at most for one organisation's notices: the others' go out meanwhile.
        perOrg: Math.max(1, Math.ceil(this.concurrency / 4)),
      }).catch((e: Error) => {
        this.options.log(`notify: reading the outbox failed (tried again in ${this.timing.pollMs} ms): ${e.message}`);
        return [];
      });
      for (const claim of claims) this.deliver(claim);
      if (claims.length === 0) break;
    }
  });

  private deliver(claim: ClaimedNotice): void {
    const controller = new AbortController();
    const done = this.sendAndMark(claim, controller.signal)
      .catch((e: Error) => this.options.log(`notify: notice ${claim.notice.key} to channel ${claim.channelId}: recording the outcome failed (the row is sent again once its lease runs out): ${e.message}`))
      .finally(() => {
        this.sending.delete(claim.id);
        if (this.state === "running") void this.take();
      });
    this.sending.set(claim.id, { controller, done });
  }

  private async sendAndMark(claim: ClaimedNotice, signal: AbortSignal): Promise<void> {
    const { db, log } = this.options;
    // Claimed while stopping: handed back untouched.
    if (this.state !== "running") return releaseNotice(db, claim);
    const outcome = await this.send(claim, signal);
    if (!outcome.ok && signal.aborted) return releaseNotice(db, claim);
    const what = `notice ${claim.notice.key} to ${claim.kind} channel ${claim.channelId}`;
    if (outcome.ok) {
      if (!(await markNoticeSent(db, claim))) log(`notify: ${what} was delivered after its lease ran out; another sender may deliver it again (same ${claim.notice.key} key)`);
      return;
    }
    const retryInMs = retryDelayMs(claim.attempts, this.timing);
    const status = await markNoticeFailed(db, claim, { error: outcome.reason, retryInMs, giveUpAfterMs: this.timing.giveUpAfterMs });
    if (status === "dead") log(`notify: ${what} failed ${claim.attempts} times since ${claim.createdAt}, giving up: ${outcome.reason}`);
    else if (status === "pending") log(`notify: ${what} failed (attempt ${claim.attempts}, next in ${Math.round(retryInMs / 1000)} s): ${outcome.reason}`);
  }

  private async send(claim: ClaimedNotice, signal: AbortSignal): Promise<SendOutcome> {
    if (claim.target === null) return { ok: false, reason: `the channel's target cannot be read: ${claim.targetError ?? "unknown error"}` };
    const ctx = { key: claim.notice.key, timeoutMs: this.timing.sendTimeoutMs, signal };
    switch (claim.kind) {
      case "webhook":
        return postJson(claim.target, alertmanagerPayload(claim.notice, { receiver: "deck", externalUrl: this.options.externalUrl ?? "" }), { ...ctx, policy: this.policy });
      case "slack":
        return postJson(claim.target, slackPayload(claim.notice), { ...ctx, policy: this.policy });
      case "email":
        return this.mailer.send(claim.target, emailMessage(claim.notice, this.from), ctx);
      default:
        return { ok: false, reason: `deck cannot send to a channel of kind ${String(claim.kind)}` };
    }
  }
}
