import { DeckError } from "../core/index.ts";
import { q, type Db } from "../store/queries/index.ts";
import type { DeployDeps } from "./deps.ts";

/**
 * Pushes while they happen: the in-memory record of every push that is queued, building or deploying
 * (so it can be listed, cancelled and re-attached to), the cgroup each build runs in, and the builds
 * whose artifacts must be kept.
 */
// ---------- builds in progress ----------

/** queued: behind another deploy of the app; waiting: for a build slot; then building, deploying. */
export type BuildRunState = "queued" | "waiting" | "building" | "deploying";

/** Lines kept per build for re-attaching; a longer build's output is still complete in build_logs. */
const MAX_BUFFERED_LINES = 20_000;

export class BuildRun {
  state: BuildRunState = "queued";
  buildId: number | null = null;
  deploymentId: number | null = null;
  readonly queuedAt = new Date();
  buildStartedAt: Date | null = null;
  private readonly controller = new AbortController();
  private readonly buffered: string[] = [];
  private dropped = 0;
  private readonly followers = new Set<(line: string) => void>();
  private ended = false;
  private readonly endWaiters: (() => void)[] = [];
  private readonly buildEndWaiters: (() => void)[] = [];
  private cancelledInQueue!: (message: string) => void;
  /** Settles with the cancel message when the run is cancelled while still queued behind another deploy. */
  readonly cancelledWhileQueued: Promise<string> = new Promise((r) => (this.cancelledInQueue = r));

  constructor(readonly app: string, readonly commitSha: string, readonly pusher: string) {}

  /** Aborts when someone cancels this build; its reason is the DeckError to report. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get cancelMessage(): string | null {
    const reason: unknown = this.controller.signal.reason;
    return this.controller.signal.aborted && reason instanceof DeckError ? reason.message : null;
  }

  line = (text: string): void => {
    this.buffered.push(text);
    if (this.buffered.length > MAX_BUFFERED_LINES) {
      this.buffered.shift();
      this.dropped += 1;
    }
    for (const f of this.followers) f(text);
  };

  startBuild(buildId: number): void {
    this.buildId = buildId;
    this.buildStartedAt = new Date();
    this.state = "building";
  }

  /** The build is over (whatever its result): from here on the push can no longer be cancelled. */
  finishBuild(): void {
    if (this.state === "building" || this.state === "waiting" || this.state === "queued") this.state = "deploying";
    for (const w of this.buildEndWaiters.splice(0)) w();
  }

  get cancellable(): boolean {
    return !this.ended && this.state !== "deploying";
  }

  cancel(by: string): boolean {
    if (!this.cancellable || this.signal.aborted) return false;
    const message = `build cancelled by ${by}`;
    this.controller.abort(new DeckError("cancelled", message, { by }));
    if (this.state === "queued") this.cancelledInQueue(message);
    return true;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.followers.clear();
    for (const w of [...this.buildEndWaiters.splice(0), ...this.endWaiters.splice(0)]) w();
  }

  /** Resolves once the build step is over (or the run ended), or after `ms`. */
  async waitBuildOver(ms: number): Promise<void> {
    if (this.ended || this.state === "deploying") return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((r) => this.buildEndWaiters.push(r)), new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  /** Every line so far, then each new one as it comes, until the push ends or `signal` aborts. */
  async follow(onLine: (line: string) => void, signal: AbortSignal): Promise<void> {
    if (this.dropped) onLine(`(${this.dropped} earlier lines not shown; see builds:output once the build has finished)`);
    for (const l of this.buffered) onLine(l);
    if (this.ended || signal.aborted) return;
    this.followers.add(onLine);
    await new Promise<void>((resolve) => {
      this.endWaiters.push(resolve);
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
    this.followers.delete(onLine);
  }
}

/** The pushes of one deck server that are queued, building or deploying, per app in arrival order. */
export class BuildRuns {
  private readonly runs = new Set<BuildRun>();

  begin(app: string, commitSha: string, pusher: string): BuildRun {
    const run = new BuildRun(app, commitSha, pusher);
    this.runs.add(run);
    return run;
  }

  end(run: BuildRun): void {
    run.end();
    this.runs.delete(run);
  }

  forApp(app: string): BuildRun[] {
    return [...this.runs].filter((r) => r.app === app);
  }
}

// ---------- artifacts ----------

/**
 * Builds whose artifact must stay on disk whatever the retention count: the live release's, and the
 * one `rollback` without a version would go back to (the newest earlier release that did not fail).
 */
export async function protectedBuildIds(db: Db, appId: number): Promise<number[]> {
  const ids = await db.anyFirst(q`
    SELECT build_id FROM releases WHERE app_id = ${appId} AND status = 'live'
    UNION
    (SELECT build_id FROM releases
      WHERE app_id = ${appId} AND status <> 'failed'
        AND version < (SELECT max(version) FROM releases WHERE app_id = ${appId} AND status = 'live')
      ORDER BY version DESC LIMIT 1)`);
  return ids.map(Number);
}
