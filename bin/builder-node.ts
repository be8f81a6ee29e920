/**
 * A builder node: `deck server --role builder`. It serves no app and takes no push: it takes waiting
 * builds from the database's `build_queue` (`FOR UPDATE SKIP LOCKED`, woken by `deck_build_queue`
 * notifications) up to DECK_BUILD_CONCURRENCY at once, and runs each exactly as a deck server would —
 * the app's sandbox, a cgroup with the build limits, the app's config vars — with the source, output,
 * artifact and result going through the build exchange of the deck server that took the push
 * (deploy/build-exchange.ts). It reports itself in `builder_nodes` every 2 seconds; a deck server fails
 * a build whose node went silent.
 */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { hostname } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { readImageRef, removeBuildLeftovers, runBuild } from "../builder/index.ts";
import { SANDBOX_UID_RANGE, type DeckConfig } from "../config/index.ts";
import { buildInCgroup, type RemoteBuildResult } from "../deploy/index.ts";
import { createDockerClient, firewallTableFor, formatProtection, removeDockerFirewall, scopeFor, type DockerClient } from "../runtime/index.ts";
import { applyDockerFirewall } from "../runtime/docker-network.ts";
import { listenForNotifications, openDatabase, type Database } from "../store/index.ts";
import {
  BUILDER_STALE_SECONDS, claimBuildJob, getConfigVars, listSandboxUidsOutside, removeBuilderNode, saveBuilderNode, wantedBuildJobs, type ClaimedBuildJob,
} from "../store/queries/index.ts";
import { removeNetworkRules, networkTableFor } from "../runtime/network-rules.ts";
import { configureSecrets } from "../store/secret-box.ts";
import { hiddenFromApps, holdDataDir, reportProtections } from "./server.ts";

const HEARTBEAT_MS = 2_000;
const POLL_MS = 1_000;

export interface BuilderNode {
  readonly name: string;
  /** Stops taking builds; builds under way are stopped and reported as failed to their pushes. */
  stop(): Promise<void>;
}

/** One build this node runs. */
interface Running {
  job: ClaimedBuildJob;
  controller: AbortController;
}

export async function startBuilderNode(config: DeckConfig, log: (line: string) => void): Promise<BuilderNode> {
  if (!config.databaseUrl) throw new Error("--role builder needs DATABASE_URL, the PostgreSQL your deck server uses");
  if (config.buildConcurrency < 1) throw new Error("a builder node needs DECK_BUILD_CONCURRENCY of 1 or more");
  configureSecrets({ dataDir: config.dataDir, masterKey: config.masterKey });
  const started: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of started.splice(0).reverse()) await stop().catch((e: Error) => log(`stopping: ${e.message}`));
  };
  try {
    const db: Database = await openDatabase({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, log });
    started.push(() => db.close());
    started.push(await holdDataDir(db.url, config.dataDir));
    const buildsDir = join(config.dataDir, "builds");
    await removeBuildLeftovers({ appsDir: buildsDir, cacheDir: join(config.dataDir, "cache"), log });
    await rm(buildsDir, { recursive: true, force: true });
    await mkdir(buildsDir, { recursive: true });
    // Tenants' builds run here: the same sandbox and network rules as on a deck server.
    await reportProtections(config, db, log);
    // The uids those rules cover: a build under any other uid would escape them, so it is refused.
    const covered = new Set(await listSandboxUidsOutside(db.pool, config.sandboxUidBase, SANDBOX_UID_RANGE));
    const coversUid = (uid: number) => (uid >= config.sandboxUidBase && uid < config.sandboxUidBase + SANDBOX_UID_RANGE) || covered.has(uid);
    const docker = config.runtime === "docker" ? createDockerClient() : undefined;
    if (docker) {
      await docker.ping().catch((e: Error) => {
        throw new Error(`DECK_RUNTIME=docker but no Docker engine answers (${e.message.split("\n")[0]}); start dockerd or set DOCKER_HOST`);
      });
      // Dockerfile builds' RUN steps reach neither this host nor link-local addresses.
      const table = firewallTableFor(scopeFor(config.dataDir));
      const firewall = await applyDockerFirewall(table);
      if (!firewall.on) log(`protection off: ${formatProtection(firewall)}`);
      started.push(() => removeDockerFirewall(table));
    }

    const name = `builder@${hostname()}:${process.pid}`;
    const running = new Map<number, Running>();
    let stopping = false;
    await saveBuilderNode(db.pool, name, config.buildConcurrency);

    const runJob = async (job: ClaimedBuildJob) => {
      const controller = new AbortController();
      running.set(job.id, { job, controller });
      const t0 = Date.now();
      log(`build ${job.id}: ${job.job.app} ${job.job.commitSha.slice(0, 7)} for ${job.originUrl}`);
      try {
        const result = await buildJob({ config, db, docker, job, buildsDir, signal: controller.signal, log, coversUid });
        log(`build ${job.id}: ${result.ok ? "succeeded" : `${result.code}: ${result.message.split("\n")[0]}`} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      } catch (e) {
        log(`build ${job.id}: ${(e as Error).message}`);
      } finally {
        running.delete(job.id);
        void take();
      }
    };

    // Takes waiting builds while there is room; one call at a time.
    let taking: Promise<void> | null = null;
    let again = false;
    const take = async (): Promise<void> => {
      if (taking) {
        again = true;
        return taking;
      }
      taking = (async () => {
        do {
          again = false;
          while (!stopping && running.size < config.buildConcurrency) {
            const job = await claimBuildJob(db.pool, name).catch((e: Error) => {
              log(`taking a build failed: ${e.message}`);
              return null;
            });
            if (!job) break;
            void runJob(job);
          }
        } while (again && !stopping);
      })().finally(() => (taking = null));
      return taking;
    };

    // Stops builds whose push is over or cancelled (the entry is gone or marked).
    const checkWanted = async () => {
      if (running.size === 0) return;
      const wanted = await wantedBuildJobs(db.pool, [...running.keys()]);
      for (const [id, r] of running) if (!wanted.has(id)) r.controller.abort();
    };
    const heartbeat = setInterval(() => {
      saveBuilderNode(db.pool, name, config.buildConcurrency)
        .then(checkWanted)
        .catch((e: Error) => log(`heartbeat failed (deck servers take this node for stopped after ${BUILDER_STALE_SECONDS}s): ${e.message}`));
    }, HEARTBEAT_MS);
    const poll = setInterval(() => void take(), POLL_MS);
    const listener = listenForNotifications({
      url: db.url, channels: ["deck_build_queue"], log,
      onNotification: () => {
        void take();
        void checkWanted().catch(() => {});
      },
      onConnected: () => void take(),
    });
    started.push(async () => {
      stopping = true;
      clearInterval(heartbeat);
      clearInterval(poll);
      await listener.close();
      for (const r of running.values()) r.controller.abort();
      const deadline = Date.now() + 10_000;
      while (running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await removeBuilderNode(db.pool, name).catch(() => {});
      // No app runs here: the builds' network rules go with the node.
      await removeNetworkRules(networkTableFor(config.dataDir)).catch((e: Error) => log(`removing the network rules: ${e.message}`));
    });
    void take();
    log(`builder node ${name} is taking builds (${config.buildConcurrency} at once)`);
    return { name, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

interface JobContext {
  config: DeckConfig;
  db: Database;
  docker: DockerClient | undefined;
  job: ClaimedBuildJob;
  buildsDir: string;
  signal: AbortSignal;
  log: (line: string) => void;
  coversUid: (uid: number) => boolean;
}

/** Runs one build and reports it to the deck server that waits for it; returns what it reported. */
async function buildJob(ctx: JobContext): Promise<RemoteBuildResult> {
  const { config, job, signal } = ctx;
  const exchange = new Exchange(job);
  const workDir = join(ctx.buildsDir, String(job.id));
  await mkdir(workDir, { recursive: true });
  const output = exchange.openOutput();
  const onLine = (line: string) => output.line(line);
  let result: RemoteBuildResult;
  try {
    const sourceArchive = join(workDir, "source.tar");
    await exchange.download("source", sourceArchive);
    const slugDir = join(workDir, `job-${job.id}`);
    const runtime = job.job.runtime;
    const uid = job.job.sandbox?.uid;
    if (uid !== undefined && !ctx.coversUid(uid)) {
      result = {
        ok: false, code: "build_failed", durationMs: 0,
        message: `builder node ${hostname()} does not sandbox uid ${uid}: give it the deck server's DECK_SANDBOX_UID_BASE (it has ${config.sandboxUidBase})`,
      };
    } else if (runtime === "docker" && !ctx.docker) {
      result = { ok: false, code: "build_failed", message: `builder node ${hostname()} has no Docker engine for this build (start it with DECK_RUNTIME=docker)`, durationMs: 0 };
    } else {
      const env = await getConfigVars(ctx.db.pool, job.job.appId);
      const built = await buildInCgroup({ config, log: ctx.log }, `job-${job.id}`, () => runBuild({
        app: job.job.app, commitSha: job.job.commitSha, repoDir: "", gitEnv: {}, sourceArchive,
        slugDir, cacheDir: join(config.dataDir, "cache", job.job.app),
        env, timeoutMs: job.job.timeoutMs,
        onLine, signal, builder: job.job.builder, sandbox: job.job.sandbox,
      }, {
        runtime, engine: ctx.docker, baseImage: config.baseImage,
        imageBuildLimits: { memoryBytes: config.buildMemory, cpus: config.buildCpus },
        hide: hiddenFromApps(config),
      }));
      result = built.result.ok ? built.result : { ...built.result, outOfMemory: built.outOfMemory };
      if (result.ok) {
        await output.end();
        await exchange.upload("artifact", tarOf(slugDir));
        const ref = ctx.docker ? await readImageRef(slugDir) : undefined;
        // An engine shared with the deck server has the image already; another gets it and this one forgets it.
        if (ref && ctx.docker && !(await exchange.exists(`image?id=${encodeURIComponent(ref.image)}`))) {
          await exchange.upload("image", await ctx.docker.saveImage(ref.tag));
          await ctx.docker.removeImage(ref.tag).catch((e: Error) => ctx.log(`build ${job.id}: removing image ${ref.tag} here failed: ${e.message}`));
        }
      }
    }
  } catch (e) {
    if (signal.aborted) result = { ok: false, code: "cancelled", message: "the build was cancelled", durationMs: 0 };
    else result = { ok: false, code: "build_failed", message: `builder node ${hostname()}: ${(e as Error).message.split("\n")[0]}`, durationMs: 0 };
  } finally {
    await rm(workDir, { recursive: true, force: true }).catch(() => {});
  }
  await output.end();
  if (!signal.aborted) await exchange.post("result", JSON.stringify(result)).catch((e: Error) => ctx.log(`build ${job.id}: reporting the result failed: ${e.message}`));
  return result;
}

/** `tar` of a directory's content, owners as numbers, for the deck server to unpack. */
function tarOf(dir: string): Readable {
  const tar = spawn("tar", ["-c", "-f", "-", "-C", dir, "--numeric-owner", "."], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  tar.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  tar.on("close", (code) => {
    if (code !== 0) tar.stdout.destroy(new Error(`tar of the artifact failed: ${stderr.trim().split("\n").at(-1) ?? code}`));
  });
  return tar.stdout;
}

/** The requests of one build to the deck server that took its push. */
class Exchange {
  constructor(private readonly job: ClaimedBuildJob) {}

  private request(part: string, method: string, headers: Record<string, string> = {}): http.ClientRequest {
    const url = new URL(`internal/build-jobs/${this.job.id}/${part}`, this.job.originUrl.endsWith("/") ? this.job.originUrl : `${this.job.originUrl}/`);
    const client = url.protocol === "https:" ? https : http;
    return client.request(url, { method, headers: { authorization: `Bearer ${this.job.secret}`, ...headers } });
  }

  private answer(req: http.ClientRequest, part: string): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      req.on("error", (e) => reject(new Error(`the deck server at ${this.job.originUrl} did not answer (${part}): ${e.message}`)));
      req.on("response", (res) => {
        if (res.statusCode === 200) return resolve(res);
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()).slice(0, 500));
        res.on("end", () => reject(new Error(`the deck server refused the ${part} (${res.statusCode}): ${text.trim()}`)));
      });
    });
  }

  async download(part: string, file: string): Promise<void> {
    const req = this.request(part, "GET");
    req.end();
    const res = await this.answer(req, part);
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

  async post(part: string, body: string): Promise<void> {
    const req = this.request(part, "POST", { "content-type": "application/json" });
    const answered = this.answer(req, part);
    req.end(body);
    (await answered).resume();
  }

  /** The output stream: each line as it comes, one JSON string per line; `end` once the build is over. */
  openOutput(): { line(text: string): void; end(): Promise<void> } {
    const req = this.request("output", "POST", { "content-type": "application/x-ndjson" });
    const answered = this.answer(req, "output").then((res) => void res.resume(), () => undefined);
    let ended = false;
    return {
      line: (text) => {
        if (!ended) req.write(`${JSON.stringify(text)}\n`);
      },
      end: async () => {
        if (!ended) {
          ended = true;
          req.end();
        }
        await answered;
      },
    };
  }
}

