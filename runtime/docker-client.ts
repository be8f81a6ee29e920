import type { Readable } from "node:stream";
import Docker from "dockerode";
import type { NetworkCreateBody } from "./docker-network.ts";

/**
 * The part of the Docker Engine API deck uses (https://docs.docker.com/engine/api/v1.41/), behind one
 * small interface so that nothing else imports dockerode. Request bodies use the Engine API's own
 * field names; errors for a missing object become `undefined` or a no-op where that is what the caller
 * means ("stop a container that is already gone").
 */

/** POST /containers/create body (the fields deck sets). */
export interface ContainerCreateBody {
  Image: string;
  Cmd?: string[];
  Env: string[];
  Labels: Record<string, string>;
  /** `uid:gid` (or a user the image names) the container's processes run as. */
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  HostConfig: {
    /** A user-defined network's name puts the container on it (and on no other). */
    NetworkMode?: string;
    SecurityOpt?: string[];
    CapDrop?: string[];
    CapAdd?: string[];
    PidsLimit?: number;
    PortBindings?: Record<string, { HostIp: string; HostPort: string }[]>;
    Memory?: number;
    NanoCpus?: number;
    RestartPolicy?: { Name: "no" | "on-failure" | "unless-stopped" | "always"; MaximumRetryCount?: number };
    Init?: boolean;
    LogConfig?: { Type: string; Config: Record<string, string> };
    AutoRemove?: boolean;
  };
}

/** What deck reads back about a container (GET /containers/{id}/json). */
export interface ContainerInfo {
  id: string;
  name: string;
  labels: Record<string, string>;
  /** created | restarting | running | removing | paused | exited | dead */
  status: string;
  running: boolean;
  restarting: boolean;
  pid: number;
  exitCode: number;
  restartCount: number;
  startedAt: string;
  createdAt: string;
}

export interface ImageInfo {
  id: string;
  size: number;
  labels: Record<string, string>;
  /** The image's USER (`Config.User`); "" when it declares none (the engine then runs it as root). */
  user: string;
}

export interface NetworkInfo {
  id: string;
  name: string;
  labels: Record<string, string>;
}

/** Query options of POST /build that deck sets. */
export interface ImageBuildOptions {
  /** Repository:tag given to the result. */
  t: string;
  buildargs?: Record<string, string>;
  labels?: Record<string, string>;
  /** Remove intermediate containers even after a failed step. */
  forcerm?: boolean;
  /** The network RUN steps are attached to (a user-defined network's name). */
  networkmode?: string;
  /** Limits of each RUN step's container. */
  memory?: number;
  memswap?: number;
  cpuperiod?: number;
  cpuquota?: number;
}

/** A tar stream, or a directory sent as the build context (its top-level .dockerignore applies). */
export type BuildContextSource = Readable | { context: string; src: string[] };

export interface DockerClient {
  /** Resolves when the engine answers; rejects with the reason otherwise. */
  ping(): Promise<void>;
  /** Starts a build; the answer is the engine's JSON-lines progress stream (a failed build still answers 200). */
  buildImage(context: BuildContextSource, options: ImageBuildOptions, signal?: AbortSignal): Promise<Readable>;
  inspectImage(ref: string): Promise<ImageInfo | undefined>;
  removeImage(ref: string): Promise<void>;
  createContainer(name: string, body: ContainerCreateBody): Promise<string>;
  startContainer(id: string): Promise<void>;
  /** SIGTERM, then SIGKILL after `timeoutSeconds`; a container that is gone or already stopped is fine. */
  stopContainer(id: string, timeoutSeconds: number): Promise<void>;
  /** Removes a container, stopping it at once if it still runs; a missing one is fine. */
  removeContainer(id: string): Promise<void>;
  inspectContainer(idOrName: string): Promise<ContainerInfo | undefined>;
  /** Containers (running or not) carrying every one of `labels` (`key` or `key=value`). */
  listContainers(labels: string[]): Promise<ContainerInfo[]>;
  /** Resolves with the exit code once the container has stopped. */
  waitContainer(id: string): Promise<number>;
  /**
   * Followed log stream in the engine's multiplexed format with timestamps (see `LogDemuxer`), from
   * `since` (UNIX seconds with a fraction, as a string) or the beginning. It ends when the container stops.
   */
  followLogs(id: string, since?: string): Promise<Readable>;
  /** Creates a network; one that already exists under that name is fine (a concurrent create). */
  createNetwork(body: NetworkCreateBody): Promise<void>;
  inspectNetwork(idOrName: string): Promise<NetworkInfo | undefined>;
  /** Removes a network: "removed", "gone" (it did not exist) or "in-use" (containers still on it). */
  removeNetwork(idOrName: string): Promise<"removed" | "gone" | "in-use">;
  /** Networks carrying every one of `labels` (`key` or `key=value`). */
  listNetworks(labels: string[]): Promise<NetworkInfo[]>;
  /** CPU and memory of a running container (the engine's one-shot stats); undefined when it is gone. */
  containerStats(id: string): Promise<{ cpuSeconds: number | null; rssBytes: number | null; memoryLimitBytes: number | null } | undefined>;
  /** The image and its tag as one tar (`docker save`), to hand to another engine. */
  saveImage(ref: string): Promise<Readable>;
  /** Loads a `docker save` tar (`docker load`); rejects with the engine's message when it refuses it. */
  loadImage(tar: Readable): Promise<void>;
}

export interface DockerClientOptions {
  /** Engine address; unset = DOCKER_HOST, else the default socket /var/run/docker.sock. */
  socketPath?: string;
}

function statusOf(e: unknown): number | undefined {
  return typeof e === "object" && e !== null && "statusCode" in e ? Number((e as { statusCode: unknown }).statusCode) : undefined;
}

function ignoreStatus(...codes: number[]) {
  return (e: unknown): undefined => {
    if (codes.includes(statusOf(e) ?? -1)) return undefined;
    throw e;
  };
}

function toContainerInfo(c: Docker.ContainerInspectInfo): ContainerInfo {
  return {
    id: c.Id,
    name: c.Name.replace(/^\//, ""),
    labels: c.Config.Labels ?? {},
    status: c.State.Status,
    running: c.State.Running,
    restarting: c.State.Restarting,
    pid: c.State.Pid,
    exitCode: c.State.ExitCode,
    restartCount: c.RestartCount,
    startedAt: c.State.StartedAt,
    createdAt: c.Created,
  };
}

/** The dockerode-backed client; DOCKER_HOST (or the default socket) names the engine. */
export function createDockerClient(options: DockerClientOptions = {}): DockerClient {
  const docker = options.socketPath ? new Docker({ socketPath: options.socketPath }) : new Docker();
  return {
    async ping() {
      await docker.ping();
    },
    async buildImage(context, buildOptions, signal) {
      return (await docker.buildImage(context, { ...buildOptions, abortSignal: signal })) as unknown as Readable;
    },
    async inspectImage(ref) {
      const info = await docker.getImage(ref).inspect().catch(ignoreStatus(404));
      return info ? { id: info.Id, size: info.Size, labels: info.Config?.Labels ?? {}, user: info.Config?.User ?? "" } : undefined;
    },
    async removeImage(ref) {
      await docker.getImage(ref).remove({ force: true }).catch(ignoreStatus(404));
    },
    async containerStats(id) {
      type Stats = { cpu_stats?: { cpu_usage?: { total_usage?: number } }; memory_stats?: { usage?: number; limit?: number; stats?: Record<string, number> } };
      const stats = docker.getContainer(id).stats({ stream: false, "one-shot": true } as never) as unknown as Promise<Stats>;
      const st = await stats.catch(ignoreStatus(404, 409));
      if (!st) return undefined;
      const total = st.cpu_stats?.cpu_usage?.total_usage;
      const m = st.memory_stats;
      // cgroup v1 reports total_rss, v2 anon: the app's own memory, without page cache.
      const rss = m?.stats?.total_rss ?? m?.stats?.rss ?? m?.stats?.anon;
      return {
        cpuSeconds: typeof total === "number" ? total / 1e9 : null,
        rssBytes: typeof rss === "number" ? rss : null,
        memoryLimitBytes: typeof m?.limit === "number" && m.limit > 0 && m.limit < 2 ** 60 ? m.limit : null,
      };
    },
    async saveImage(ref) {
      return (await docker.getImage(ref).get()) as unknown as Readable;
    },
    async loadImage(tar) {
      const res = (await docker.loadImage(tar, { quiet: true })) as unknown as Readable;
      // The engine answers 200 and reports a refused archive in the JSON lines that follow.
      let text = "";
      for await (const c of res as AsyncIterable<Buffer>) text = (text + c.toString()).slice(-8000);
      const error = text.split("\n").map((l) => {
        try {
          return (JSON.parse(l) as { error?: string }).error;
        } catch {
          return undefined;
        }
      }).find((e) => e);
      if (error) throw new Error(`docker load: ${error}`);
    },
    async createContainer(name, body) {
      const container = await docker.createContainer({ name, ...body } as Docker.ContainerCreateOptions);
      return container.id;
    },
    async startContainer(id) {
      await docker.getContainer(id).start().catch(ignoreStatus(304));
    },
    async stopContainer(id, timeoutSeconds) {
      await docker.getContainer(id).stop({ t: timeoutSeconds }).catch(ignoreStatus(304, 404));
    },
    async removeContainer(id) {
      // 409: a removal already in progress (another stop raced this one).
      await docker.getContainer(id).remove({ force: true }).catch(ignoreStatus(404, 409));
    },
    async inspectContainer(idOrName) {
      const info = await docker.getContainer(idOrName).inspect().catch(ignoreStatus(404));
      return info ? toContainerInfo(info) : undefined;
    },
    async listContainers(labels) {
      const summaries = await docker.listContainers({ all: true, filters: { label: labels } });
      const infos = await Promise.all(summaries.map((s) => docker.getContainer(s.Id).inspect().catch(ignoreStatus(404))));
      return infos.filter((i): i is Docker.ContainerInspectInfo => i !== undefined).map(toContainerInfo);
    },
    async waitContainer(id) {
      const result = (await docker.getContainer(id).wait()) as { StatusCode: number };
      return result.StatusCode;
    },
    async followLogs(id, since) {
      const opts = { follow: true as const, stdout: true, stderr: true, timestamps: true, ...(since ? { since } : {}) };
      return (await docker.getContainer(id).logs(opts as Docker.ContainerLogsOptions & { follow: true })) as unknown as Readable;
    },
    async createNetwork(body) {
      // 409: CheckDuplicate found one of that name, created meanwhile by another start.
      await docker.createNetwork(body).catch(ignoreStatus(409));
    },
    async inspectNetwork(idOrName) {
      const info = (await docker.getNetwork(idOrName).inspect().catch(ignoreStatus(404))) as Docker.NetworkInspectInfo | undefined;
      return info ? { id: info.Id, name: info.Name, labels: info.Labels ?? {} } : undefined;
    },
    async removeNetwork(idOrName) {
      try {
        await docker.getNetwork(idOrName).remove();
        return "removed";
      } catch (e) {
        if (statusOf(e) === 404) return "gone";
        // 403 "has active endpoints" (20.10); 409 on some engine versions.
        if (statusOf(e) === 403 || statusOf(e) === 409) return "in-use";
        throw e;
      }
    },
    async listNetworks(labels) {
      const networks = await docker.listNetworks({ filters: { label: labels } });
      return networks.map((n) => ({ id: n.Id, name: n.Name, labels: n.Labels ?? {} }));
    },
  };
}

/** One line a container wrote, with the engine's timestamp. */
export interface LogLine {
  stream: "stdout" | "stderr";
  /** RFC 3339 with nanoseconds, as the engine wrote it. */
  time: string;
  text: string;
}

const HEADER_BYTES = 8;
const MAX_PARTIAL_LINE = 64 * 1024;

/**
 * Splits the engine's multiplexed log stream (8-byte frame headers: stream type, 3 zero bytes, payload
 * length big-endian) into lines, each with the timestamp the engine prefixed it with. A line longer than
 * the engine's 16 KiB message size arrives as several messages without newlines; they are joined again.
 */
export class LogDemuxer {
  #buffer: Buffer = Buffer.alloc(0);
  #partial: Record<"stdout" | "stderr", string> = { stdout: "", stderr: "" };

  push(chunk: Buffer): LogLine[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const out: LogLine[] = [];
    while (this.#buffer.length >= HEADER_BYTES) {
      const size = this.#buffer.readUInt32BE(4);
      if (this.#buffer.length < HEADER_BYTES + size) break;
      const stream = this.#buffer[0] === 2 ? "stderr" : "stdout";
      const payload = this.#buffer.subarray(HEADER_BYTES, HEADER_BYTES + size).toString("utf8");
      this.#buffer = this.#buffer.subarray(HEADER_BYTES + size);
      out.push(...this.#lines(stream, payload));
    }
    return out;
  }

  /** One frame is one log message: `TIMESTAMP text`, ending in a newline unless the engine split a long line. */
  #lines(stream: "stdout" | "stderr", payload: string): LogLine[] {
    const space = payload.indexOf(" ");
    const time = space > 0 ? payload.slice(0, space) : "";
    const parts = (this.#partial[stream] + (space > 0 ? payload.slice(space + 1) : payload)).split("\n");
    this.#partial[stream] = parts.pop() ?? "";
    if (this.#partial[stream].length > MAX_PARTIAL_LINE) {
      parts.push(this.#partial[stream]);
      this.#partial[stream] = "";
    }
    return parts.map((text) => ({ stream, time, text: text.endsWith("\r") ? text.slice(0, -1) : text }));
  }
}

/** Nanoseconds since the epoch of an engine timestamp (`2024-05-01T12:00:00.123456789Z`); undefined if unreadable. */
export function timestampNanos(time: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(time);
  if (!m) return undefined;
  const seconds = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(seconds)) return undefined;
  return BigInt(seconds) * 1_000_000n + BigInt((m[2] ?? "").padEnd(9, "0"));
}

/** The `since` parameter of the logs endpoint for a nanosecond time: `SECONDS.NANOS`. */
export function sinceParameter(nanos: bigint): string {
  return `${nanos / 1_000_000_000n}.${String(nanos % 1_000_000_000n).padStart(9, "0")}`;
}
