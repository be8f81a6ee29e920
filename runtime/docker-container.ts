import { createHash } from "node:crypto";
import { closeSync, constants, openSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { DeckError } from "../core/errors.ts";
import { IMAGE_REF_FILE, type ProcessSpec, type SandboxIdentity } from "../core/interfaces.ts";
import type { ContainerCreateBody } from "./docker-client.ts";
import { processId } from "./process-runtime.ts";
import type { RunOnceSpec } from "./run-once.ts";

/**
 * The request bodies of deck's containers, built by pure functions. Every app container, web, worker
 * or release command, gets the same hardening: its app's own network, no capabilities, no new
 * privileges, a pids limit, memory and CPU limits, and a user that is not root.
 */

/** The port every web container listens on; the host port the pipeline allocated is published onto it. */
export const CONTAINER_PORT = 5000;
/** Processes (threads count) per container when DockerRuntimeOptions.pidsLimit is unset. */
export const DEFAULT_PIDS_LIMIT = 512;
/** "nobody": the user of an app container when the image names no user and the app has no sandbox identity. */
export const FALLBACK_USER = "65534:65534";

export interface DockerLimits {
  /** Memory limit per container, bytes (HostConfig.Memory); unset = none. */
  memoryBytes?: number;
  /** CPUs per container (HostConfig.NanoCpus = cpus × 10^9); unset = none. */
  cpus?: number;
  /** Processes and threads per container (HostConfig.PidsLimit); unset = DEFAULT_PIDS_LIMIT. */
  pidsLimit?: number;
}

export interface ImageRef {
  image: string;
  /** Where the artifact dir's content sits inside the image (a packaged slug). */
  appDir?: string;
}

/** Everything about a container that is not in the process spec. */
export interface ContainerContext {
  image: ImageRef;
  /** `deck.scope` label value. */
  scope: string;
  /** The app's network (see docker-network.ts). */
  network: string;
  /** `uid:gid` or the image's named user; see containerUser(). */
  user: string;
  limits: DockerLimits;
}

/** A `deck.scope` label value for a data dir. */
export function scopeFor(dataDir: string): string {
  return createHash("sha256").update(resolve(dataDir)).digest("hex").slice(0, 16);
}

/** A scope as it may appear in a container name (Docker allows `[a-zA-Z0-9][a-zA-Z0-9_.-]*`). */
function nameSafe(scope: string): string {
  return scope.replace(/[^A-Za-z0-9_.-]/g, "_");
}

/**
 * The container of process `id` of one deck: `deck-<scope>-<id>`. Container names are unique per
 * engine, so two decks on one engine (each with its own scope) may run the same app, type and index.
 * Containers started before names carried the scope are called `deck-<id>`; deck finds both by their
 * labels (`deck.scope`, `deck.id`), never by name.
 */
export function containerName(scope: string, id: string): string {
  return `deck-${nameSafe(scope)}-${id}`;
}

/** A one-off container of the app's release command; unique per run, scoped like containerName(). */
export function releaseContainerName(scope: string, app: string, release: number, suffix: string): string {
  return `deck-${nameSafe(scope)}-${app}.release.v${release}-${suffix}`;
}

/** Labels that find the containers of process `id` of one deck, whichever name they were started under. */
export function processFilter(scope: string, id: string): string[] {
  return [`deck.scope=${scope}`, `deck.id=${id}`];
}

/** Whether an image's USER means root: none declared, `root` or uid 0 (with or without a group). */
export function isRootUser(user: string): boolean {
  const name = user.trim().split(":")[0];
  return name === "" || name === "root" || name === "0";
}

/**
 * Who an app container runs as: the image's own user when it declares one that is not root (a
 * Dockerfile's USER; a packaged slug's image declares the app's uid), else the app's sandbox uid/gid,
 * else "nobody". Never root: a tenant's code with uid 0 shares it with the host's root.
 */
export function containerUser(imageUser: string, sandbox?: SandboxIdentity): string {
  if (!isRootUser(imageUser)) return imageUser.trim();
  return sandbox ? `${sandbox.uid}:${sandbox.gid}` : FALLBACK_USER;
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

function hostConfig(ctx: ContainerContext): ContainerCreateBody["HostConfig"] {
  const config: ContainerCreateBody["HostConfig"] = {
    // Without an init, `sh -c` as pid 1 ignores SIGTERM and every stop waits for the timeout.
    Init: true,
    // The engine's log store is what `followLogs` reads, so it must be one the logs endpoint supports.
    LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } },
    NetworkMode: ctx.network,
    // No capability is added back: apps listen on PORT (5000, above 1024, so no NET_BIND_SERVICE),
    // run as a non-root user that owns its files (no CHOWN, DAC_OVERRIDE, SETUID/SETGID), and the
    // init needs none to reap children and pass signals on.
    CapDrop: ["ALL"],
    // setuid binaries in an image cannot raise privileges again.
    SecurityOpt: ["no-new-privileges"],
    PidsLimit: ctx.limits.pidsLimit ?? DEFAULT_PIDS_LIMIT,
  };
  if (ctx.limits.memoryBytes !== undefined) config.Memory = ctx.limits.memoryBytes;
  if (ctx.limits.cpus !== undefined) config.NanoCpus = Math.round(ctx.limits.cpus * 1e9);
  return config;
}

/**
 * POST /containers/create body of one app process: its port published on `spec.host` only
 * (DECK_UPSTREAM_HOST, 127.0.0.1 by default), restarted by the engine.
 */
export function processContainerBody(spec: ProcessSpec, ctx: ContainerContext): ContainerCreateBody {
  const body: ContainerCreateBody = {
    Image: ctx.image.image,
    Env: containerEnv(spec.env, spec.cwd, spec.port, ctx.image.appDir),
    Labels: processLabels(spec, ctx.scope),
    User: ctx.user,
    HostConfig: { ...hostConfig(ctx), RestartPolicy: { Name: "unless-stopped" } },
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

/** POST /containers/create body of a release command: the same hardening, run once, no port. */
export function releaseContainerBody(spec: Pick<RunOnceSpec, "app" | "release" | "command" | "cwd" | "env">, ctx: ContainerContext): ContainerCreateBody {
  const body: ContainerCreateBody = {
    Image: ctx.image.image,
    Env: containerEnv(spec.env, spec.cwd, undefined, ctx.image.appDir),
    Labels: { "deck.scope": ctx.scope, "deck.app": spec.app, "deck.release": String(spec.release), "deck.type": "release" },
    User: ctx.user,
    HostConfig: { ...hostConfig(ctx), RestartPolicy: { Name: "no" } },
  };
  const cmd = containerCmd(spec.command);
  if (cmd) body.Cmd = cmd;
  return body;
}

/** The image a process runs: the spec's, else the one the build recorded in the artifact dir. */
export function resolveImage(spec: Pick<ProcessSpec, "image" | "cwd" | "app">): ImageRef {
  if (spec.image) return { image: spec.image };
  const file = join(spec.cwd, IMAGE_REF_FILE);
  let text: string;
  try {
    // The artifact dir was written by the app's own build: a link planted there is never followed.
    const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      text = readFileSync(fd, "utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    throw new DeckError("image_missing", `${spec.app}: this release has no image (no ${file}); push again to build one for the docker runtime`, { file });
  }
  const ref = JSON.parse(text) as { image?: unknown; appDir?: unknown };
  if (typeof ref.image !== "string" || ref.image === "") throw new Error(`${file} names no image`);
  return typeof ref.appDir === "string" && ref.appDir.startsWith("/") ? { image: ref.image, appDir: ref.appDir } : { image: ref.image };
}
