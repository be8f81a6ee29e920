/**
 * The work of a builder node (`deck server --role builder`): it takes waiting builds from the
 * database's `build_queue` (`FOR UPDATE SKIP LOCKED`, woken by `deck_build_queue` notifications) up to
 * its capacity, and runs each exactly as a deck server would — the app's sandbox, a cgroup with the
 * build limits, the app's config vars — with the source, output, artifact and result going through the
 * build exchange of the deck server that took the push (deploy/build-exchange.ts describes it). It
 * reports itself in `builder_nodes` every 2 seconds; a deck server fails a build whose node went silent.
 */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { hostname } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { PassThrough, type Readable } from "node:stream";
import { coalesced, type BuildResult } from "../core/index.ts";
import { listenForNotifications, type NotificationListener } from "../store/notification-listener.ts";
import {
  BUILDER_STALE_SECONDS, claimBuildJob, getConfigVars, removeBuilderNode, saveBuilderNode, wantedBuildJobs, type ClaimedBuildJob,
} from "../store/queries/index.ts";
import type { DatabasePool } from "slonik";
import { runBuild, type BuildOptions } from "./build.ts";
import { readImageRef } from "./docker-build.ts";
import { buildInCgroup, type BuildLimits } from "./limits.ts";

const HEARTBEAT_MS = 2_000;
const POLL_MS = 1_000;

/** What a builder node reports when a build is over. */
export type WorkerBuildResult = BuildResult & { outOfMemory?: boolean };

export interface BuildWorkerOptions {
  db: DatabasePool;
  /** The database URL, for the notification connection. */
  databaseUrl: string;
  /** This node's name in `builder_nodes` and in the pushes' output. */
  name: string;
  /** Builds at once (DECK_BUILD_CONCURRENCY). */
  capacity: number;
  /** The node's data dir: builds under `builds/`, each app's build cache under `cache/APP`. */
  dataDir: string;
  /** How builds run here (engine, base image, dirs hidden from builds); the runtime comes with each job. */
  build: Omit<BuildOptions, "runtime">;
  limits: BuildLimits;
  /** The engine's images (Docker): handed to the deck server, then forgotten here. Unset: no Docker builds. */
  images?: { saveImage(ref: string): Promise<Readable>; removeImage(ref: string): Promise<void> };
  /** Whether this node's sandbox and network rules cover an app uid; a build under any other is refused. */
  coversUid(uid: number): boolean;
  /** Runs before a build starts (the node's network rules learn the deck server's address). */
  beforeBuild?(job: ClaimedBuildJob): Promise<void>;
  log(line: string): void;
}

/** One build this node runs. */
interface Running {
  job: ClaimedBuildJob;
  controller: AbortController;
}

export class BuildWorker {
  private readonly running = new Map<number, Running>();
  private stopping = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  private listener: NotificationListener | undefined;

  constructor(private readonly options: BuildWorkerOptions) {}

  async start(): Promise<void> {
    const { db, name, capacity, log } = this.options;
    await rm(join(this.options.dataDir, "builds"), { recursive: true, force: true });
    await saveBuilderNode(db, name, capacity);
    this.heartbeat = setInterval(() => {
      saveBuilderNode(db, name, capacity)
        .then(() => this.checkWanted())
        .catch((e: Error) => log(`heartbeat failed (deck servers take this node for stopped after ${BUILDER_STALE_SECONDS}s): ${e.message}`));
    }, HEARTBEAT_MS);
    this.poll = setInterval(() => void this.take(), POLL_MS);
    this.listener = listenForNotifications({
      url: this.options.databaseUrl, channels: ["deck_build_queue"], log,
      onNotification: () => {
        void this.take();
        this.checkWanted().catch((e: Error) => log(`looking for cancelled builds failed (the heartbeat looks again): ${e.message}`));
      },
      onConnected: () => void this.take(),
    });
    void this.take();
  }

  /** Stops taking builds, stops those under way (their pushes fail) and leaves `builder_nodes`. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.heartbeat);
    clearInterval(this.poll);
    await this.listener?.close();
    for (const r of this.running.values()) r.controller.abort();
    const deadline = Date.now() + 10_000;
    while (this.running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await removeBuilderNode(this.options.db, this.options.name).catch((e: Error) => this.options.log(`leaving builder_nodes failed (deck servers take this node for stopped after ${BUILDER_STALE_SECONDS}s): ${e.message}`));
  }

  /** Takes waiting builds while there is room; one call at a time. */
  private readonly take = coalesced(async () => {
    while (!this.stopping && this.running.size < this.options.capacity) {
      const runtimes = this.options.images ? ["process", "docker"] : ["process"];
      const job = await claimBuildJob(this.options.db, this.options.name, { runtimes, host: hostname() }).catch((e: Error) => {
        this.options.log(`taking a build failed: ${e.message}`);
        return null;
      });
      if (!job) break;
      void this.run(job);
    }
  });

  /** Stops builds whose push is over or cancelled (the entry is gone or marked). */
  private async checkWanted(): Promise<void> {
    if (this.running.size === 0) return;
    const wanted = await wantedBuildJobs(this.options.db, [...this.running.keys()]);
    for (const [id, r] of this.running) if (!wanted.has(id)) r.controller.abort();
  }

  private async run(job: ClaimedBuildJob): Promise<void> {
    const { log } = this.options;
    const controller = new AbortController();
    this.running.set(job.id, { job, controller });
    const t0 = Date.now();
    log(`build ${job.id}: ${job.job.app} ${job.job.commitSha.slice(0, 7)} for ${job.originUrl}`);
    try {
      const result = await buildJob({ options: this.options, job, signal: controller.signal });
      log(`build ${job.id}: ${result.ok ? "succeeded" : `${result.code}: ${result.message.split("\n")[0]}`} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    } catch (e) {
      log(`build ${job.id}: ${(e as Error).message}`);
    } finally {
      this.running.delete(job.id);
      void this.take();
    }
  }
}

interface JobContext {
  options: BuildWorkerOptions;
  job: ClaimedBuildJob;
  signal: AbortSignal;
}

/** Runs one build and reports it to the deck server that waits for it; returns what it reported. */
async function buildJob(ctx: JobContext): Promise<WorkerBuildResult> {
  const { options, job, signal } = ctx;
  const exchange = new Exchange(job, signal);
  const workDir = join(options.dataDir, "builds", String(job.id));
  await mkdir(workDir, { recursive: true });
  const output = exchange.openOutput((e) => options.log(`build ${job.id}: sending output failed: ${e.message}`));
  let result: WorkerBuildResult;
  try {
    await options.beforeBuild?.(job);
    const sourceArchive = join(workDir, "source.tar");
    await exchange.download("source", sourceArchive);
    const slugDir = join(workDir, `job-${job.id}`);
    const runtime = job.job.runtime;
    const uid = job.job.sandbox?.uid;
    if (uid !== undefined && !options.coversUid(uid)) {
      result = {
        ok: false, code: "build_failed", durationMs: 0,
        message: `builder node ${options.name} does not sandbox uid ${uid}: give it the deck server's DECK_SANDBOX_UID_BASE`,
      };
    } else if (runtime === "docker" && !options.images) {
      result = { ok: false, code: "build_failed", message: `builder node ${options.name} has no Docker engine for this build (start it with DECK_RUNTIME=docker)`, durationMs: 0 };
    } else {
      const env = await getConfigVars(options.db, job.job.appId);
      // The cache belongs to this app (its id: never a later app of the same name) until builds:cache:clear.
      const cacheDir = join(options.dataDir, "cache", `${job.job.app}.${job.job.cacheKey ?? job.job.appId}`);
      // The pid keeps cgroup names apart when several builder nodes or deck servers share a machine.
      const built = await buildInCgroup(`build-job-${job.id}-${process.pid}`, options.limits, options.log, () => runBuild({
        app: job.job.app, commitSha: job.job.commitSha, repoDir: "", gitEnv: {}, sourceArchive,
        slugDir, cacheDir, env, timeoutMs: job.job.timeoutMs, onLine: output.line, signal, builder: job.job.builder, sandbox: job.job.sandbox,
      }, { ...options.build, runtime }));
      result = built.result.ok ? built.result : { ...built.result, outOfMemory: built.outOfMemory };
      if (result.ok) {
        await output.end();
        await exchange.upload("artifact", tarOf(slugDir));
        // Only a Docker build names an image (a process slug's files are the tenant's to write).
        const images = runtime === "docker" ? options.images : undefined;
        const ref = images ? await readImageRef(slugDir) : undefined;
        // An engine shared with the deck server has the image already; another gets it and this one forgets it.
        if (ref && images && !(await exchange.exists(`image?id=${encodeURIComponent(ref.image)}`))) {
          await exchange.upload("image", await images.saveImage(ref.tag));
          await images.removeImage(ref.tag).catch((e: Error) => options.log(`build ${job.id}: removing image ${ref.tag} here failed: ${e.message}`));
        }
      }
    }
  } catch (e) {
    if (signal.aborted) result = { ok: false, code: "cancelled", message: "the build was cancelled", durationMs: 0 };
    else {
      // The detail (paths, the deck server's answer) is for the operator: the pusher hears where to look.
      options.log(`build ${job.id}: ${(e as Error).message}`);
      result = { ok: false, code: "build_failed", message: `builder node ${options.name} failed to run the build (its log has the details); push again`, durationMs: 0 };
    }
  } finally {
    await rm(workDir, { recursive: true, force: true }).catch((e: Error) => options.log(`build ${job.id}: removing ${workDir} failed: ${e.message}`));
  }
  await output.end();
  if (!signal.aborted) await exchange.post("result", JSON.stringify(result)).catch((e: Error) => options.log(`build ${job.id}: reporting the result failed: ${e.message}`));
  return result;
}

/**
 * `tar` of a directory's content (owners as numbers, sparse files kept sparse), for the deck server to
 * unpack; the stream fails when tar does, so a partial archive is never taken for a whole one.
 */
function tarOf(dir: string): Readable {
  const tar = spawn("tar", ["-c", "-f", "-", "-C", dir, "--numeric-owner", "--sparse", "."], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  tar.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  const out = new PassThrough();
  tar.stdout.pipe(out, { end: false });
  let exited: number | null | undefined;
  let drained = false;
  const settle = () => {
    if (exited === undefined || !drained) return;
    if (exited === 0) out.end();
    else out.destroy(new Error(`tar of the artifact failed: ${stderr.trim().split("\n").at(-1) ?? `exit ${exited}`}`));
  };
  tar.stdout.on("end", () => {
    drained = true;
    settle();
  });
  tar.on("close", (code) => {
    exited = code;
    drained = true;
    settle();
  });
  tar.on("error", (e) => out.destroy(e));
  return out;
}

/** Output lines waiting to be sent at most; beyond, lines are dropped and their number said. */
const MAX_PENDING_LINES = 10_000;
/** A batch of output goes at least this often, or sooner when this many lines wait. */
const OUTPUT_FLUSH_MS = 200;
const OUTPUT_BATCH_LINES = 500;
/** A request to the deck server that sends or receives nothing for this long fails. */
const IDLE_TIMEOUT_MS = 60_000;

/** The requests of one build to the deck server that took its push; all stop when `signal` aborts. */
class Exchange {
  constructor(private readonly job: ClaimedBuildJob, private readonly signal: AbortSignal) {}

  private request(part: string, method: string, headers: Record<string, string> = {}): http.ClientRequest {
    const url = new URL(`internal/build-jobs/${this.job.id}/${part}`, this.job.originUrl.endsWith("/") ? this.job.originUrl : `${this.job.originUrl}/`);
    const client = url.protocol === "https:" ? https : http;
    const req = client.request(url, { method, headers: { authorization: `Bearer ${this.job.secret}`, ...headers }, signal: this.signal, timeout: IDLE_TIMEOUT_MS });
    req.on("timeout", () => req.destroy(new Error(`the deck server at ${this.job.originUrl} sent nothing for ${IDLE_TIMEOUT_MS / 1000} s (${part})`)));
    return req;
  }

  private answer(req: http.ClientRequest, part: string): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      req.on("error", (e) => reject(new Error(`the deck server at ${this.job.originUrl} did not answer (${part}): ${e.message}`)));
      req.on("response", (res) => {
        if (res.statusCode === 200) return resolve(res);
        let text = "";
        res.on("data", (c: Buffer) => void (text.length < 500 && (text += c.toString())));
        res.on("end", () => reject(new Error(`the deck server refused the ${part} (${res.statusCode}): ${text.trim().slice(0, 300)}`)));
      });
    });
  }

  async download(part: string, file: string): Promise<void> {
    const req = this.request(part, "GET");
    req.end();
    const res = await this.answer(req, part);
    res.setTimeout(IDLE_TIMEOUT_MS, () => res.destroy(new Error(`the ${part} stopped arriving`)));
    await pipeline(res, createWriteStream(file));
    if (!res.complete) throw new Error(`the ${part} from the deck server was cut off`);
  }

  /** GET that answers 200 (true) or 404 (false). */
  async exists(part: string): Promise<boolean> {
    const req = this.request(part, "GET");
    req.end();
    return new Promise((resolve, reject) => {
      req.on("error", reject);
      req.on("response", (res) => {
        res.resume();
        if (res.statusCode === 200 || res.statusCode === 404) resolve(res.statusCode === 200);
        else reject(new Error(`the deck server answered ${res.statusCode} for ${part}`));
      });
    });
  }

  async upload(part: string, body: Readable): Promise<void> {
    const req = this.request(part, "PUT", { "content-type": "application/x-tar" });
    const answered = this.answer(req, part);
    await Promise.all([pipeline(body, req), answered.then((res) => res.resume())]);
  }

  async post(part: string, body: string, contentType = "application/json"): Promise<void> {
    const req = this.request(part, "POST", { "content-type": contentType });
    const answered = this.answer(req, part);
    req.end(body);
    (await answered).resume();
  }

  /**
   * The output: lines as they come, sent in short batches (one JSON string per line) so that no request
   * lasts long; at most MAX_PENDING_LINES wait (a build printing faster than the network carries loses
   * the surplus, and the pusher is told how many lines). `end` sends what is left.
   */
  openOutput(onError: (e: Error) => void): { line(text: string): void; end(): Promise<void> } {
    let pending: string[] = [];
    let dropped = 0;
    let sending: Promise<void> | null = null;
    let timer: NodeJS.Timeout | undefined;
    let failed = false;
    const flush = async (): Promise<void> => {
      clearTimeout(timer);
      timer = undefined;
      while (sending) await sending;
      if (pending.length === 0 && dropped === 0) return;
      const batch = pending.slice(0, OUTPUT_BATCH_LINES);
      pending = pending.slice(batch.length);
      if (dropped > 0 && pending.length === 0) {
        batch.push(`       (${dropped} lines of output were not shown: the build printed faster than they could be sent)`);
        dropped = 0;
      }
      sending = (failed || this.signal.aborted ? Promise.resolve() : this.post("output", batch.map((l) => JSON.stringify(l)).join("\n") + "\n", "application/x-ndjson"))
        .catch((e: Error) => {
          failed = true;
          onError(e);
        })
        .finally(() => (sending = null));
      await sending;
      if (pending.length > 0) await flush();
    };
    return {
      line: (text) => {
        if (pending.length >= MAX_PENDING_LINES) dropped += 1;
        else pending.push(text);
        if (pending.length >= OUTPUT_BATCH_LINES) void flush();
        else timer ??= setTimeout(() => void flush(), OUTPUT_FLUSH_MS);
      },
      end: () => flush(),
    };
  }
}
