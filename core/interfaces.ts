/**
 * The narrow interfaces the deploy pipeline uses to reach the builder, the runtime and the router.
 * Each runtime (process today; docker and kubernetes later) implements `Runtime`.
 */
import type { Procfile } from "./procfile.ts";

export type LineSink = (line: string) => void;

/**
 * The unprivileged identity an app's code runs as on the process runtime: its own uid and gid,
 * allocated by deck and stored with the app (no /etc/passwd entry). Every build step, release
 * command and app process of the app runs under it inside the sandbox (runtime/sandbox.ts).
 */
export interface SandboxIdentity {
  uid: number;
  gid: number;
}

// ---------- builder ----------
export interface BuildRequest {
  app: string;
  commitSha: string;
  /** Bare repository the commit lives in. */
  repoDir: string;
  /** Extra env for git so it can read objects still in the push quarantine. */
  gitEnv: Record<string, string>;
  /** A tar of the commit's tree, read instead of `repoDir` (a builder node has no repository). */
  sourceArchive?: string;
  /** Directory the finished artifact (slug) is written to; must not exist yet. */
  slugDir: string;
  /** Per-app cache directory kept between builds. */
  cacheDir: string;
  /** Config vars of the app, visible to the build. */
  env: Record<string, string>;
  /**
   * The app's `builder:set` choice, which beats detection: a buildpack name or "dockerfile".
   * Unset (or "auto") = detect from the repository.
   */
  builder?: string;
  timeoutMs: number;
  onLine: LineSink;
  signal?: AbortSignal;
  /** The app's sandbox identity: build steps run under it (process runtime). Unset = no sandbox (tests of the builder alone). */
  sandbox?: SandboxIdentity;
}

export type BuildResult =
  | {
      ok: true; buildpack: string; procfile: Procfile; sizeBytes: number; durationMs: number;
      /** Set when the build produced an image for the docker runtime (its id, also in IMAGE_REF_FILE). */
      image?: string;
    }
  | { ok: false; code: "no_buildpack" | "build_failed" | "timeout" | "cancelled" | "checkout_failed"; message: string; durationMs: number };

/**
 * A build for the docker runtime leaves this file in its artifact dir (`slugDir`), naming the image
 * to run: `{"image": "sha256:…", "tag": "deck/APP:build-ID", "appDir"?: "/app"}` (appDir: where the
 * artifact dir's content sits inside the image, for a packaged slug). Everything that starts a release passes
 * the artifact dir as `cwd`, so rollbacks and restarts find the image the same way they find a slug.
 */
export const IMAGE_REF_FILE = "deck-image.json";

// ---------- runtime ----------
export interface ProcessSpec {
  app: string;
  /** Release version the process runs (for display). */
  release: number;
  /**
   * The deployment that started the process. Restarts and scaling start a new generation of the
   * same release, so process ids are unique per generation: `${app}.g${generation}.${type}.${index}`.
   */
  generation: number;
  /** Process type from the Procfile (web, worker, ...). */
  type: string;
  /** 1-based index within the type (web.1, web.2). */
  index: number;
  command: string;
  cwd: string;
  env: Record<string, string>;
  /** Set for web processes: the PORT the process must listen on. */
  port?: number;
  /** With `port`: the address it is published on and routers reach it at (DECK_UPSTREAM_HOST); default 127.0.0.1. */
  host?: string;
  logFile: string;
  /** Docker runtime: the image to run; unset = the one named by IMAGE_REF_FILE in `cwd`. Other runtimes ignore it. */
  image?: string;
  /** Per-app limits; runtimes use their defaults (DECK_APP_MEMORY, DECK_APP_CPUS) when unset. */
  memoryBytes?: number;
  cpus?: number;
  /** The app's sandbox identity (process runtime): the process runs under it. Other runtimes ignore it. */
  sandbox?: SandboxIdentity;
}

export interface ProcessInfo {
  id: string; // `${app}.g${generation}.${type}.${index}`
  app: string;
  release: number;
  generation: number;
  type: string;
  index: number;
  port?: number;
  /** The address `port` was published on when the process started; unset = 127.0.0.1. */
  host?: string;
  /** Pid of the supervised app process, when running. */
  pid?: number;
  state: "starting" | "running" | "crashed" | "stopped";
  restarts: number;
  startedAt: string;
}

/** What a process uses, as the monitoring samples read it. */
export interface ProcessStats {
  id: string;
  /** CPU time used since the process started (all it forked included), in seconds; null when unknown. */
  cpuSeconds: number | null;
  /** Resident memory (no page cache), in bytes; null when unknown. */
  rssBytes: number | null;
  /** Its memory limit, in bytes; null when it has none deck knows of. */
  memoryLimitBytes: number | null;
}

export interface Runtime {
  start(spec: ProcessSpec): Promise<ProcessInfo>;
  /** SIGTERM, then SIGKILL after graceMs. Resolves when the process is gone. */
  stop(id: string, graceMs: number): Promise<void>;
  list(app?: string): Promise<ProcessInfo[]>;
  /** Runs a one-shot command (the Procfile `release:` step) to completion, streaming its output. */
  runOnce(spec: Omit<ProcessSpec, "type" | "index" | "port" | "host" | "generation"> & { timeoutMs: number; onLine: LineSink }): Promise<{ exitCode: number | null; timedOut: boolean }>;
  /** CPU and memory of the running processes (of `ids`, or all). */
  stats(ids?: readonly string[]): Promise<ProcessStats[]>;
}

// ---------- router ----------
export interface Route {
  app: string;
  hosts: string[];
  /** `127.0.0.1:PORT` of the live web processes; empty = app has no live release (503). */
  upstreams: string[];
  /** Per-app router behaviour; absent fields take the router's defaults. */
  settings?: RouteSettings;
}

/** What the router does for one app beyond forwarding (set with maintenance:*, limits:*, domains:*). */
export interface RouteSettings {
  /** Answer every request with the maintenance page (503) instead of forwarding. */
  maintenance?: boolean;
  /**
   * The app is starting and has no live process yet: requests wait (up to the router's pause
   * timeout) for the route to get upstreams instead of failing at once.
   */
  paused?: boolean;
  /** Token bucket per client IP: refill rate (requests per second; 0 = no limit) and bucket size. */
  rateLimitRps?: number;
  rateLimitBurst?: number;
  /** Largest request body accepted, in bytes (413 above it). */
  maxBodyBytes?: number;
  /** Plain-HTTP requests get a 308 to the same URL over HTTPS. */
  redirectHttps?: boolean;
  /** HTTPS responses carry Strict-Transport-Security. */
  hsts?: boolean;
  /**
   * Response bandwidth (> 0): all the app's responses through one router together get at most this
   * many body bytes per second, from a token bucket holding one second's worth (so a short response
   * goes out at full speed). Response heads are never delayed; WebSocket and other upgraded
   * connections are not limited. Each router counts on its own, so with several router nodes an app
   * may get this much through each. Absent = no limit. Billing sets it for Free orgs past their
   * bandwidth allowance (their traffic is slowed instead of billed).
   */
  bandwidthBytesPerSecond?: number;
}

export interface RouterControl {
  /** Replaces one app's route atomically; resolves once the router serves the new table. */
  setRoute(route: Route): Promise<void>;
  removeRoute(app: string): Promise<void>;
  /** Replaces the whole table (used at server start to reconcile). */
  replaceAll(routes: Route[]): Promise<void>;
  /** Requests currently in flight to an upstream. */
  inflight(upstream: string): Promise<number>;
  /**
   * With router nodes (`deck server --role router`): resolves once every live node serves the routes
   * set so far and has nothing in flight to `upstreams`, or at `deadline` (epoch ms). Absent = no nodes.
   */
  waitForNodes?(upstreams: string[], deadline: number): Promise<void>;
  /** Replaces every certificate the router serves over HTTPS; resolves once it serves them. */
  setCertificates(certs: ServedCertificate[]): Promise<void>;
  /** Answers `GET /.well-known/acme-challenge/TOKEN` with `keyAuthorization` (ACME HTTP-01, RFC 8555 §8.3). */
  setAcmeChallenge(token: string, keyAuthorization: string): Promise<void>;
  removeAcmeChallenge(token: string): Promise<void>;
  /** What the router serves for `app` right now, asked of the router itself; absent = cannot tell. */
  view?(app: string): Promise<RouterView>;
}

/** The router's own answer about one app: its route (null = none), or that it does not answer. */
export type RouterView = { answering: true; route: Route | null } | { answering: false; reason: string };

/** A certificate chain and its private key (PEM), served for the host names listed (`*.example.com` allowed). */
export interface ServedCertificate {
  hosts: string[];
  cert: string;
  key: string;
}
