import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { DeckError } from "../core/errors.ts";
import { IMAGE_REF_FILE, type ProcessInfo, type ProcessSpec, type Runtime } from "../core/interfaces.ts";
import { LogDemuxer, sinceParameter, timestampNanos, type ContainerCreateBody, type ContainerInfo, type DockerClient, type LogLine } from "./docker-client.ts";
import { processId } from "./process-runtime.ts";
import type { RunOnceResult, RunOnceSpec } from "./run-once.ts";
import { formatLogLine, sleep } from "./shim-lib.mjs";

/** The port every web container listens on; the host port the pipeline allocated is published onto it. */
export const CONTAINER_PORT = 5000;
/** How long stop() lets the log follower take in the last lines before the container is removed. */
const LOG_DRAIN_MS = 2000;
/** Between SIGTERM and SIGKILL when a one-off container runs past its timeout. */
const ONE_OFF_STOP_SECONDS = 2;

export interface DockerLimits {
  /** Memory limit per container, bytes (HostConfig.Memory); unset = none. */
  memoryBytes?: number;
  /** CPUs per container (HostConfig.NanoCpus = cpus × 10^9); unset = none. */
  cpus?: number;
}

export interface DockerRuntimeOptions extends DockerLimits {
  client: DockerClient;
  /** Where the log cursors live (one small file per container), so a restarted deck resumes each log. */
  stateDir: string;
  /**
   * Label value that marks this deck's containers (`deck.scope`): another deck, or a test, on the same
   * engine never sees or stops them. `scopeFor(dataDir)` gives one per data dir.
   */
  scope: string;
}

/** A `deck.scope` label value for a data dir. */
export function scopeFor(dataDir: string): string {
  return createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 16);
}

export function containerName(id: string): string {
  return `deck-${id}`;
}

/** The labels that tie a container to its app, release and process; `list()` reads processes back from them. */
export function processLabels(spec: ProcessSpec, scope: string): Record<string, string> {
  const labels: Record<string, string> = {
    "deck.scope": scope,
    "deck.id": processId(spec),
    "deck.app": spec.app,
    "deck.release": String(spec.release),
    "deck.generation": String(spec.generation),
    "deck.type": spec.type,
    "deck.index": String(spec.index),
    "deck.log": spec.logFile,
  };
  if (spec.port !== undefined) labels["deck.port"] = String(spec.port);
  if (spec.port !== undefined && spec.host !== undefined) labels["deck.host"] = spec.host;
  return labels;
}

/** PATH behind the slug's own entries in a packaged slug's container. */
export const CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * The process env inside a container. The pipeline's env names host paths: the artifact dir `cwd` (HOME,
 * a virtualenv's bin on PATH, …) and the host's PATH. Where the image holds the artifact dir's content
 * (`appDir`, a packaged slug) paths into it are mapped there and PATH keeps only those entries ahead of a
 * standard one; otherwise (a Dockerfile app) such values are dropped and the image's own apply.
 * PORT is the container port.
 */
export function containerEnv(env: Record<string, string>, cwd: string, port: number | undefined, appDir?: string): string[] {
  const inCwd = (p: string) => p === cwd || p.startsWith(`${cwd}/`);
  const out: string[] = [];
  for (const [key, value] of Object.entries(env)) {
    if (key === "PORT") continue;
    if (key === "PATH") {
      const own = appDir ? value.split(":").filter(inCwd).map((p) => appDir + p.slice(cwd.length)) : [];
      if (own.length > 0) out.push(`PATH=${[...own, CONTAINER_PATH].join(":")}`);
      continue;
    }
    if (value.includes(cwd)) {
      if (appDir) out.push(`${key}=${value.split(cwd).join(appDir)}`);
      continue;
    }
    out.push(`${key}=${value}`);
  }
  if (port !== undefined) out.push(`PORT=${CONTAINER_PORT}`);
  // docker-init (tini) then passes SIGTERM to the whole process group: the app under `sh -c` too.
  out.push("TINI_KILL_PROCESS_GROUP=1");
  return out;
}

/**
 * `sh -c COMMAND`; an empty command runs the image's own CMD (a Dockerfile app without a Procfile).
 * A simple command (no `;`, `&`, `|`, redirections, subshells or backquotes) is run with `exec`, so
 * the app replaces the shell: otherwise the shell, which dies of the group's SIGTERM at once, takes
 * the container down before the app has run its own SIGTERM handler.
 */
export function containerCmd(command: string): string[] | undefined {
  const trimmed = command.trim();
  if (trimmed === "") return undefined;
  return ["/bin/sh", "-c", /[;&|<>()`\n]/.test(trimmed) ? command : `exec ${trimmed}`];
}

function hostConfig(limits: DockerLimits): ContainerCreateBody["HostConfig"] {
  const config: ContainerCreateBody["HostConfig"] = {
    // Without an init, `sh -c` as pid 1 ignores SIGTERM and every stop waits for the timeout.
    Init: true,
    // The engine's log store is what `followLogs` reads, so it must be one the logs endpoint supports.
    LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
  };
  if (limits.memoryBytes !== undefined) config.Memory = limits.memoryBytes;
  if (limits.cpus !== undefined) config.NanoCpus = Math.round(limits.cpus * 1e9);
  return config;
}

/**
 * POST /containers/create body of one app process: its port published on `spec.host` only
 * (DECK_UPSTREAM_HOST, 127.0.0.1 by default), restarted by the engine.
 */
export function processContainerBody(spec: ProcessSpec, image: ImageRef, scope: string, limits: DockerLimits): ContainerCreateBody {
  const body: ContainerCreateBody = {
    Image: image.image,
    Env: containerEnv(spec.env, spec.cwd, spec.port, image.appDir),
    Labels: processLabels(spec, scope),
    HostConfig: { ...hostConfig(limits), RestartPolicy: { Name: "unless-stopped" } },
  };
  const cmd = containerCmd(spec.command);
  if (cmd) body.Cmd = cmd;
  if (spec.port !== undefined) {
    const port = `${CONTAINER_PORT}/tcp`;
    body.ExposedPorts = { [port]: {} };
    body.HostConfig.PortBindings = { [port]: [{ HostIp: spec.host ?? "127.0.0.1", HostPort: String(spec.port) }] };
  }
  return body;
}

export interface ImageRef {
  image: string;
  /** Where the artifact dir's content sits inside the image (a packaged slug). */
  appDir?: string;
}

/** The image a process runs: the spec's, else the one the build recorded in the artifact dir. */
export function resolveImage(spec: Pick<ProcessSpec, "image" | "cwd" | "app">): ImageRef {
  if (spec.image) return { image: spec.image };
  const file = join(spec.cwd, IMAGE_REF_FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new DeckError("image_missing", `${spec.app}: this release has no image (no ${file}); push again to build one for the docker runtime`, { file });
  }
  const ref = JSON.parse(text) as { image?: unknown; appDir?: unknown };
  if (typeof ref.image !== "string" || ref.image === "") throw new Error(`${file} names no image`);
  return typeof ref.appDir === "string" && ref.appDir.startsWith("/") ? { image: ref.image, appDir: ref.appDir } : { image: ref.image };
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
 * `deck-<process id>`, labelled with app/release/generation/type/index, its web port published on
 * one address only (127.0.0.1 unless DECK_UPSTREAM_HOST says otherwise), memory/CPU limits, restarted
 * by the engine on failure. Containers outlive the deck server; a new DockerRuntime finds them by
 * label and resumes streaming their logs into the app log where the last one stopped.
 */
export class DockerRuntime implements Runtime {
  readonly #client: DockerClient;
  readonly #stateDir: string;
  readonly #scope: string;
  readonly #limits: DockerLimits;
  readonly #followers = new Map<string, Follower>();

  constructor(options: DockerRuntimeOptions) {
    this.#client = options.client;
    this.#stateDir = resolve(options.stateDir);
    this.#scope = options.scope;
    this.#limits = { memoryBytes: options.memoryBytes, cpus: options.cpus };
  }

  #cursorFile(id: string): string {
    return join(this.#stateDir, `${id}.log-cursor`);
  }

  async start(spec: ProcessSpec): Promise<ProcessInfo> {
    const id = processId(spec);
    const name = containerName(id);
    const image = resolveImage(spec);
    const existing = await this.#client.inspectContainer(name);
    if (existing?.running) throw new DeckError("process_exists", `${id} is already running; stop it first`, { id });
    if (existing) await this.#client.removeContainer(name);
    mkdirSync(this.#stateDir, { recursive: true });
    rmSync(this.#cursorFile(id), { force: true });

    let containerId: string;
    try {
      containerId = await this.#client.createContainer(name, processContainerBody(spec, image, this.#scope, { memoryBytes: spec.memoryBytes ?? this.#limits.memoryBytes, cpus: spec.cpus ?? this.#limits.cpus }));
    } catch (e) {
      throw new DeckError("process_start_failed", `${id}: the container could not be created: ${engineMessage(e)}`, { id }, { cause: e });
    }
    try {
      await this.#client.startContainer(containerId);
    } catch (e) {
      await this.#client.removeContainer(containerId).catch(() => undefined);
      throw new DeckError("process_start_failed", `${id}: the container did not start: ${engineMessage(e)}`, { id }, { cause: e });
    }
    const info = await this.#client.inspectContainer(containerId);
    const started = info && toProcessInfo(info);
    if (!info || !started) throw new DeckError("process_start_failed", `${id}: the container disappeared right after it started`, { id });
    const what = spec.command.trim() === "" ? "its image's command" : `command \`${spec.command}\``;
    appendLog(spec.logFile, formatLogLine("deck", `${spec.type}.${spec.index}`, `Starting container ${name} (image ${shortImage(image.image)}) with ${what}`));
    this.#follow(id, info);
    return started;
  }

  async stop(id: string, graceMs: number): Promise<void> {
    const name = containerName(id);
    await this.#client.stopContainer(name, Math.max(0, Math.ceil(graceMs / 1000)));
    // The log stream ends with the container; let it write the last lines before they are deleted.
    const follower = this.#followers.get(id);
    if (follower) await Promise.race([follower.done, sleep(LOG_DRAIN_MS)]);
    follower?.stop();
    await this.#client.removeContainer(name);
    rmSync(this.#cursorFile(id), { force: true });
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

  /** Called when deck starts: the containers a previous run left are this runtime's from now on. */
  async adopt(): Promise<ProcessInfo[]> {
    return this.list();
  }

  /** Stops every process container (of one app, or all) in parallel. */
  async stopAll(graceMs: number, app?: string): Promise<void> {
    const processes = await this.list(app);
    await Promise.all(processes.map((p) => this.stop(p.id, graceMs)));
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
        if (stopped) break;
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
    const image = resolveImage(spec);
    const name = `deck-${spec.app}.release.v${spec.release}-${randomBytes(3).toString("hex")}`;
    const body: ContainerCreateBody = {
      Image: image.image,
      Env: containerEnv(spec.env, spec.cwd, undefined, image.appDir),
      Labels: { "deck.scope": this.#scope, "deck.app": spec.app, "deck.release": String(spec.release), "deck.type": "release" },
      HostConfig: { ...hostConfig(this.#limits), RestartPolicy: { Name: "no" } },
    };
    const cmd = containerCmd(spec.command);
    if (cmd) body.Cmd = cmd;
    const writeLog = (text: string) => appendLog(spec.logFile, text);

    writeLog(formatLogLine("deck", "release", `Running release command \`${spec.command}\``));
    const id = await this.#client.createContainer(name, body);
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
        void this.#client.stopContainer(id, ONE_OFF_STOP_SECONDS).catch(() => undefined);
      }, spec.timeoutMs);
      const exitCode = await this.#client.waitContainer(id);
      await Promise.race([output, sleep(1000)]);
      logs.destroy();
      writeLog(formatLogLine("deck", "release", `Release command exited with status ${exitCode}`));
      return { exitCode, timedOut };
    } finally {
      clearTimeout(timer);
      await this.#client.removeContainer(id).catch(() => undefined);
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
