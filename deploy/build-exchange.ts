import { spawn } from "node:child_process";
import { timingSafeEqual } from "node:crypto";
import { mkdir, rename, rm } from "node:fs/promises";
import type http from "node:http";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import type { BuildResult, LineSink, Procfile } from "../core/index.ts";
import { gitArchiveArgv } from "../builder/index.ts";

/**
 * The deck server's side of a build that a builder node (`deck server --role builder`) runs for one
 * of its pushes. The builder node asks this server, at the URL and with the secret of the build's
 * `build_queue` entry, for the source, streams the build output back as it happens, then hands over the
 * artifact and the result:
 *
 *   GET  /internal/build-jobs/ID/source    a tar of the commit's tree (`git archive`)
 *   POST /internal/build-jobs/ID/output    the output lines, one JSON string per line, as they come
 *   PUT  /internal/build-jobs/ID/artifact  a tar of the finished slug, unpacked where a local build would leave it
 *   GET  /internal/build-jobs/ID/image?id=IMAGE  (Docker runtime) 200 when this server's engine has the image already
 *   PUT  /internal/build-jobs/ID/image     (Docker runtime) the image, as `docker save` writes it
 *   POST /internal/build-jobs/ID/result    the build's result, JSON
 *
 * Each request carries `Authorization: Bearer SECRET`; the secret exists only in this server's memory
 * and in the entry, so no one without deck's database can speak for a build.
 */

export const BUILD_EXCHANGE_PREFIX = "/internal/build-jobs/";

/** What the builder node reports when the build is over. */
export type RemoteBuildResult = BuildResult & { outOfMemory?: boolean };

export interface RemoteBuildSource {
  repoDir: string;
  gitEnv: Record<string, string>;
  commitSha: string;
  /** Each line of the build's output, as a local build's would go. */
  onLine: LineSink;
  /** Loads an image handed over by the builder into this server's engine (Docker runtime). */
  loadImage?: (tar: Readable) => Promise<void>;
  /** Whether this server's engine has the image already (a builder node on the same engine). */
  hasImage?: (id: string) => Promise<boolean>;
}

/** One push's build on a builder node, as this server sees it. */
export class RemoteBuild {
  private slugDir: string | null = null;
  private readyWaiters: Array<(dir: string | null) => void> = [];
  private artifact = false;
  private settle!: (r: RemoteBuildResult) => void;
  private readonly settled: Promise<RemoteBuildResult> = new Promise((r) => (this.settle = r));
  private over = false;

  /** `secret`: the one the builder node reads from the build's entry. */
  constructor(readonly id: number, readonly source: RemoteBuildSource, readonly secret: string) {}

  /** The build's row exists and its artifact goes to `slugDir`: the builder node may start. */
  ready(slugDir: string): void {
    this.slugDir = slugDir;
    for (const w of this.readyWaiters.splice(0)) w(slugDir);
  }

  /** Ends the build from this side (cancelled, the builder node lost); later requests are refused. */
  finish(result: RemoteBuildResult): void {
    if (this.over) return;
    this.over = true;
    this.settle(result);
    // A builder node waiting to start hears that it will not.
    for (const w of this.readyWaiters.splice(0)) w(null);
  }

  get finished(): boolean {
    return this.over;
  }

  get result(): Promise<RemoteBuildResult> {
    return this.settled;
  }

  /** The slug dir once the build may start; null when it is over first. */
  private async waitReady(): Promise<string | null> {
    if (this.over) return null;
    if (this.slugDir) return this.slugDir;
    return new Promise<string | null>((r) => this.readyWaiters.push(r));
  }

  /** Serves one request of the builder node (already authenticated). */
  async handle(part: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (this.over) return reply(res, 410, "this build is over");
    if (part === "source" && req.method === "GET") {
      if ((await this.waitReady()) === null) return reply(res, 410, "this build is over");
      return this.sendSource(res);
    }
    if (part === "output" && req.method === "POST") {
      const lines = createInterface({ input: req, crlfDelay: Infinity });
      for await (const raw of lines) {
        if (this.over) break;
        const line = parseLine(raw);
        if (line !== null) this.source.onLine(line);
      }
      return reply(res, 200, "ok");
    }
    if (part === "artifact" && req.method === "PUT") {
      const slugDir = await this.waitReady();
      if (slugDir === null) return reply(res, 410, "this build is over");
      // Cancelled while it arrived: the push is over, the artifact is not kept.
      await receiveSlug(req, slugDir, MAX_ARTIFACT_BYTES, () => this.over);
      if (this.over) return reply(res, 410, "this build is over");
      this.artifact = true;
      return reply(res, 200, "ok");
    }
    if (part === "image" && req.method === "GET") {
      const id = new URL(req.url ?? "/", "http://x").searchParams.get("id") ?? "";
      if (!/^sha256:[0-9a-f]{64}$/.test(id)) return reply(res, 400, "id: an image id (sha256:…)");
      return reply(res, (await this.source.hasImage?.(id)) ? 200 : 404, "");
    }
    if (part === "image" && req.method === "PUT") {
      if (!this.source.loadImage) return reply(res, 409, "this deck server does not run Docker");
      await this.source.loadImage(req);
      return reply(res, 200, "ok");
    }
    if (part === "result" && req.method === "POST") {
      const result = parseResult(await readSmall(req));
      if (!result) return reply(res, 400, "a build result is JSON with ok, and code and message when not ok");
      if (result.ok && !this.artifact) return reply(res, 409, "the artifact has not arrived");
      this.finish(result);
      return reply(res, 200, "ok");
    }
    return reply(res, 404, "unknown build exchange");
  }

  private sendSource(res: http.ServerResponse): Promise<void> {
    const { repoDir, gitEnv, commitSha } = this.source;
    const [cmd, ...args] = gitArchiveArgv(repoDir, commitSha);
    const git = spawn(cmd!, args, { env: { ...process.env, ...gitEnv }, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    git.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    res.writeHead(200, { "content-type": "application/x-tar" });
    git.stdout.pipe(res, { end: false });
    return new Promise((resolve) => {
      git.on("close", (code) => {
        // A cut-off body tells the builder node the source is incomplete: its tar fails, the build with it.
        if (code === 0) res.end();
        else res.destroy(new Error(`git archive exited with ${code}: ${stderr.trim()}`));
        resolve();
      });
      git.on("error", () => res.destroy());
    });
  }
}

function parseLine(raw: string): string | null {
  if (raw === "") return null;
  try {
    const v: unknown = JSON.parse(raw);
    return typeof v === "string" ? v : null;
  } catch {
    return null;
  }
}

function parseResult(text: string): RemoteBuildResult | null {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const durationMs = typeof v.durationMs === "number" ? v.durationMs : 0;
  if (v.ok === true) {
    if (typeof v.buildpack !== "string" || typeof v.sizeBytes !== "number" || typeof v.procfile !== "object" || v.procfile === null) return null;
    return { ok: true, buildpack: v.buildpack, procfile: v.procfile as Procfile, sizeBytes: v.sizeBytes, durationMs, ...(typeof v.image === "string" ? { image: v.image } : {}) };
  }
  const codes = ["no_buildpack", "build_failed", "timeout", "cancelled", "checkout_failed"] as const;
  const code = codes.find((c) => c === v.code);
  if (v.ok !== false || !code || typeof v.message !== "string") return null;
  return { ok: false, code, message: v.message, durationMs, outOfMemory: v.outOfMemory === true };
}

async function readSmall(req: http.IncomingMessage, limit = 1 << 20): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw new Error("build result too large");
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** The largest artifact taken (as sent: tar bytes; a sparse file counts at its full size). */
export const MAX_ARTIFACT_BYTES = 8 * 1024 ** 3;

/**
 * Unpacks the slug beside `slugDir` and renames it into place, so slugDir exists only complete. More
 * than `maxBytes` of archive fails it (a build cannot fill the disk every app shares); no file keeps a
 * setuid or setgid bit; nothing is kept once `over()`.
 */
async function receiveSlug(body: Readable, slugDir: string, maxBytes: number, over: () => boolean): Promise<void> {
  const partial = `${slugDir}.receiving`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  await mkdir(dirname(slugDir), { recursive: true });
  try {
    // Owners and modes as the builder node left them (the app's sandbox uid owns what the build wrote).
    const tar = spawn("tar", ["-x", "-f", "-", "-C", partial, "--numeric-owner", "--same-owner", "--same-permissions"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    tar.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    const done = new Promise<number | null>((resolve, reject) => {
      tar.on("close", resolve);
      tar.on("error", reject);
    });
    let received = 0;
    let tooLarge = false;
    body.on("data", (c: Buffer) => {
      received += c.length;
      if (received > maxBytes && !tooLarge) {
        tooLarge = true;
        body.unpipe(tar.stdin);
        tar.kill();
        body.resume();
      }
    });
    body.pipe(tar.stdin);
    body.on("error", () => tar.kill());
    tar.stdin.on("error", () => {});
    const code = await done;
    if (tooLarge) throw new Error(`the artifact is larger than ${maxBytes / 1024 ** 3} GiB`);
    if (code !== 0 || !body.readableEnded) throw new Error(`receiving the artifact failed: ${stderr.trim().split("\n").at(-1) || (body.readableEnded ? `tar exited with ${code}` : "the upload was cut off")}`);
    const strip = spawn("find", [partial, "-perm", "/6000", "-type", "f", "-exec", "chmod", "ug-s", "{}", "+"], { stdio: "ignore" });
    if ((await new Promise<number | null>((r) => strip.on("close", r))) !== 0) throw new Error("clearing setuid bits in the artifact failed");
    if (over()) return;
    await rename(partial, slugDir);
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
}

function reply(res: http.ServerResponse, status: number, message: string): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(`${message}\n`);
}

/** The builds of this server that builder nodes run, by their build_queue id. */
export class RemoteBuilds {
  private readonly builds = new Map<number, RemoteBuild>();

  add(build: RemoteBuild): void {
    this.builds.set(build.id, build);
  }

  remove(build: RemoteBuild): void {
    if (this.builds.get(build.id) === build) this.builds.delete(build.id);
  }

  /** Ends every build under way with `result` (the server is stopping). */
  finishAll(result: RemoteBuildResult): void {
    for (const b of this.builds.values()) b.finish(result);
  }

  /** Serves a request under BUILD_EXCHANGE_PREFIX: unknown builds 404, a wrong secret 401. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const m = /^\/internal\/build-jobs\/(\d{1,18})\/([a-z]+)$/.exec((req.url ?? "").split("?")[0]!);
    const build = m ? this.builds.get(Number(m[1])) : undefined;
    if (!m || !build) {
      req.resume();
      return reply(res, 404, "no such build on this deck server");
    }
    const given = Buffer.from(/^Bearer (\S+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "");
    const wanted = Buffer.from(build.secret);
    if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
      req.resume();
      return reply(res, 401, "wrong build secret");
    }
    try {
      await build.handle(m[2]!, req, res);
    } catch (e) {
      reply(res, 500, (e as Error).message.split("\n")[0]!);
    }
  }
}
