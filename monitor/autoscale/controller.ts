import { hostname } from "node:os";
import type { DatabasePool } from "slonik";
import { decideScale, Periodic, processCount, SCALE_IN_WINDOW_MS, type AutoscaleStep, type MetricSample, type Notice, type ScaleDecision } from "../../core/index.ts";
import {
  abandonAutoscaleDecisions, audit, enqueueNotice, finishAutoscaleDecision, insertAutoscaleDecision, listAutoscaleTargets, listRecentAppSamples,
  listRecentProcessSamples, pruneAutoscaleDecisions, saveExceededRounds, tryAutoscaleRoundLock, type AutoscaleTarget,
} from "../../store/queries/index.ts";

/**
 * Autoscaling (ps:autoscale): every DECK_AUTOSCALE_INTERVAL seconds, a round judges each autoscaled
 * process type against the app's recent samples with core/autoscale.ts `decideScale`, and carries out
 * what it decides through the injected scale (ops `scale`: a blue-green redeploy, as ps:scale). Each
 * change is written down, audited (`ps:autoscale`), told to the org's notification channels and shown
 * on the event stream (`scale`).
 *
 * A round runs in one transaction under an advisory lock, so deck servers sharing a database take turns.
 * A decision is written down as pending before its scale runs, outside the round: until it is done, no
 * round (of any server) decides for that app again. One left pending by a server that stopped is given
 * up after PENDING_STALE_MS.
 */

/** What the API's event stream shows of autoscaling. */
export interface AutoscaleEvent {
  type: "scale";
  app: string;
  appId: number;
  orgId: number;
  org: string;
  processType: string;
  direction: "out" | "in";
  from: number;
  to: number;
  reason: string;
  status: "scaled" | "failed";
  error: string | null;
  at: string;
}

/** Scales a process type of an app to `to` processes, as ps:scale does (ops/autoscale.ts scaleForAutoscale). */
/** Carries out a decision: `type` from `from` processes to `to` (refused if the app or its count changed meanwhile). */
export type AutoscaleScale = (app: { id: number; name: string }, type: string, to: number, from: number) => Promise<void>;

export interface AutoscaleControllerOptions {
  db: DatabasePool;
  log: (line: string) => void;
  scale: AutoscaleScale;
  /** Where users reach deck's SSH commands: notices tell them what to run. */
  sshHost: string;
  sshPort: number;
  /** The name notices give this machine; default os.hostname(). */
  host?: string;
  /** Time between rounds; default 15 s (DECK_AUTOSCALE_INTERVAL). */
  intervalMs?: number;
  now?: () => number;
  onEvent?: (event: AutoscaleEvent) => void;
}

export const AUTOSCALE_INTERVAL_MS = 15_000;
/** Decisions are kept 30 days. */
export const DECISION_RETENTION_MS = 30 * 86_400_000;
/**
 * A scale waits in the app's deploy line (behind a build of up to DECK_BUILD_TIMEOUT) and then redeploys;
 * one pending longer than this was left by a deck server that stopped.
 */
export const PENDING_STALE_MS = 30 * 60_000;

/** One process type judged in a round. */
export interface AutoscaleJudgement {
  app: string;
  type: string;
  decision: ScaleDecision;
}

export interface AutoscaleRoundResult {
  /** False when another deck server's round held the lock. */
  ran: boolean;
  judged: AutoscaleJudgement[];
}

/** A decision written down in a round, to carry out once the round's transaction is over. */
interface PendingScale {
  id: number;
  target: AutoscaleTarget;
  direction: "out" | "in";
  from: number;
  to: number;
  reason: string;
  at: number;
}

export class AutoscaleController {
  private readonly periodic: Periodic;
  private readonly background = new Set<Promise<void>>();
  private readonly host: string;
  private readonly now: () => number;

  constructor(private readonly o: AutoscaleControllerOptions) {
    this.host = o.host ?? hostname();
    this.now = o.now ?? Date.now;
    this.periodic = new Periodic({
      intervalMs: o.intervalMs ?? AUTOSCALE_INTERVAL_MS,
      run: async () => void (await this.round(this.now())),
      onTrouble: (m) => o.log(`autoscale: a round failed (retrying every round): ${m}`),
      onRecovered: () => o.log("autoscale: deciding again"),
    });
  }

  start(): void {
    this.periodic.start();
  }

  /** Stops the rounds and waits for the scales under way. */
  async stop(): Promise<void> {
    await this.periodic.stop();
    await Promise.all(this.background);
  }

  /** One round at `at` (default now), then waits for the scales it decided. */
  async evaluate(at = this.now()): Promise<AutoscaleRoundResult> {
    const { result, scales } = await this.decide(at);
    await scales;
    return result;
  }

  /** One round: the scales it decides run on in the background (stop() waits for them). */
  private async round(at: number): Promise<AutoscaleRoundResult> {
    const { result, scales } = await this.decide(at);
    this.track(scales);
    return result;
  }

  private async decide(at: number): Promise<{ result: AutoscaleRoundResult; scales: Promise<void> }> {
    const result: AutoscaleRoundResult = { ran: false, judged: [] };
    const pending: PendingScale[] = [];
    await this.o.db.transaction(async (tx) => {
      if (!(await tryAutoscaleRoundLock(tx))) return;
      result.ran = true;
      await pruneAutoscaleDecisions(tx, at - DECISION_RETENTION_MS);
      const abandoned = await abandonAutoscaleDecisions(tx, at - PENDING_STALE_MS, at);
      if (abandoned > 0) this.o.log(`autoscale: gave up ${abandoned} scale(s) a deck server left unfinished`);
      const targets = await listAutoscaleTargets(tx);
      if (targets.length === 0) return;
      const ids = [...new Set(targets.map((t) => t.app.id))];
      const traffic = await listRecentAppSamples(tx, ids, at - SCALE_IN_WINDOW_MS, at);
      const processes = await listRecentProcessSamples(tx, ids, at - SCALE_IN_WINDOW_MS, at);
      // One change per app per round: a scale redeploys all of the app's processes.
      const changing = new Set<number>();
      for (const t of targets) {
        const decision = this.judge(t, { traffic: traffic.get(t.app.id) ?? [], processes: processes.get(t.app.id) ?? [], changing, at });
        result.judged.push({ app: t.app.name, type: t.settings.type, decision: decision.decision });
        if (decision.exceededRounds !== t.settings.exceededRounds) await saveExceededRounds(tx, t.app.id, t.settings.type, decision.exceededRounds);
        const d = decision.decision;
        if (d.kind === "hold") continue;
        changing.add(t.app.id);
        const id = await insertAutoscaleDecision(tx, { appId: t.app.id, type: t.settings.type, direction: d.kind, from: d.from, to: d.to, reason: d.reason, atMs: at });
        pending.push({ id, target: t, direction: d.kind, from: d.from, to: d.to, reason: d.reason, at });
      }
    });
    const scales = Promise.all(pending.map((p) => this.carryOut(p))).then(() => undefined);
    return { result, scales };
  }

  /** The decision for one process type, or why there is none. */
  private judge(t: AutoscaleTarget, r: { traffic: MetricSample[]; processes: MetricSample[]; changing: Set<number>; at: number }): AutoscaleStep {
    const type = t.settings.type;
    const keep = (reason: string) => ({ decision: { kind: "hold" as const, reason }, exceededRounds: t.settings.exceededRounds });
    if (t.app.stopped) return keep("the app is stopped");
    if (t.liveTypes === null) return keep("the app has no live release");
    if (!t.liveTypes.includes(type)) return keep(`the live release runs no ${type} processes`);
    if (t.scaling || r.changing.has(t.app.id)) return keep("a scale of the app is under way");
    const changes = [t.liveAt, t.lastDecisionAt].filter((v): v is number => v !== null);
    return decideScale(t.settings, {
      current: processCount(t.app.formation, type),
      traffic: r.traffic,
      processes: r.processes.filter((s) => s.process.startsWith(`${type}.`)),
      exceededRounds: t.settings.exceededRounds,
      lastChangeAt: changes.length ? Math.max(...changes) : null,
      lastScaleOutAt: t.lastScaleOutAt,
      failuresInARow: t.failuresInARow,
      lastFailureAt: t.lastFailureAt,
    }, r.at);
  }

  /** Runs one decided scale, then writes down, audits, notifies and streams how it went. */
  private async carryOut(p: PendingScale): Promise<void> {
    const { app, settings } = p.target;
    const type = settings.type;
    this.o.log(`autoscale: ${app.name}: scaling ${type} ${p.direction} from ${p.from} to ${p.to}: ${p.reason}`);
    let error: string | null = null;
    try {
      await this.o.scale({ id: app.id, name: app.name }, type, p.to, p.from);
    } catch (e) {
      error = (e as Error).message;
      this.o.log(`autoscale: ${app.name}: scaling ${type} from ${p.from} to ${p.to} failed: ${error}`);
    }
    const finishedAt = this.now();
    const ok = error === null;
    await finishAutoscaleDecision(this.o.db, p.id, { status: ok ? "done" : "failed", ...(ok ? {} : { error: error! }), atMs: finishedAt });
    await audit(this.o.db, {
      userId: null, action: "ps:autoscale", target: app.name, result: ok ? "ok" : "failed",
      data: { type, direction: p.direction, from: p.from, to: p.to, reason: p.reason, ...(ok ? {} : { error }) },
    });
    await enqueueNotice(this.o.db, this.notice(p, error));
    this.emit({
      type: "scale", app: app.name, appId: app.id, orgId: app.orgId, org: app.org, processType: type, direction: p.direction, from: p.from, to: p.to,
      reason: p.reason, status: ok ? "scaled" : "failed", error, at: new Date(finishedAt).toISOString(),
    });
  }

  private notice(p: PendingScale, error: string | null): Notice {
    const { app, settings } = p.target;
    const change = `${settings.type} ${p.direction} from ${p.from} to ${p.to} process${p.to === 1 ? "" : "es"}`;
    return {
      key: `autoscale:${app.name}:${settings.type}:${p.id}`, status: "firing", orgId: app.orgId, org: app.org, app: app.name, host: this.host,
      rule: `autoscale ${settings.type}`, value: `${p.from} → ${p.to}: ${p.reason}`,
      summary: error === null
        ? `${app.name} (${app.org}): deck scaled ${change} because ${p.reason}`
        : `${app.name} (${app.org}): deck could not scale ${change} (${p.reason}): ${error}`,
      startsAt: new Date(p.at).toISOString(),
      command: `ssh ${this.o.sshPort === 22 ? "" : `-p ${this.o.sshPort} `}deck@${this.o.sshHost} ps:autoscale ${app.name}`,
    };
  }

  private track(work: Promise<void>): void {
    const p = work.catch((e: Error) => this.o.log(`autoscale: recording a scale failed: ${e.message}`)).finally(() => this.background.delete(p));
    this.background.add(p);
  }

  private emit(e: AutoscaleEvent): void {
    try {
      this.o.onEvent?.(e);
    } catch (err) {
      this.o.log(`autoscale: an event listener failed: ${(err as Error).message}`);
    }
  }
}
