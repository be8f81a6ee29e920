import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { hostname } from "node:os";
import type { DatabasePool } from "slonik";
import { DeckError } from "../core/index.ts";
import {
  claimBuildSlot, dropBuildSlotsOf, enqueueBuild, finishBuildSlot, liveBuilderNodes, refreshBuildSlots, requestBuildCancel, type BuildJob,
} from "../store/queries/index.ts";
import { RemoteBuild, RemoteBuilds, type RemoteBuildResult, type RemoteBuildSource } from "./build-exchange.ts";

export interface BuildSlotsOptions {
  db: DatabasePool;
  /** This server's name in the line and the prefix its earlier runs on this host share (see holderName). */
  holder: { prefix: string; holder: string };
  /**
   * How many builds may run at once on the deck servers of the database together (DECK_BUILD_CONCURRENCY);
   * builder nodes take the rest, each up to its own limit. 0: every build waits for a builder node.
   */
  limit: number;
  /** Where builder nodes reach this server's build exchange (deploy/build-exchange.ts); unset: no builder node builds its pushes. */
  originUrl?: string;
  log?: (line: string) => void;
  pollMs?: number;
}

/** Where a push's build runs once it has left the line: on this server, or on a builder node. */
export type BuildSlot =
  | { where: "here"; release: () => Promise<void> }
  | { where: "builder"; builder: string; build: RemoteBuild; release: () => Promise<void> };

/** A push's build as a builder node needs it. */
export interface BuildJobRequest extends RemoteBuildSource {
  job: BuildJob;
}

/** How often a deck server looks whether the builder node running one of its builds is still there. */
const BUILDER_CHECK_MS = 2_000;
/** Beyond the build's own timeout: fetching the source and handing over the artifact. */
const EXCHANGE_MARGIN_MS = 10 * 60_000;

/** Whether a URL names this machine's loopback: only a builder node on the same machine reaches it. */
export function isLoopbackUrl(url: string): boolean {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

/**
 * The build slots, kept in PostgreSQL (`build_queue`): at most `limit` builds run at once on the deck
 * servers of the database, the rest wait in arrival order and hear their position; builder nodes
 * (`deck server --role builder`) take waiting builds as they have room.
 */
export class BuildSlots {
  private readonly wakeups = new EventEmitter();
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly held = new Set<number>();
  private closing = false;
  private readonly log: (line: string) => void;
  /** This server's builds that builder nodes run: the build exchange serves them. */
  readonly remote = new RemoteBuilds();

  constructor(private readonly options: BuildSlotsOptions) {
    this.log = options.log ?? (() => {});
    this.wakeups.setMaxListeners(0);
  }

  start(): void {
    if (this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      if (this.held.size === 0) return;
      refreshBuildSlots(this.options.db, [...this.held]).catch((e) => this.log(`build slots: refreshing this server's entries failed: ${(e as Error).message}`));
    }, 5_000);
    this.heartbeat.unref();
  }

  stop(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  wake(): void {
    this.wakeups.emit("wake");
  }

  /**
   * The server is stopping: pushes still waiting for a slot leave the line at once with DeckError
   * `interrupted` (one that kept its commit keeps its place in the app's line for the next start);
   * builds under way go on.
   */
  close(): void {
    this.closing = true;
    // The build exchange closes with the API: builds on builder nodes cannot hand over their artifact.
    this.remote.finishAll({ ok: false, code: "build_failed", message: "the deck server is restarting; push again once it is back", durationMs: 0 });
    this.wake();
  }

  /** Drops what an earlier run of this server left in the line: its builds died with it. */
  async dropAbandoned(): Promise<void> {
    if (await dropBuildSlotsOf(this.options.db, { prefix: this.options.holder.prefix, except: this.options.holder.holder })) this.wake();
  }

  /**
   * Waits for a slot unless `signal` aborts first. Returns where the build runs and the slot's release
   * (call it once the build is over), or null when aborted; `onWait` hears the position whenever it
   * changes, with a note when no one can take the build yet. With `job`, a builder node may take it.
   */
  async acquire(deploymentId: number | null, onWait: (position: number, note?: string) => void, signal: AbortSignal, job?: BuildJobRequest): Promise<BuildSlot | null> {
    if (signal.aborted) return null;
    const db = this.options.db;
    const remote = job && this.options.originUrl ? { job, secret: randomBytes(32).toString("base64url") } : undefined;
    const entry = await enqueueBuild(db, {
      deploymentId, holder: this.options.holder.holder,
      ...(remote ? { job: remote.job.job, originUrl: this.options.originUrl, secret: remote.secret, originHost: hostname(), originLocalOnly: isLoopbackUrl(this.options.originUrl!) } : {}),
    });
    this.held.add(entry.id);
    const build = remote ? new RemoteBuild(entry.id, remote.job, remote.secret) : undefined;
    if (build) this.remote.add(build);
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      this.held.delete(entry.id);
      if (build) {
        build.finish({ ok: false, code: "cancelled", message: "the build is over", durationMs: 0 });
        this.remote.remove(build);
      }
      await finishBuildSlot(db, entry.id).catch((e) => this.log(`build slots: freeing slot ${entry.id} failed (it is dropped once stale): ${(e as Error).message}`));
      this.wake();
    };
    try {
      let told = "";
      for (;;) {
        if (signal.aborted) {
          await release();
          return null;
        }
        if (this.closing) throw new DeckError("interrupted", "the deck server is restarting; push again once it is back");
        const claim = await claimBuildSlot(db, entry.id, this.options.limit);
        if (claim === null) {
          // Dropped as stale (this server was taken for stopped): take a new place rather than build unlimited.
          await release();
          return this.acquire(deploymentId, onWait, signal, job);
        }
        if ("builder" in claim) {
          if (!build) throw new Error(`build ${entry.id} was taken by builder node ${claim.builder} without a job`);
          return { where: "builder", builder: claim.builder, build, release };
        }
        if (claim.claimed) return { where: "here", release };
        const note = this.options.limit === 0 && remote ? await this.whyNoBuilder() : undefined;
        const said = `${claim.position}:${note ?? ""}`;
        if (said !== told) {
          told = said;
          onWait(claim.position, note);
        }
        await this.nextWake(signal);
      }
    } catch (e) {
      await release();
      throw e;
    }
  }

  /** Why no builder node can take this server's builds, when none can. */
  private async whyNoBuilder(): Promise<string | undefined> {
    const nodes = await liveBuilderNodes(this.options.db);
    if (nodes.length === 0) return "no builder node is running: start one (deck server --role builder) or set DECK_BUILD_CONCURRENCY above 0";
    const here = nodes.some((n) => n.name.startsWith(`builder@${hostname()}:`));
    if (!here && isLoopbackUrl(this.options.originUrl!)) {
      return `builder nodes on other machines cannot reach this deck server at ${this.options.originUrl}: set DECK_NODE_URL to an address they reach`;
    }
    return undefined;
  }

  /**
   * The result of a build a builder node runs: what it reports, or a failure once `signal` aborts
   * (the entry is then marked cancelled, and the builder node stops the build) or the node stops
   * refreshing its row.
   */
  async remoteResult(slot: Extract<BuildSlot, { where: "builder" }>, signal: AbortSignal, timeoutMs: number): Promise<RemoteBuildResult> {
    const { build, builder } = slot;
    const deadline = setTimeout(() => {
      build.finish({ ok: false, code: "timeout", message: `builder node ${builder} did not finish the build within ${Math.round((timeoutMs + EXCHANGE_MARGIN_MS) / 60_000)} minutes`, durationMs: 0 });
      requestBuildCancel(this.options.db, build.id).catch(() => undefined);
    }, timeoutMs + EXCHANGE_MARGIN_MS);
    const onAbort = () => {
      build.finish({ ok: false, code: "cancelled", message: "the build was cancelled", durationMs: 0 });
      requestBuildCancel(this.options.db, build.id).catch((e) => this.log(`build slots: asking builder node ${builder} to stop build ${build.id} failed: ${(e as Error).message}`));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    const check = setInterval(() => {
      liveBuilderNodes(this.options.db).then((nodes) => {
        if (!nodes.some((n) => n.name === builder)) {
          build.finish({ ok: false, code: "build_failed", message: `builder node ${builder} stopped during the build; push again`, durationMs: 0 });
        }
      }, (e: Error) => this.log(`build slots: looking for builder node ${builder} failed: ${e.message}`));
    }, BUILDER_CHECK_MS);
    try {
      return await build.result;
    } finally {
      clearTimeout(deadline);
      clearInterval(check);
      signal.removeEventListener("abort", onAbort);
    }
  }

  private nextWake(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeups.off("wake", done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, this.options.pollMs ?? 500);
      this.wakeups.once("wake", done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
