import { randomBytes } from "node:crypto";
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { DeckError } from "../core/errors.ts";
import type { ProcessInfo, ProcessSpec, ProcessStats, Runtime, SandboxIdentity } from "../core/interfaces.ts";
import { LogDemuxer, sinceParameter, timestampNanos, type ContainerCreateBody, type ContainerInfo, type DockerClient, type LogLine } from "./docker-client.ts";
import {
  containerName, containerUser, DEFAULT_PIDS_LIMIT, processContainerBody, processFilter, releaseContainerBody, releaseContainerName, resolveImage,
  type ContainerContext, type DockerLimits, type ImageRef,
} from "./docker-container.ts";
import { applyDockerFirewall, appNetworkBody, appNetworkName, firewallTableFor } from "./docker-network.ts";
import { processId } from "./process-runtime.ts";
import { formatProtection, type Protection } from "./protections.ts";
import type { RunOnceResult, RunOnceSpec } from "./run-once.ts";
import { formatLogLine, sleep } from "./shim-lib.mjs";

export {
  CONTAINER_PATH, CONTAINER_PORT, containerCmd, containerEnv, containerName, containerUser, DEFAULT_PIDS_LIMIT, FALLBACK_USER, isRootUser,
  processContainerBody, processFilter, processLabels, releaseContainerBody, releaseContainerName, resolveImage, scopeFor,
  type ContainerContext, type DockerLimits, type ImageRef,
} from "./docker-container.ts";

/** How long stop() lets the log follower take in the last lines before the container is removed. */
const LOG_DRAIN_MS = 2000;
/** Between SIGTERM and SIGKILL when a one-off container runs past its timeout. */
const ONE_OFF_STOP_SECONDS = 2;

export interface DockerRuntimeOptions extends DockerLimits {
  client: DockerClient;
  /** Where the log cursors live (one small file per container), so a restarted deck resumes each log. */
  stateDir: string;
  /**
   * Label value that marks this deck's containers (`deck.scope`): another deck, or a test, on the same
   * engine never sees or stops them. `scopeFor(dataDir)` gives one per data dir.
   */
  scope: string;
  /** deck's nftables table for container networks; default firewallTableFor(scope). */
  firewallTable?: string;
  /** Where a protection that is off is reported when prepare() was not called first. */
  log?: (line: string) => void;
}

function toState(c: ContainerInfo): ProcessInfo["state"] {
  if (c.running && c.status !== "restarting") return "running";
  if (c.status === "created") return "starting";
  if (c.status === "removing") return "stopped";
  return "crashed";
}

function toProcessInfo(c: ContainerInfo): ProcessInfo | undefined {
  const l = c.labels;
  if (!l["deck.id"] || !l["deck.app"] || !l["deck.generation"] || !l["deck.type"]) return undefined;
  const info: ProcessInfo = {
    id: l["deck.id"],
    app: l["deck.app"],
    release: Number(l["deck.release"]),
    generation: Number(l["deck.generation"]),
    type: l["deck.type"],
    index: Number(l["deck.index"]),
    state: toState(c),
    restarts: c.restartCount,
    startedAt: c.startedAt.startsWith("0001-") ? c.createdAt : c.startedAt,
  };
  if (l["deck.port"]) info.port = Number(l["deck.port"]);
  if (l["deck.host"]) info.host = l["deck.host"];
  if (c.running && c.pid > 0) info.pid = c.pid;
  return info;
}

function byProcessOrder(a: ProcessInfo, b: ProcessInfo): number {
  return a.app.localeCompare(b.app) || a.generation - b.generation || a.type.localeCompare(b.type) || a.index - b.index;
}

/** Appends to an app log; a log that cannot be written must not stop the app or deck. */
function appendLog(file: string, text: string): void {
  try {
    appendFileSync(file, text);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") return;
    try {
      mkdirSync(dirname(file), { recursive: true });
      appendFileSync(file, text);
    } catch {
      // as above
    }
  }
}

function formatLines(lines: LogLine[], name: string): string {
  return lines.map((l) => formatLogLine("app", name, l.text, new Date(Date.parse(l.time) || Date.now()))).join("");
}

/** Reads a log stream to its end, handing each batch of lines over as it arrives. */
function pumpLogs(stream: Readable, onLines: (lines: LogLine[]) => void): Promise<void> {
  const demux = new LogDemuxer();
  return new Promise((resolve) => {
    stream.on("data", (chunk: Buffer) => {
      const lines = demux.push(chunk);
      if (lines.length > 0) onLines(lines);
    });
    stream.once("end", resolve);
    stream.once("close", resolve);
    stream.once("error", () => resolve());
  });
}

interface Follower {
  done: Promise<void>;
  stop(): void;
}

/**
 * Runs each app process as a container on a Docker engine: one container per process, named
 * `deck-<scope>-<process id>` (containerName, so decks sharing an engine never collide), labelled with
 * scope/app/release/generation/type/index, its web port published on one address only (127.0.0.1
 * unless DECK_UPSTREAM_HOST says otherwise), restarted by the engine on failure. Containers are hardened (docker-container.ts: non-root, no capabilities, no new
 * privileges, pids/memory/CPU limits) and each app's sit on its own network, which exists while the
 * app has a container (docker-network.ts). Containers outlive the deck server; a new DockerRuntime
 * finds them by label and resumes streaming their logs into the app log where the last one stopped.
 */
export class DockerRuntime implements Runtime {
  readonly #client: DockerClient;
  readonly #stateDir: string;
  readonly #scope: string;
  readonly #limits: DockerLimits;
  readonly #firewallTable: string;
  readonly #log: (line: string) => void;
  readonly #followers = new Map<string, Follower>();
  /** Per app: the network work in flight, so that creating a container and removing the app's network never interleave. */
  readonly #appLocks = new Map<string, Promise<unknown>>();
  #prepared: Promise<Protection[]> | undefined;

  constructor(options: DockerRuntimeOptions) {
    this.#client = options.client;
    this.#stateDir = resolve(options.stateDir);
    this.#scope = options.scope;
    this.#limits = { memoryBytes: options.memoryBytes, cpus: options.cpus, pidsLimit: options.pidsLimit ?? DEFAULT_PIDS_LIMIT };
    this.#firewallTable = options.firewallTable ?? firewallTableFor(options.scope);
    this.#log = options.log ?? (() => undefined);
  }

  /**
   * Applies the host firewall for container networks (idempotent; once per runtime) and says which
   * protections are in effect. deck calls it at start-up, before any build or container; start() and
   * runOnce() make sure of it too, logging a protection that is off.
   */
  prepare(): Promise<Protection[]> {
    this.#prepared ??= (async () => {
      const containers: Protection = {
        name: "docker-containers",
        on: true,
        detail: `app containers run as a non-root user with no capabilities, no-new-privileges, at most ${this.#limits.pidsLimit} processes`,
      };
      return [containers, await applyDockerFirewall(this.#firewallTable)];
    })();
    return this.#prepared;
  }

  async #ready(): Promise<void> {
    const first = this.#prepared === undefined;
    const protections = await this.prepare();
    if (first) for (const p of protections) if (!p.on) this.#log(formatProtection(p));
  }

  /** Runs `fn` after the app's earlier network work, and before its later. */
  #withAppLock<T>(app: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#appLocks.get(app) ?? Promise.resolve();
    const result = previous.then(fn, fn);
    const settled = result.then(() => undefined, () => undefined);
    this.#appLocks.set(app, settled);
    void settled.then(() => {
      if (this.#appLocks.get(app) === settled) this.#appLocks.delete(app);
    });
    return result;
  }

  /** The app's network, created if it does not exist yet; call under the app's lock. */
  async #ensureNetwork(app: string): Promise<string> {
    await this.#client.createNetwork(appNetworkBody(this.#scope, app));
    return appNetworkName(this.#scope, app);
  }

  /** Removes the app's network once its last container is gone. */
  #releaseNetwork(app: string): Promise<void> {
    return this.#withAppLock(app, async () => {
      const left = await this.#client.listContainers([`deck.scope=${this.#scope}`, `deck.app=${app}`]);
      if (left.length > 0) return;
      const outcome = await this.#client.removeNetwork(appNetworkName(this.#scope, app));
      if (outcome === "in-use") this.#log(`docker: network ${appNetworkName(this.#scope, app)} still has endpoints; left in place`);
    });
  }

  #releaseNetworkLogged(app: string): Promise<void> {
    return this.#releaseNetwork(app).catch((e: unknown) => this.#log(`docker: removing ${app}'s network failed: ${engineMessage(e)}`));
  }

  /** Runs `fn`; when it fails, the network it may have created for an app with no container goes again. */
  async #afterFailureReleasing<T>(app: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      await this.#releaseNetworkLogged(app);
      throw e;
    }
  }

  /** Image, user, network and limits of one of the app's containers. */
  async #context(spec: { app: string; image?: string; cwd: string; sandbox?: SandboxIdentity; memoryBytes?: number; cpus?: number }, network: string): Promise<ContainerContext> {
    const image: ImageRef = resolveImage(spec);
    const info = await this.#client.inspectImage(image.image);
    if (!info) throw new DeckError("image_missing", `${spec.app}: image ${shortImage(image.image)} is not on the Docker engine; push again to build it`, { image: image.image });
    return {
      image,
      scope: this.#scope,
      network,
      user: containerUser(info.user, spec.sandbox),
      limits: { memoryBytes: spec.memoryBytes ?? this.#limits.memoryBytes, cpus: spec.cpus ?? this.#limits.cpus, pidsLimit: this.#limits.pidsLimit },
    };
  }

  #cursorFile(id: string): string {
    return join(this.#stateDir, `${id}.log-cursor`);
  }

  async start(spec: ProcessSpec): Promise<ProcessInfo> {
    const id = processId(spec);
    const name = containerName(this.#scope, id);
    await this.#ready();
    // By label, not name: a container of this process started under the older unscoped name counts too.
    const existing = await this.#client.listContainers(processFilter(this.#scope, id));
    if (existing.some((c) => c.running || c.restarting)) throw new DeckError("process_exists", `${id} is already running; stop it first`, { id });
    for (const c of existing) await this.#client.removeContainer(c.id);
    mkdirSync(this.#stateDir, { recursive: true });
    rmSync(this.#cursorFile(id), { force: true });

    const { containerId, ctx } = await this.#afterFailureReleasing(spec.app, () => this.#withAppLock(spec.app, async () => {
      const ctx = await this.#context(spec, await this.#ensureNetwork(spec.app));
      let containerId: string;
      try {
        containerId = await this.#client.createContainer(name, processContainerBody(spec, ctx));
      } catch (e) {
        throw new DeckError("process_start_failed", `${id}: the container could not be created: ${engineMessage(e)}`, { id }, { cause: e });
      }
      try {
        await this.#client.startContainer(containerId);
      } catch (e) {
        await this.#client.removeContainer(containerId).catch((removeError: unknown) => this.#log(`docker: removing ${id}, which did not start, failed (the next start of it replaces it): ${engineMessage(removeError)}`));
        throw new DeckError("process_start_failed", `${id}: the container did not start: ${engineMessage(e)}`, { id }, { cause: e });
      }
      return { containerId, ctx };
    }));
    const image = ctx.image;
    const info = await this.#client.inspectContainer(containerId);
    const started = info && toProcessInfo(info);
    if (!info || !started) throw new DeckError("process_start_failed", `${id}: the container disappeared right after it started`, { id });
    const what = spec.command.trim() === "" ? "its image's command" : `command \`${spec.command}\``;
    appendLog(spec.logFile, formatLogLine("deck", `${spec.type}.${spec.index}`, `Starting container ${name} (image ${shortImage(image.image)}, user ${ctx.user}) with ${what}`));
    this.#follow(id, info);
    return started;
  }

  /** Stops this deck's container of process `id` (found by label, so under its current or older name); an unknown id is a no-op. */
  async stop(id: string, graceMs: number): Promise<void> {
    const containers = await this.#client.listContainers(processFilter(this.#scope, id));
    const seconds = Math.max(0, Math.ceil(graceMs / 1000));
    await Promise.all(containers.map((c) => this.#client.stopContainer(c.id, seconds)));
    // The log stream ends with the container; let it write the last lines before they are deleted.
    const follower = this.#followers.get(id);
    if (follower) await Promise.race([follower.done, sleep(LOG_DRAIN_MS)]);
    follower?.stop();
    for (const c of containers) await this.#client.removeContainer(c.id);
    rmSync(this.#cursorFile(id), { force: true });
    const apps = new Set(containers.map((c) => c.labels["deck.app"]).filter((app): app is string => app !== undefined));
    for (const app of apps) await this.#releaseNetwork(app);
  }

  /**
   * This deck's process containers (of one app, or all), running or not. Listing also adopts them: a
   * container whose log is not being followed (deck restarted) is followed again from its cursor.
   */
  async list(app?: string): Promise<ProcessInfo[]> {
    const labels = [`deck.scope=${this.#scope}`, "deck.generation", ...(app ? [`deck.app=${app}`] : [])];
    const out: ProcessInfo[] = [];
    for (const c of await this.#client.listContainers(labels)) {
      const info = toProcessInfo(c);
      if (!info) continue;
      out.push(info);
      if (!this.#followers.has(info.id) && (c.running || c.restarting)) this.#follow(info.id, c);
    }
    return out.sort(byProcessOrder);
  }

  async stats(ids?: readonly string[]): Promise<ProcessStats[]> {
    const labels = [`deck.scope=${this.#scope}`, "deck.generation"];
    const out: ProcessStats[] = [];
    for (const c of await this.#client.listContainers(labels)) {
      const info = toProcessInfo(c);
      if (!info || !c.running || (ids && !ids.includes(info.id))) continue;
      const st = await this.#client.containerStats(c.id);
      if (st) out.push({ id: info.id, ...st });
    }
    return out;
  }

  /** Called when deck starts: the containers a previous run left are this runtime's from now on. */
  async adopt(): Promise<ProcessInfo[]> {
    return this.list();
  }

  /** Stops every process container (of one app, or all) in parallel. */
  async stopAll(graceMs: number, app?: string): Promise<void> {
    const processes = await this.list(app);
    await Promise.all(processes.map((p) => this.stop(p.id, graceMs)));
  }

  /**
   * Stops and removes every container of this deck: its processes (as stopAll) and any release command
   * a deck server stopped mid-deploy left behind. For `deck down`.
   */
  async stopEverything(graceMs: number): Promise<void> {
    await this.stopAll(graceMs);
    const oneOffs = await this.#client.listContainers([`deck.scope=${this.#scope}`, "deck.type=release"]);
    const seconds = Math.max(0, Math.ceil(graceMs / 1000));
    await Promise.all(oneOffs.map((c) => this.#client.stopContainer(c.id, seconds)));
    for (const c of oneOffs) await this.#client.removeContainer(c.id);
    const apps = new Set(oneOffs.map((c) => c.labels["deck.app"]).filter((app): app is string => app !== undefined));
    for (const app of apps) await this.#releaseNetwork(app);
  }

  /** Stops following logs (the containers keep running); for a deck server that is shutting down. */
  async close(): Promise<void> {
    const followers = [...this.#followers.values()];
    for (const f of followers) f.stop();
    await Promise.all(followers.map((f) => f.done));
  }

  /**
   * Streams a container's output into its app log, across restarts of the container, until it is gone.
   * The engine's timestamp of the last line written is kept in a cursor file: a later follower (after a
   * deck restart) asks only for what came after it.
   */
  #follow(id: string, container: ContainerInfo): void {
    const logFile = container.labels["deck.log"];
    const name = `${container.labels["deck.type"]}.${container.labels["deck.index"]}`;
    if (!logFile) return;
    const cursorFile = this.#cursorFile(id);
    let cursor = readCursor(cursorFile);
    let stopped = false;
    let current: Readable | undefined;
    const client = this.#client;

    const run = async () => {
      while (!stopped) {
        try {
          current = await client.followLogs(container.id, cursor === undefined ? undefined : sinceParameter(cursor));
        } catch {
          return; // the container is gone
        }
        // Stopped while the stream was being opened: nothing else would close it.
        if (stopped) {
          current.destroy();
          break;
        }
        await pumpLogs(current, (lines) => {
          const fresh = lines.filter((l) => {
            const t = timestampNanos(l.time);
            return t === undefined || cursor === undefined || t > cursor;
          });
          if (fresh.length === 0) return;
          appendLog(logFile, formatLines(fresh, name));
          const last = timestampNanos(fresh[fresh.length - 1].time);
          if (last !== undefined) {
            cursor = last;
            writeCursor(cursorFile, last);
          }
        });
        if (stopped) break;
        // The stream ends when the container stops; the engine may be about to restart it.
        // An engine that does not answer ends the follower as a gone container does; the cursor file
        // lets the next follower (after reconcile adopts the container) resume where this one stopped.
        const state = await client.inspectContainer(container.id).catch(() => undefined);
        if (!state || (!state.running && !state.restarting)) return;
        await sleep(state.restarting ? 250 : 50);
      }
    };
    const follower: Follower = {
      done: run().finally(() => {
        if (this.#followers.get(id) === follower) this.#followers.delete(id);
      }),
      stop() {
        stopped = true;
        current?.destroy();
      },
    };
    this.#followers.set(id, follower);
  }

  /**
   * Runs a one-off container (the Procfile `release:` step) from the release's image to completion,
   * streaming its output to `onLine` and the app log; past the timeout it is stopped.
   */
  async runOnce(spec: RunOnceSpec): Promise<RunOnceResult> {
    await this.#ready();
    const name = releaseContainerName(this.#scope, spec.app, spec.release, randomBytes(3).toString("hex"));
    const writeLog = (text: string) => appendLog(spec.logFile, text);

    writeLog(formatLogLine("deck", "release", `Running release command \`${spec.command}\``));
    const id = await this.#afterFailureReleasing(spec.app, () => this.#withAppLock(spec.app, async () => {
      const ctx = await this.#context(spec, await this.#ensureNetwork(spec.app));
      return this.#client.createContainer(name, releaseContainerBody(spec, ctx));
    }));
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#client.startContainer(id);
      const logs = await this.#client.followLogs(id);
      const output = pumpLogs(logs, (lines) => {
        writeLog(formatLines(lines, "release"));
        for (const l of lines) {
          try {
            spec.onLine(l.text);
          } catch {
            // a failing listener must not stop the command or lose the log
          }
        }
      });
      timer = setTimeout(() => {
        timedOut = true;
        writeLog(formatLogLine("deck", "release", `Release command timed out after ${spec.timeoutMs / 1000}s; stopping`));
        void this.#client.stopContainer(id, ONE_OFF_STOP_SECONDS).catch((e: unknown) => this.#log(`docker: stopping ${name} after its timeout failed: ${engineMessage(e)}`));
      }, spec.timeoutMs);
      const exitCode = await this.#client.waitContainer(id);
      await Promise.race([output, sleep(1000)]);
      logs.destroy();
      writeLog(formatLogLine("deck", "release", `Release command exited with status ${exitCode}`));
      return { exitCode, timedOut };
    } finally {
      clearTimeout(timer);
      await this.#client.removeContainer(id).catch((e: unknown) => this.#log(`docker: removing the finished ${name} failed: ${engineMessage(e)}`));
      await this.#releaseNetworkLogged(spec.app);
    }
  }
}

function shortImage(image: string): string {
  return image.startsWith("sha256:") ? image.slice(7, 19) : image;
}

function engineMessage(e: unknown): string {
  const err = e as { json?: { message?: string }; message?: string };
  return (err.json?.message ?? err.message ?? String(e)).split("\n")[0];
}

function readCursor(file: string): bigint | undefined {
  try {
    return BigInt(readFileSync(file, "utf8").trim());
  } catch {
    return undefined;
  }
}

function writeCursor(file: string, nanos: bigint): void {
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${nanos}\n`);
  } catch {
    // without a cursor a restarted deck repeats some lines; the app keeps running either way
  }
}
