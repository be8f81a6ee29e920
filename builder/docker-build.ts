import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { IMAGE_REF_FILE, runnableTypes, type LineSink, type Procfile, type SandboxIdentity } from "../core/index.ts";
import { BuildStepError, formatDetail, readProcfile, readRepoFile, writeRepoFile } from "../buildpacks/index.ts";
import { buildNetworkBody, FALLBACK_USER, type NetworkCreateBody } from "../runtime/index.ts";

/**
 * Builds with the Docker engine: an app's own Dockerfile, or (under the docker runtime) a buildpack
 * slug packaged onto the base image. The engine is reached through `ImageEngine`, which the runtime's
 * Docker client satisfies; this folder never talks to dockerode itself.
 */

/** Query options of the Engine API's POST /build that deck sets. */
export interface ImageBuildOptions {
  t: string;
  buildargs?: Record<string, string>;
  labels?: Record<string, string>;
  forcerm?: boolean;
  /** The network RUN steps are attached to: a build network of deck's own (see buildNetworkBody). */
  networkmode?: string;
  /** Limits of each RUN step's container: bytes of memory (memswap equal = no swap), CPU quota per period (µs). */
  memory?: number;
  memswap?: number;
  cpuperiod?: number;
  cpuquota?: number;
}

/** What one build may use: the engine's RUN containers do not run in deck's build cgroup, so they get these. */
export interface ImageBuildLimits {
  memoryBytes?: number;
  cpus?: number;
}

const CPU_PERIOD_US = 100_000;

/** The build options that carry `limits` to every RUN step. */
export function limitOptions(limits: ImageBuildLimits = {}): Pick<ImageBuildOptions, "memory" | "memswap" | "cpuperiod" | "cpuquota"> {
  const out: Pick<ImageBuildOptions, "memory" | "memswap" | "cpuperiod" | "cpuquota"> = {};
  if (limits.memoryBytes !== undefined) {
    out.memory = limits.memoryBytes;
    out.memswap = limits.memoryBytes;
  }
  if (limits.cpus !== undefined) {
    out.cpuperiod = CPU_PERIOD_US;
    out.cpuquota = Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US));
  }
  return out;
}

/** A tar stream, or a directory sent as the context (its top-level .dockerignore applies). */
export type BuildContextSource = Readable | { context: string; src: string[] };

export interface ImageEngine {
  ping(): Promise<void>;
  /** Resolves with the engine's JSON-lines progress stream; a failed build still answers 200 with an `{"error"}` line. */
  buildImage(context: BuildContextSource, options: ImageBuildOptions, signal?: AbortSignal): Promise<Readable>;
  inspectImage(ref: string): Promise<{ id: string; size: number } | undefined>;
  /** Creates a network (an existing one of that name is fine). */
  createNetwork(body: NetworkCreateBody): Promise<void>;
  /** "in-use" while a container is still attached. */
  removeNetwork(name: string): Promise<"removed" | "gone" | "in-use">;
}

export interface BuiltImage {
  /** Image id (`sha256:…`): what releases run, immune to the tag moving. */
  id: string;
  tag: string;
  sizeBytes: number;
}

/** What a Dockerfile app under the process runtime is told. */
export const DOCKERFILE_NEEDS_DOCKER = "this app has a Dockerfile; deck runs Dockerfile apps with DECK_RUNTIME=docker";

/**
 * `deck/APP:build-ID-SCOPE`, ID being the artifact dir's name (the build's id) and SCOPE a hash of the
 * directory it lies in: two deck installations on one engine build apps of the same name with the same
 * build ids, and neither may overwrite (or remove) the other's image. The tag is read back from the
 * artifact (IMAGE_REF_FILE), never recomputed, so images tagged before keep working.
 */
export function imageTag(app: string, slugDir: string): string {
  const build = basename(slugDir).replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 100);
  const scope = createHash("sha256").update(dirname(slugDir)).digest("hex").slice(0, 12);
  return `deck/${app}:build-${build}-${scope}`;
}

/**
 * The config vars a Dockerfile build gets as build args: exactly those it declares with `ARG NAME`
 * (in any stage). Declaring an ARG is how an app marks a config var build-time; the others, secrets
 * included, never reach the build, and the engine has no unused build args to warn about.
 */
export function buildArgsFor(dockerfile: string, env: Record<string, string>): Record<string, string> {
  const declared = new Set<string>();
  // Backslash-continued lines are one instruction.
  for (const line of dockerfile.replace(/\\\r?\n/g, " ").split(/\r?\n/)) {
    const m = /^\s*ARG\s+(.+)$/i.exec(line);
    if (!m) continue;
    for (const word of m[1].trim().split(/\s+/)) {
      const name = /^([A-Za-z_][A-Za-z0-9_]*)(=|$)/.exec(word)?.[1];
      if (name) declared.add(name);
    }
  }
  const out: Record<string, string> = {};
  for (const name of declared) if (name in env) out[name] = env[name];
  return out;
}

/** Where a packaged slug lives in its image. */
export const SLUG_APP_DIR = "/app";

/**
 * The Dockerfile that packages a slug: the base image, the slug at /app owned by the app's user (it
 * may write there, as in its own directory on the process runtime), HOME there, and that user as the
 * image's USER: the app's sandbox uid/gid when deck allocated one, else "nobody". Never root.
 */
export function slugDockerfile(baseImage: string, sandbox?: SandboxIdentity): string {
  const user = sandbox ? `${sandbox.uid}:${sandbox.gid}` : FALLBACK_USER;
  return [`FROM ${baseImage}`, `COPY --chown=${user} app/ ${SLUG_APP_DIR}/`, `WORKDIR ${SLUG_APP_DIR}`, `ENV HOME=${SLUG_APP_DIR}`, `USER ${user}`, ""].join("\n");
}

/** tar of `contextDir/Dockerfile` plus `slugDir` as `app/` (symlink targets untouched), written to `out` ("-": standard output). */
export function slugContextArgv(contextDir: string, slugDir: string, out = "-"): string[] {
  return ["tar", "-c", "-f", out, "--owner=0", "--group=0", "--transform", "s,^\\.,app,S", "-C", contextDir, "Dockerfile", "-C", slugDir, "."];
}

/**
 * Process types of a Dockerfile app: its Procfile when that names a process to run, else one `web`
 * with an empty command, which the docker runtime reads as "the image's own CMD".
 */
export function dockerfileProcfile(declared: Procfile | undefined): Procfile {
  if (declared && runnableTypes(declared).length > 0) return declared;
  return { ...declared, web: "" };
}

export async function hasDockerfile(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).includes("Dockerfile");
  } catch {
    return false;
  }
}

/**
 * The image named in an artifact dir's IMAGE_REF_FILE, if the build made one. A packaged slug belongs to
 * the app's uid, so the file is read without following a link; one that is missing, a link or not
 * deck's JSON counts as no image.
 */
export async function readImageRef(slugDir: string): Promise<{ image: string; tag: string; appDir?: string } | undefined> {
  try {
    const text = await readRepoFile(slugDir, IMAGE_REF_FILE);
    if (text === undefined) return undefined;
    const ref = JSON.parse(text) as { image?: unknown; tag?: unknown; appDir?: unknown };
    if (typeof ref?.image !== "string" || typeof ref.tag !== "string" || (ref.appDir !== undefined && typeof ref.appDir !== "string")) return undefined;
    return ref as { image: string; tag: string; appDir?: string };
  } catch {
    return undefined;
  }
}

/** `appDir`: where the artifact dir's content sits in the image (a packaged slug), so host paths into it can be mapped. */
export async function writeImageRef(slugDir: string, image: BuiltImage, appDir?: string): Promise<void> {
  await writeRepoFile(slugDir, IMAGE_REF_FILE, `${JSON.stringify({ image: image.id, tag: image.tag, ...(appDir ? { appDir } : {}) })}\n`);
}

export interface ImageBuildRequest {
  engine: ImageEngine;
  context: BuildContextSource;
  tag: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  limits?: ImageBuildLimits;
  /** The network RUN steps join; unset = the engine's default bridge (a build without RUN steps). */
  network?: string;
  signal: AbortSignal;
  /** Every line of the engine's output, as it arrives. */
  onLine: LineSink;
}

/** Runs one build on the engine, streaming its output; a failed step throws BuildStepError with the engine's last error line. */
export async function buildImage(req: ImageBuildRequest): Promise<BuiltImage> {
  await checkEngine(req.engine);
  let stream: Readable;
  try {
    const options: ImageBuildOptions = { t: req.tag, buildargs: req.buildArgs, labels: req.labels, forcerm: true, ...limitOptions(req.limits) };
    if (req.network) options.networkmode = req.network;
    stream = await req.engine.buildImage(req.context, options, req.signal);
  } catch (e) {
    req.signal.throwIfAborted();
    throw new BuildStepError(`docker build could not start: ${engineMessage(e)}`);
  }
  const outcome = await readBuildStream(stream, req.onLine);
  req.signal.throwIfAborted();
  if (outcome.error) {
    // 137 = SIGKILL: with a memory limit set, the kernel's OOM killer is the usual sender.
    const hint = req.limits?.memoryBytes !== undefined && /non-zero code: 137$/.test(outcome.error)
      ? ` (killed: most likely over the build memory limit of ${Math.round(req.limits.memoryBytes / 1024 ** 2)} MB, DECK_BUILD_MEMORY)`
      : "";
    throw new BuildStepError(`docker build failed: ${outcome.error}${hint}`);
  }
  const info = await req.engine.inspectImage(outcome.id ?? req.tag);
  if (!info) throw new BuildStepError(`docker build finished but image ${req.tag} is not on the engine`);
  return { id: info.id, tag: req.tag, sizeBytes: info.size };
}

async function checkEngine(engine: ImageEngine): Promise<void> {
  await engine.ping().catch((e: unknown) => {
    throw new BuildStepError(`the Docker engine does not answer (${engineMessage(e)}); start dockerd or set DOCKER_HOST`);
  });
}

/**
 * Reads the engine's build output to its end. Text of `stream` messages is cut into lines across
 * messages (a RUN step's output arrives in arbitrary pieces); the last `{"error"}` is the outcome.
 */
export function readBuildStream(stream: Readable, onLine: LineSink): Promise<{ id?: string; error?: string }> {
  const decoder = new StringDecoder("utf8");
  const parser = new JsonLinesParser();
  let text = "";
  let id: string | undefined;
  let error: string | undefined;
  const emitText = (flush: boolean) => {
    const parts = text.split(/\r?\n/);
    text = flush ? "" : (parts.pop() ?? "");
    for (const line of parts) if (line.trim() !== "") onLine(formatDetail(line.trimEnd()));
  };
  const handle = (messages: Record<string, unknown>[]) => {
    for (const m of messages) {
      if (typeof m.stream === "string") text += m.stream;
      else if (typeof m.status === "string") text += `${m.status}${typeof m.progress === "string" ? ` ${m.progress}` : ""}\n`;
      const aux = m.aux as { ID?: unknown } | undefined;
      if (typeof aux?.ID === "string") id = aux.ID;
      if (typeof m.error === "string") {
        const lines = m.error.trim().split("\n");
        error = lines[lines.length - 1];
        text += `${m.error}\n`;
      }
    }
    emitText(false);
  };
  return new Promise((resolve) => {
    let done = false;
    const finish = (streamError?: Error) => {
      if (done) return;
      done = true;
      handle(parser.push(decoder.end()));
      handle(parser.flush());
      if (text !== "") emitText(true);
      if (streamError && !error) error = `the engine closed the build output (${streamError.message})`;
      resolve({ id, error });
    };
    stream.on("data", (chunk: Buffer | string) => handle(parser.push(typeof chunk === "string" ? chunk : decoder.write(chunk))));
    stream.once("end", () => finish());
    stream.once("close", () => finish());
    stream.once("error", (e) => finish(e));
  });
}

/** Splits a JSON-lines stream into objects; text that is not JSON is kept as a `stream` message. */
export class JsonLinesParser {
  #rest = "";

  push(chunk: string): Record<string, unknown>[] {
    const parts = (this.#rest + chunk).split("\n");
    this.#rest = parts.pop() ?? "";
    return parts.filter((p) => p.trim() !== "").map(parseMessage);
  }

  flush(): Record<string, unknown>[] {
    const rest = this.#rest;
    this.#rest = "";
    return rest.trim() === "" ? [] : [parseMessage(rest)];
  }
}

function parseMessage(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // not JSON: keep the text
  }
  return { stream: `${text}\n` };
}

function engineMessage(e: unknown): string {
  const err = e as { json?: { message?: string }; message?: string };
  return (err.json?.message ?? err.message ?? String(e)).split("\n")[0];
}

export interface DockerfileBuildRequest {
  engine: ImageEngine;
  app: string;
  commitSha: string;
  /** The checked-out source; on success it is emptied down to IMAGE_REF_FILE. */
  dir: string;
  slugDir: string;
  env: Record<string, string>;
  limits?: ImageBuildLimits;
  signal: AbortSignal;
  onLine: LineSink;
}

/**
 * Builds an app's own Dockerfile; the checkout is the build context. Its RUN steps run on a network
 * of their own, made for this build and removed after it: deck's host firewall covers it (no
 * connection to the host's services), and no other app's container is on it.
 */
export async function buildDockerfileApp(req: DockerfileBuildRequest): Promise<{ image: BuiltImage; procfile: Procfile }> {
  // deck reads it (for its ARG lines) as root: a Dockerfile committed as a link is refused, never followed.
  const dockerfile = await readRepoFile(req.dir, "Dockerfile");
  if (dockerfile === undefined) throw new BuildStepError("the repository has no Dockerfile in its root");
  // The engine's client reads .dockerignore by path (following a link) to choose what it sends: refuse a link first.
  await readRepoFile(req.dir, ".dockerignore");
  const procfile = dockerfileProcfile(await readProcfile(req.dir));
  await checkEngine(req.engine);
  const network = buildNetworkBody(req.app);
  try {
    await req.engine.createNetwork(network);
  } catch (e) {
    throw new BuildStepError(`docker build could not start: its network could not be created (${engineMessage(e)})`);
  }
  let image: BuiltImage;
  try {
    image = await buildImage({
      engine: req.engine,
      context: { context: req.dir, src: await readdir(req.dir) },
      tag: imageTag(req.app, req.slugDir),
      buildArgs: buildArgsFor(dockerfile, req.env),
      labels: { "deck.app": req.app, "deck.commit": req.commitSha },
      limits: req.limits,
      network: network.Name,
      signal: req.signal,
      onLine: req.onLine,
    });
  } finally {
    await removeBuildNetwork(req.engine, network.Name);
  }
  // The image is the artifact: the source it was built from is not kept.
  for (const entry of await readdir(req.dir)) await rm(join(req.dir, entry), { recursive: true, force: true });
  await writeImageRef(req.dir, image);
  return { image, procfile };
}

/**
 * Removes a build's network. The engine removes the last RUN container just before the build output
 * ends, and may still hold its endpoint for a moment: a network still in use is tried again shortly.
 */
async function removeBuildNetwork(engine: ImageEngine, name: string): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    // An engine error is tried again like a network in use; still failing, the error below says what to do.
    const outcome = await engine.removeNetwork(name).catch(() => "in-use" as const);
    if (outcome !== "in-use") return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new BuildStepError(`the build's network ${name} is still in use after the build; remove it with docker network rm ${name}`);
}

export interface SlugImageRequest {
  engine: ImageEngine;
  app: string;
  commitSha: string;
  baseImage: string;
  /** The app's uid/gid: the slug belongs to it and the image runs as it. Unset = "nobody" (65534). */
  sandbox?: SandboxIdentity;
  /** The built slug; IMAGE_REF_FILE is added to it. */
  dir: string;
  slugDir: string;
  signal: AbortSignal;
  onLine: LineSink;
}

/** Packages a buildpack slug into an image FROM the base image, for the docker runtime. */
export async function buildSlugImage(req: SlugImageRequest): Promise<BuiltImage> {
  await checkEngine(req.engine);
  if (!(await req.engine.inspectImage(req.baseImage))) {
    throw new BuildStepError(`base image ${req.baseImage} is not on the Docker engine; build or load it there, or set DECK_BASE_IMAGE`);
  }
  const contextDir = await mkdtemp(join(dirname(req.slugDir), ".image-context-"));
  try {
    await writeFile(join(contextDir, "Dockerfile"), slugDockerfile(req.baseImage, req.sandbox));
    // The archive is packed whole into a file first (tar's exit status known, its size sent up front),
    // then sent. Now and then, on a busy machine, the engine still answers that it found no Dockerfile
    // in it: the same archive is sent again after a pause, a few times, for that answer only.
    const archive = await packSlugArchive(contextDir, req.dir);
    for (let attempt = 1; ; attempt++) {
      try {
        return await sendSlugImage(req, archive);
      } catch (e) {
        const missing = e instanceof Error && /Cannot locate specified Dockerfile/.test(e.message);
        if (!missing || req.signal.aborted || attempt >= SLUG_SEND_ATTEMPTS) throw e;
        req.onLine(`       (the Docker engine did not see the image's Dockerfile in the ${Math.round(archive.bytes / 1024)} KiB archive; sending it again)`);
        await new Promise((r) => setTimeout(r, 2000 * attempt));
      }
    }
  } finally {
    await rm(contextDir, { recursive: true, force: true });
  }
}

/** How many times a slug's archive is sent to an engine that answers it found no Dockerfile in it. */
const SLUG_SEND_ATTEMPTS = 3;

/** Packs the Dockerfile in `contextDir` and the slug under app/ into `contextDir`/context.tar. */
async function packSlugArchive(contextDir: string, slugDir: string): Promise<{ path: string; bytes: number }> {
  const path = join(contextDir, "context.tar");
  const [cmd, ...args] = slugContextArgv(contextDir, slugDir, path);
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    // tar names only the Dockerfile of contextDir, so the archive it writes there is not packed into itself.
    const tar = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    tar.stderr.on("data", (c) => (stderr += c));
    tar.once("error", (e) => resolve({ code: null, stderr: stderr + e.message }));
    tar.once("close", (code) => resolve({ code, stderr }));
  });
  if (code !== 0) throw new BuildStepError(`packing the slug for the image failed: ${stderr.trim() || `tar exited with ${code}`}`);
  return { path, bytes: (await stat(path)).size };
}

/** Sends a packed slug archive to the engine and builds its image. */
async function sendSlugImage(req: SlugImageRequest, archive: { path: string }): Promise<BuiltImage> {
  const image = await buildImage({
    engine: req.engine,
    context: createReadStream(archive.path),
    tag: imageTag(req.app, req.slugDir),
    labels: { "deck.app": req.app, "deck.commit": req.commitSha },
    signal: req.signal,
    onLine: req.onLine,
  });
  await writeImageRef(req.dir, image, SLUG_APP_DIR);
  return image;
}

