import { mkdir, mkdtemp, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { BuildRequest, BuildResult, LineSink, Procfile, SandboxIdentity } from "../core/index.ts";
import { DeckError, isDeckError } from "../core/index.ts";
import {
  BuildStepError,
  describeNoBuildpack,
  selectBuildpack,
  formatDetail,
  formatHeader,
  isBuildStepError,
  readProcfile,
  type BuildContext,
  type RunOptions,
} from "../buildpacks/index.ts";
import { createBuildEnv } from "./build-env.ts";
import { buildDockerfileApp, buildSlugImage, DOCKERFILE_NEEDS_DOCKER, hasDockerfile, type ImageBuildLimits, type ImageEngine } from "./docker-build.ts";
import { checkoutCommit, validateCommitSha } from "./checkout.ts";
import { shortSha } from "./commands.ts";
import { loadSandboxHost, sandboxEnv } from "../runtime/sandbox.ts";
import { CAPTURE_MAX_BYTES, captureCommand, execCommand, type ExecOptions, type ExecResult, type ExecSandbox } from "./exec.ts";
import { createWorkDir, measureDir } from "./slug.ts";

type Failure = Extract<BuildResult, { ok: false }>;
type Built = { buildpack: string; procfile: Procfile; sizeBytes: number; image?: string };

/** How the built release will run; the pipeline's build call fixes these for the whole server. */
export interface BuildOptions {
  /** "docker": Dockerfile apps build with the engine and buildpack slugs are packaged into images. Default "process". */
  runtime?: "process" | "docker";
  /** The Docker engine (required for runtime "docker"). */
  engine?: ImageEngine;
  /** Image buildpack slugs are packaged onto (DECK_BASE_IMAGE). */
  baseImage?: string;
  /** Memory and CPUs of each RUN step of a Dockerfile build (the engine runs them outside deck's build cgroup). */
  imageBuildLimits?: ImageBuildLimits;
  /**
   * Directories a sandboxed build (`req.sandbox`) must never see, even where they lie under a directory
   * the sandbox binds: deck's data dir. The build's own work and cache dirs are bound on top.
   */
  hide?: string[];
}

/**
 * Checks out a commit, builds it with the first matching buildpack and leaves the result at
 * `req.slugDir`. The build happens in a scratch dir beside slugDir that is renamed into place only on
 * success, so slugDir exists exactly when the result is ok. Output streams through `req.onLine` as it
 * happens; failures are returned (the caller reports `message`), never printed here.
 */
export async function runBuild(req: BuildRequest, options: BuildOptions = {}): Promise<BuildResult> {
  const startedAt = performance.now();
  const elapsedMs = () => Math.round(performance.now() - startedAt);
  if (await pathExists(req.slugDir)) throw new Error(`runBuild: slugDir already exists: ${req.slugDir}`);

  const stop = createStopSignal(req.signal, req.timeoutMs);
  let workDir: string | undefined;
  try {
    validateCommitSha(req.commitSha);
    stop.signal.throwIfAborted();
    await mkdir(req.cacheDir, { recursive: true });
    // A sandboxed build sees one writable tree, so that hard links between its checkout and its cache
    // work (they cannot cross two bind mounts): the checkout is made inside the cache dir.
    workDir = req.sandbox ? await mkdtemp(join(req.cacheDir, ".build-")) : await createWorkDir(req.slugDir);
    await mkdir(dirname(req.slugDir), { recursive: true });

    const built = await buildSlug(req, workDir, stop.signal, options);
    if ("code" in built) return { ...built, durationMs: elapsedMs() };

    stop.signal.throwIfAborted();
    await moveIntoPlace(workDir, req.slugDir);
    workDir = undefined;
    const durationMs = elapsedMs();
    req.onLine(formatHeader(`Build succeeded in ${(durationMs / 1000).toFixed(1)}s`));
    return { ok: true, ...built, durationMs };
  } catch (e) {
    return { ...toFailure(e, stop.signal), durationMs: elapsedMs() };
  } finally {
    stop.dispose();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  }
}

/** The steps of a build, in order. Returns the no_buildpack failure; throws on every other one. */
async function buildSlug(req: BuildRequest, dir: string, signal: AbortSignal, options: BuildOptions): Promise<Built | Omit<Failure, "durationMs">> {
  const detail: LineSink = (line) => req.onLine(formatDetail(line));

  req.onLine(formatHeader(`Fetching commit ${shortSha(req.commitSha)}`));
  await checkoutCommit({ repoDir: req.repoDir, commitSha: req.commitSha, dir, gitEnv: req.gitEnv, sourceArchive: req.sourceArchive, signal, onLine: detail });
  signal.throwIfAborted();

  // `builder:set` beats detection: a named buildpack ignores a Dockerfile, "dockerfile" requires one.
  const detecting = !req.builder || req.builder === "auto";
  if (req.builder === "dockerfile" && !(await hasDockerfile(dir))) {
    throw new BuildStepError(`the app's builder is set to "dockerfile" but the repository has no Dockerfile: add one, or run builder:set APP auto`);
  }
  if (req.builder === "dockerfile" || (detecting && (await hasDockerfile(dir)))) return buildWithDockerfile(req, dir, signal, options);

  const pack = await selectBuildpack(dir, req.builder);
  if (!pack) return { ok: false, code: "no_buildpack", message: describeNoBuildpack() };
  req.onLine(formatHeader(`${pack.label} detected`));

  const sandbox = req.sandbox ? await enterSandbox(req, dir, options) : undefined;
  let env = createBuildEnv({ host: process.env, appEnv: req.env, cacheDir: req.cacheDir });
  // Without bwrap there is no private home: one in the cache dir is at least the app's own.
  if (sandbox) env = sandboxEnv(sandbox.host, sandbox.host.bwrap ? env : { ...env, HOME: join(req.cacheDir, ".home") });
  await pack.build(createContext({ dir, cacheDir: req.cacheDir, env, signal, onLine: req.onLine }, sandbox));
  signal.throwIfAborted();

  req.onLine(formatHeader("Discovering process types"));
  const procfile = await pack.release(dir);
  reportProcessTypes(procfile, await readProcfile(dir), detail);
  // The slug is the app's own: its processes (the same uid) read it, whatever deck wrote last.
  if (sandbox) await handOver(sandbox, signal);

  if (options.runtime !== "docker") return { buildpack: pack.name, procfile, sizeBytes: await measureDir(dir) };
  req.onLine(formatHeader(`Packaging the slug into an image FROM ${options.baseImage}`));
  const image = await buildSlugImage({
    engine: requireEngine(options), app: req.app, commitSha: req.commitSha, baseImage: requireBaseImage(options),
    dir, slugDir: req.slugDir, sandbox: req.sandbox, signal, onLine: req.onLine,
  });
  return { buildpack: pack.name, procfile, sizeBytes: image.sizeBytes, image: image.id };
}

/** A repository with a Dockerfile builds with the Docker engine; the process runtime cannot run the result. */
async function buildWithDockerfile(req: BuildRequest, dir: string, signal: AbortSignal, options: BuildOptions): Promise<Built> {
  if (options.runtime !== "docker") throw new BuildStepError(DOCKERFILE_NEEDS_DOCKER);
  req.onLine(formatHeader("Dockerfile detected: building the image"));
  const { image, procfile } = await buildDockerfileApp({
    engine: requireEngine(options), app: req.app, commitSha: req.commitSha, dir, slugDir: req.slugDir, env: req.env, limits: options.imageBuildLimits, signal, onLine: req.onLine,
  });
  req.onLine(formatHeader(`Built image ${image.tag} (${image.id.slice(7, 19)}, ${(image.sizeBytes / 1024 ** 2).toFixed(1)} MB)`));
  return { buildpack: "dockerfile", procfile, sizeBytes: image.sizeBytes, image: image.id };
}

function requireEngine(options: BuildOptions): ImageEngine {
  if (!options.engine) throw new Error("runBuild: the docker runtime needs options.engine");
  return options.engine;
}

function requireBaseImage(options: BuildOptions): string {
  if (!options.baseImage) throw new Error("runBuild: the docker runtime needs options.baseImage");
  return options.baseImage;
}

/**
 * How every build command runs once the checkout is done: as the app's uid, in the sandbox, with only
 * the app's cache dir (which holds the checkout, see runBuild) writable. The checkout itself was deck's
 * own step, as root, before this.
 */
async function enterSandbox(req: BuildRequest, dir: string, options: BuildOptions): Promise<BuildSandbox> {
  const host = await loadSandboxHost();
  if (!host.setpriv) throw new BuildStepError("builds run under the app's own uid, but setpriv is not installed on the deck host: install util-linux");
  if (dirname(dir) !== req.cacheDir) throw new Error(`runBuild: a sandboxed build's dir must lie in its cache dir: ${dir}`);
  return { host, spec: { identity: req.sandbox!, writable: [req.cacheDir], hide: options.hide }, handOver: req.cacheDir };
}

interface BuildSandbox extends ExecSandbox {
  /** The tree handed to the app's uid before each command. */
  handOver: string;
}

/**
 * Gives whatever in `dir` is not yet the app's (the checkout, files deck's buildpack code wrote as root
 * between two commands) to the app's uid. find and chown -h never follow a symlink, and no process of
 * the app runs while this does: each command's sandbox is gone before the next step.
 */
export function handOverArgv(dir: string, identity: SandboxIdentity): string[] {
  const { uid, gid } = identity;
  return ["find", dir, "(", "!", "-uid", String(uid), "-o", "!", "-gid", String(gid), ")", "-exec", "chown", "-h", `${uid}:${gid}`, "{}", "+"];
}

async function handOver(sandbox: BuildSandbox, signal: AbortSignal): Promise<void> {
  const r = await execCommand(handOverArgv(sandbox.handOver, sandbox.spec.identity), { cwd: "/", env: { PATH: "/usr/bin:/bin" }, signal });
  signal.throwIfAborted();
  if (r.exitCode !== 0) throw new Error(`handing ${sandbox.handOver} to uid ${sandbox.spec.identity.uid} failed: ${r.stderrTail.at(-1) ?? r.spawnError?.message ?? r.exitSignal}`);
}

type ContextOptions = Omit<BuildContext, "run" | "capture">;

/** `run` and `capture` start every command of a buildpack the same way: sandboxed when the build is. */
function createContext(opts: ContextOptions, sandbox?: BuildSandbox): BuildContext {
  const detail: LineSink = (line) => opts.onLine(formatDetail(line));
  const execOptions = async (runOpts: RunOptions): Promise<ExecOptions> => {
    if (sandbox) await handOver(sandbox, opts.signal);
    return { cwd: runOpts.cwd ?? opts.dir, env: { ...opts.env, ...runOpts.env }, signal: opts.signal, onLine: detail, sandbox };
  };
  return {
    ...opts,
    async run(argv, runOpts = {}) {
      const result = await execCommand(argv, await execOptions(runOpts));
      const name = checkEnded(argv, result, opts.signal);
      if (result.exitCode !== 0) throw new BuildStepError(`${name} failed with exit code ${result.exitCode}`);
    },
    async capture(argv, runOpts = {}) {
      const result = await captureCommand(argv, await execOptions(runOpts));
      if (result.stdoutOverflow) {
        opts.signal.throwIfAborted();
        throw new BuildStepError(`${describeCommand(argv)} printed more than ${CAPTURE_MAX_BYTES / 1024 ** 2} MiB, the most deck reads of its output`);
      }
      checkEnded(argv, result, opts.signal);
      return { exitCode: result.exitCode!, stdout: result.stdout, stderrTail: result.stderrTail };
    },
  };
}

/** Throws when the build stopped or the command did not run to an exit code; returns its short name. */
function checkEnded(argv: readonly string[], result: ExecResult, signal: AbortSignal): string {
  signal.throwIfAborted();
  const name = describeCommand(argv);
  if (result.spawnError) throw new BuildStepError(`${name} could not start (${result.spawnError.code ?? result.spawnError.message})`);
  if (result.exitCode === null) throw new BuildStepError(`${name} was killed by ${result.exitSignal}`);
  return name;
}

/** `npm ci --cache /x ...` -> `npm ci`: the command without its options, for one-line messages. */
function describeCommand(argv: readonly string[]): string {
  const words: string[] = [];
  for (const arg of argv) {
    if (arg.startsWith("-")) break;
    words.push(arg);
  }
  return words.join(" ");
}

function reportProcessTypes(procfile: Procfile, declared: Procfile | undefined, detail: LineSink): void {
  const fromProcfile = Object.keys(procfile).filter((t) => declared && t in declared && declared[t] === procfile[t]);
  const defaults = Object.keys(procfile).filter((t) => !fromProcfile.includes(t));
  if (fromProcfile.length > 0) detail(`Procfile declares types -> ${fromProcfile.join(", ")}`);
  if (defaults.length > 0) detail(`Default types for buildpack -> ${defaults.join(", ")}`);
}

/** setTimeout fires at once for delays past 2^31-1 ms; no build needs to run longer than ~24 days. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface StopSignal {
  signal: AbortSignal;
  dispose(): void;
}

/** One signal that fires on the caller's cancel or the build timeout, with the outcome as its reason. */
function createStopSignal(cancel: AbortSignal | undefined, timeoutMs: number): StopSignal {
  const controller = new AbortController();
  const onCancel = () => controller.abort(new DeckError("cancelled", "build cancelled"));
  const timer = setTimeout(() => {
    controller.abort(new DeckError("timeout", `build timed out after ${formatSeconds(timeoutMs)}`, { timeoutMs }));
  }, Math.min(timeoutMs, MAX_TIMER_MS));
  if (cancel?.aborted) onCancel();
  else cancel?.addEventListener("abort", onCancel, { once: true });
  return {
    signal: controller.signal,
    dispose() {
      clearTimeout(timer);
      cancel?.removeEventListener("abort", onCancel);
    },
  };
}

function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return Number.isInteger(s) ? `${s}s` : `${s.toFixed(1)}s`;
}

/** Maps what stopped a build to its result; an error that is not an expected outcome is rethrown. */
function toFailure(e: unknown, signal: AbortSignal): Omit<Failure, "durationMs"> {
  const reason: unknown = signal.reason;
  if (signal.aborted && isDeckError(reason) && (reason.code === "timeout" || reason.code === "cancelled")) {
    return { ok: false, code: reason.code, message: reason.message };
  }
  if (isBuildStepError(e)) return { ok: false, code: "build_failed", message: e.message };
  if (isDeckError(e) && e.code === "checkout_failed") return { ok: false, code: "checkout_failed", message: e.message };
  throw e;
}

/** Renames the finished build to `slugDir`; a cache dir on another filesystem than the slugs is copied over. */
async function moveIntoPlace(workDir: string, slugDir: string): Promise<void> {
  try {
    await rename(workDir, slugDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
    const r = await execCommand(["cp", "-a", "--", workDir, slugDir], { cwd: "/", env: { PATH: "/usr/bin:/bin" } });
    if (r.exitCode !== 0) throw new Error(`copying the build to ${slugDir} failed: ${r.stderrTail.at(-1) ?? r.spawnError?.message ?? r.exitSignal}`);
    await rm(workDir, { recursive: true, force: true });
  }
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
