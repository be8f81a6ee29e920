import { hostname } from "node:os";
import type { DatabasePool } from "slonik";
import {
  alertNoticeKey, alertWindowSeconds, appAlertRules, formatAlertRule, INITIAL_ALERT_STATE, noticeDue, noticeSent, observeAlert, ROLLBACK_WINDOW_MS, stepAlert,
  type AlertState, type AppAlertRule, type NoticeKind,
} from "../../core/alerts.ts";
import type { Notice } from "../../core/index.ts";
import {
  claimAlertRollback, insertAlertEvent, listAlertApps, listAlertRulesOfApps, listAlertStatesOfApps, listRecentAppSamples, saveAlertState, tryAlertRoundLock,
  type AlertApp,
} from "../../store/queries/alerts.ts";
import { audit, type Db } from "../../store/queries/index.ts";
import { enqueueNotice } from "../../store/queries/notify.ts";
import type { UptimeChange } from "../uptime/index.ts";

/**
 * Judges every app's alert rules (core/alerts.ts) against its latest samples and uptime, after each
 * collection of samples, on an uptime change, and every 10 s on its own. Each round runs in one
 * transaction under an advisory lock, so deck servers sharing a database take turns and never queue a
 * notice twice; states live in PostgreSQL, so a restart forgets nothing.
 *
 * With `alerts:rollback APP on`, a rule that fires within 10 minutes of the live release going live
 * rolls the app back to the release before it, once per release.
 */

/** What the API's event stream shows of alerts. */
export interface AlertEvent {
  type: "alert";
  app: string;
  appId: number;
  orgId: number;
  org: string;
  ruleId: string;
  rule: string;
  status: "firing" | "resolved" | "rolled_back" | "rollback_failed";
  /** What the rule saw, in words (for a rollback: what was rolled back). */
  value: string;
  at: string;
  /** A notice was queued (not held by a silence, not a repeat grouped into its incident). */
  notified: boolean;
}

/** Rolls the app back to the release before the live one; answers the new version and the one it runs. */
/** Rolls the app back from release `from` (refusing when the app or its live release is no longer that one). */
export type AlertRollback = (app: { id: number; name: string; from: number }, reason: string) => Promise<{ version: number; target: number }>;

export interface AlertEvaluatorOptions {
  db: DatabasePool;
  log: (line: string) => void;
  /** Where users reach deck's SSH commands: notices tell them what to run. */
  sshHost: string;
  sshPort: number;
  /** The name notices give this machine; default os.hostname(). */
  host?: string;
  /** Time between rounds of its own; default 10 s. */
  intervalMs?: number;
  now?: () => number;
  /** Without it, `alerts:rollback` does nothing here. */
  rollback?: AlertRollback;
  onEvent?: (event: AlertEvent) => void;
}

export const ALERT_INTERVAL_MS = 10_000;

/** What one round did. */
export interface AlertRoundResult {
  /** False when another deck server's round held the lock. */
  ran: boolean;
  notices: Notice[];
  events: AlertEvent[];
}

type EvaluatorState = { kind: "idle" } | { kind: "running"; timer: NodeJS.Timeout } | { kind: "stopped" };

interface PendingRollback {
  app: AlertApp;
  ruleId: string;
  rule: string;
  words: string;
  firedAt: number;
  silenced: boolean;
}

export class AlertEvaluator {
  private state: EvaluatorState = { kind: "idle" };
  /** Rounds and rollbacks of this evaluator run one after another. */
  private chain: Promise<unknown> = Promise.resolve();
  private queued = false;
  private lastRoundAt = 0;
  private failing = false;
  private readonly background = new Set<Promise<void>>();
  private readonly host: string;
  private readonly now: () => number;

  constructor(private readonly o: AlertEvaluatorOptions) {
    this.host = o.host ?? hostname();
    this.now = o.now ?? Date.now;
  }

  start(): void {
    if (this.state.kind !== "idle") return;
    const every = this.o.intervalMs ?? ALERT_INTERVAL_MS;
    const timer = setInterval(() => {
      // Samples arriving on time already ran a round.
      if (Date.now() - this.lastRoundAt >= every / 2) this.kick();
    }, every);
    timer.unref();
    this.state = { kind: "running", timer };
  }

  /** Stops the timer and waits for the round (and any rollback) under way. */
  async stop(): Promise<void> {
    const s = this.state;
    this.state = { kind: "stopped" };
    if (s.kind === "running") clearInterval(s.timer);
    await this.chain;
    await Promise.all(this.background);
  }

  /** The collector saved a round of samples. */
  onSample(_at: number): void {
    this.kick();
  }

  /** An app went down or came back up (monitor/uptime). */
  onUptime(_change: UptimeChange): void {
    this.kick();
  }

  /** Runs a round soon, unless one is already waiting. */
  private kick(): void {
    if (this.state.kind !== "running" || this.queued) return;
    this.queued = true;
    this.chain = this.chain.then(async () => {
      this.queued = false;
      if (this.state.kind !== "running") return;
      try {
        const { rollbacks } = await this.round(this.now());
        // A rollback is a deploy: rounds go on meanwhile; stop() waits for it.
        this.track(rollbacks);
        if (this.failing) this.o.log("alerts: evaluating again");
        this.failing = false;
      } catch (e) {
        if (!this.failing) this.o.log(`alerts: a round failed (retrying every round): ${(e as Error).message}`);
        this.failing = true;
      }
    });
  }

  /** One round at `at` (default now): judges every rule of every app, then waits for the rollbacks it decided. */
  async evaluate(at = this.now()): Promise<AlertRoundResult> {
    const { result, rollbacks } = await this.round(at);
    await rollbacks;
    return result;
  }

  private async round(at: number): Promise<{ result: AlertRoundResult; rollbacks: Promise<void> }> {
    this.lastRoundAt = Date.now();
    const result: AlertRoundResult = { ran: false, notices: [], events: [] };
    const rollbacks: PendingRollback[] = [];
    await this.o.db.transaction(async (tx) => {
      if (!(await tryAlertRoundLock(tx))) return;
      result.ran = true;
      const apps = await listAlertApps(tx, at);
      if (apps.length === 0) return;
      const ids = apps.map((a) => a.id);
      const [stored, states] = await Promise.all([listAlertRulesOfApps(tx, ids), listAlertStatesOfApps(tx, ids)]);
      const rulesOf = new Map(apps.map((a) => [a.id, appAlertRules(stored.get(a.id) ?? [], a.defaultsRemoved)]));
      const longest = Math.max(0, ...[...rulesOf.values()].flat().map((r) => alertWindowSeconds(r.spec)));
      const samples = await listRecentAppSamples(tx, ids, at - longest * 1000, at);
      for (const app of apps) {
        for (const rule of rulesOf.get(app.id)!) {
          const prev = states.get(app.id)?.get(rule.id) ?? INITIAL_ALERT_STATE;
          const decided = await this.judge(tx, { app, rule, prev, samples: samples.get(app.id) ?? [], at, result });
          if (decided) rollbacks.push(decided);
        }
      }
    });
    for (const e of result.events) this.emit(e);
    const done = (async () => {
      for (const r of rollbacks) await this.rollBack(r, at);
    })();
    return { result, rollbacks: done };
  }

  /** One rule of one app: its step, its history, its notice; a rollback it calls for, if any. */
  private async judge(tx: Db, j: { app: AlertApp; rule: AppAlertRule; prev: AlertState; samples: AlertSampleList; at: number; result: AlertRoundResult }): Promise<PendingRollback | null> {
    const { app, rule, at } = j;
    const printed = formatAlertRule(rule.spec);
    const obs = observeAlert(rule.spec, j.samples, at, app.down ? { down: true, cause: app.down.cause, since: app.down.since } : { down: false });
    let { state, transition } = stepAlert(rule.spec, j.prev, obs, at);
    const silenced = app.silencedUntil !== null && app.silencedUntil > at;
    const due = noticeDue(state, at, silenced);
    if (due) {
      const notice = this.notice(app, rule.id, printed, state, due, at);
      await enqueueNotice(tx, notice);
      j.result.notices.push(notice);
      state = noticeSent(state, due, at);
    }
    if (transition === "fired" || transition === "regrouped" || transition === "resolved") {
      const status = transition === "resolved" ? "resolved" : "firing";
      const notified = due !== null && (due === "resolved") === (status === "resolved");
      await insertAlertEvent(tx, { appId: app.id, ruleKey: rule.id, rule: printed, status, value: obs.value, words: obs.words, atMs: at, notified });
      j.result.events.push({ type: "alert", app: app.name, appId: app.id, orgId: app.orgId, org: app.org, ruleId: rule.id, rule: printed, status, value: obs.words, at: new Date(at).toISOString(), notified });
    }
    if (JSON.stringify(state) !== JSON.stringify(j.prev)) await saveAlertState(tx, app.id, rule.id, state);
    if (transition !== "fired" && transition !== "regrouped") return null;
    const live = app.live;
    if (!app.autoRollback || !this.o.rollback || !live || live.rolledBack || live.kind === "rollback") return null;
    if (at < live.wentLiveAt || at - live.wentLiveAt > ROLLBACK_WINDOW_MS) return null;
    if (!(await claimAlertRollback(tx, { releaseId: live.releaseId, appId: app.id, ruleKey: rule.id }))) return null;
    live.rolledBack = true;
    return { app, ruleId: rule.id, rule: printed, words: obs.words, firedAt: state.firedAt ?? at, silenced };
  }

  private notice(app: AlertApp, ruleId: string, printed: string, state: AlertState, kind: NoticeKind, at: number): Notice {
    const since = new Date(state.firedAt ?? at).toISOString();
    const summary = kind === "firing" ? `${app.name} (${app.org}): ${printed} is firing: ${state.words}`
      : kind === "reminder" ? `${app.name} (${app.org}): ${printed} is still firing since ${since.slice(0, 16).replace("T", " ")} UTC: ${state.words}`
      : `${app.name} (${app.org}): ${printed} resolved: ${state.words}`;
    return {
      key: alertNoticeKey(app.name, ruleId, state, kind), status: kind === "resolved" ? "resolved" : "firing", orgId: app.orgId, org: app.org, app: app.name,
      host: this.host, rule: printed, value: state.words, summary, startsAt: since, ...(kind === "resolved" ? { endsAt: new Date(at).toISOString() } : {}),
      command: this.command(printed === "down" ? `uptime ${app.name}` : `metrics ${app.name} --since 1h`),
    };
  }

  /** `ssh deck@HOST metrics APP --since 1h`, with -p when deck's SSH port is not 22. */
  private command(args: string): string {
    return `ssh ${this.o.sshPort === 22 ? "" : `-p ${this.o.sshPort} `}deck@${this.o.sshHost} ${args}`;
  }

  /** Rolls back once (claimed in the round), then notifies, audits and emits what came of it. */
  private async rollBack(r: PendingRollback, at: number): Promise<void> {
    const from = r.app.live!.version;
    const reason = `${r.rule} fired (${r.words}) ${Math.round((at - r.app.live!.wentLiveAt) / 60_000)} min after v${from} went live`;
    let outcome: { ok: true; version: number; target: number } | { ok: false; message: string };
    try {
      outcome = { ok: true, ...(await this.o.rollback!({ id: r.app.id, name: r.app.name, from }, reason)) };
    } catch (e) {
      outcome = { ok: false, message: (e as Error).message };
    }
    const words = outcome.ok ? `rolled back from v${from} to v${outcome.target} (now v${outcome.version})` : `rolling back from v${from} failed: ${outcome.message}`;
    this.o.log(`alerts: ${r.app.name}: ${reason}; ${words}`);
    await audit(this.o.db, {
      userId: null, action: "alerts:rollback", target: r.app.name, result: outcome.ok ? "ok" : "failed",
      data: { rule: r.rule, ruleId: r.ruleId, value: r.words, from, ...(outcome.ok ? { to: outcome.target, version: outcome.version } : { error: outcome.message }) },
    });
    const notice: Notice = {
      key: `alert:${r.app.name}:${r.ruleId}:${r.firedAt}:rollback`, status: "firing", orgId: r.app.orgId, org: r.app.org, app: r.app.name, host: this.host,
      rule: r.rule, value: r.words,
      summary: outcome.ok
        ? `${r.app.name} (${r.app.org}): deck rolled back v${from} to v${outcome.target} because ${reason}`
        : `${r.app.name} (${r.app.org}): deck could not roll back v${from} after ${reason}: ${outcome.message}`,
      startsAt: new Date(r.firedAt).toISOString(), command: this.command(`releases ${r.app.name}`),
    };
    if (!r.silenced) await enqueueNotice(this.o.db, notice);
    this.emit({
      type: "alert", app: r.app.name, appId: r.app.id, orgId: r.app.orgId, org: r.app.org, ruleId: r.ruleId, rule: r.rule,
      status: outcome.ok ? "rolled_back" : "rollback_failed", value: words, at: new Date(this.now()).toISOString(), notified: !r.silenced,
    });
  }

  private track(work: Promise<void>): void {
    const p = work.catch((e: Error) => this.o.log(`alerts: a rollback failed: ${e.message}`)).finally(() => this.background.delete(p));
    this.background.add(p);
  }

  private emit(e: AlertEvent): void {
    try {
      this.o.onEvent?.(e);
    } catch (err) {
      this.o.log(`alerts: an event listener failed: ${(err as Error).message}`);
    }
  }
}

type AlertSampleList = Parameters<typeof observeAlert>[1];
