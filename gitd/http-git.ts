import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { failedSignIns } from "../core/audit-throttle.ts";
import { isDeckError } from "../core/index.ts";
import { callerFor, refusalFor, type Caller, type DeployDeps } from "../ops/index.ts";
import { audit, findUserById, hashToken, usePersonalToken, type AppRow } from "../store/queries/index.ts";
import { resolveGitTarget } from "./git-access.ts";
import { abandonGit, gitServiceArgv, spawnGit, type GitService } from "./git-process.ts";
import { parseGitHttpRequest } from "./git-url.ts";
import { pktLine, PushMeter, pushTooLargeLine, refusalResponse } from "./push-request.ts";
import type { PushRegistry } from "./push-registry.ts";
import { finishPush } from "./repo-size.ts";

export { pktLine };

function plain(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers });
  res.end(`${message}\n`);
}

/**
 * Smart HTTP git (git's http-protocol docs) under /git/APP.git: every request, including the POST
 * that carries a pack, is authenticated with HTTP basic auth whose password is an API token.
 */
export async function handleGitHttp(deps: DeployDeps, pushes: PushRegistry, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const parsed = parseGitHttpRequest(req.method ?? "GET", req.url ?? "/");
  if (!parsed.ok) return plain(res, parsed.status, parsed.message, parsed.headers);
  const { service, endpoint } = parsed;
  const encoding = req.headers["content-encoding"];
  if (encoding !== undefined && encoding !== "gzip" && encoding !== "identity") {
    return plain(res, 400, `deck: unsupported Content-Encoding ${JSON.stringify(encoding.slice(0, 20))}; git sends gzip or nothing`);
  }

  const auth = await authenticate(deps, req);
  if (!auth) {
    // git asks without credentials first and sends them once challenged: only credentials refused are a failed sign-in.
    // Anyone can send a wrong token: a source's rows are bounded per minute, the rest counted on its next row.
    const ip = req.socket.remoteAddress ?? null;
    const turn = req.headers.authorization !== undefined ? failedSignIns.take(`git-http:${ip ?? ""}`) : null;
    if (turn?.write) {
      await audit(deps.db, {
        userId: null, action: "auth:sign-in", target: `git:${parsed.app}`, sourceIp: ip, result: "failed",
        data: { via: "git-http", reason: "invalid_token", app: parsed.app, ...(turn.suppressed ? { moreFailuresNotRecorded: turn.suppressed } : {}) },
      });
    }
    return plain(res, 401, "authentication required: use your deck API token as the password", { "www-authenticate": 'Basic realm="deck"' });
  }
  const refusal = refusalFor(auth.user);
  if (refusal) return plain(res, 403, `deck: ${refusal}`);
  // A token's scopes bound what it can do over git too: fetching needs read, pushing needs deploy.
  const needed = service === "receive-pack" ? ["deploy", "write", "admin"] : ["read", "deploy", "write", "admin"];
  if (!auth.scopes.some((s) => needed.includes(s))) {
    return plain(res, 403, `deck: this token lacks the "${needed[0]}" scope needed to ${service === "receive-pack" ? "push" : "fetch"}`);
  }
  const caller = await callerFor(deps.db, auth.user, "http", req.socket.remoteAddress);
  let app;
  try {
    app = await resolveGitTarget(deps, caller, service, parsed.app);
  } catch (e) {
    if (isDeckError(e)) return plain(res, e.code === "forbidden" ? 403 : e.code === "app_not_found" ? 404 : 400, `deck: ${e.message}`);
    throw e;
  }
  const protocol = req.headers["git-protocol"];
  const env: Record<string, string> = typeof protocol === "string" && /^[a-z0-9=:.-]{1,40}$/i.test(protocol) ? { GIT_PROTOCOL: protocol } : {};
  if (endpoint === "info/refs") return advertise(deps, service, app, env, res);
  const body: Readable = encoding === "gzip" ? req.pipe(createGunzip()) : req;
  if (service === "upload-pack") return serveFetch(deps, app, env, body, res);
  return servePush({ deps, pushes, caller, app, env, req, body, res });
}

function advertise(deps: DeployDeps, service: GitService, app: AppRow, env: Record<string, string>, res: ServerResponse): void {
  const child = spawnGit(gitServiceArgv(service, deps.paths.repo(app.name), { statelessRpc: true, advertiseRefs: true }), env);
  res.writeHead(200, { "content-type": `application/x-git-${service}-advertisement`, "cache-control": "no-cache" });
  if (!env.GIT_PROTOCOL) res.write(Buffer.concat([pktLine(`# service=git-${service}\n`), Buffer.from("0000")]));
  child.stdout!.pipe(res);
  child.stderr!.resume();
  child.stdin!.end();
}

function serveFetch(deps: DeployDeps, app: AppRow, env: Record<string, string>, body: Readable, res: ServerResponse): void {
  const child = spawnGit(gitServiceArgv("upload-pack", deps.paths.repo(app.name), { statelessRpc: true }), env);
  let finished = false;
  body.on("error", () => abandonGit(child));
  body.pipe(child.stdin!);
  child.stdin!.on("error", () => undefined);
  res.writeHead(200, { "content-type": "application/x-git-upload-pack-result", "cache-control": "no-cache" });
  child.stdout!.pipe(res);
  child.stderr!.on("data", (c: Buffer) => deps.log(`git upload-pack: ${c.toString().trim()}`));
  child.on("close", () => (finished = true));
  res.on("close", () => {
    if (!finished) abandonGit(child);
  });
}

interface PushOptions {
  deps: DeployDeps;
  pushes: PushRegistry;
  caller: Caller;
  app: AppRow;
  env: Record<string, string>;
  req: IncomingMessage;
  body: Readable;
  res: ServerResponse;
}

/**
 * receiving: the pack is arriving (git's answer is held back: nothing it says before the whole
 * request is in matters, and the push may still be refused); streaming: git's answer, and with it the
 * build output, goes to the pusher as it comes; refused: the pack went over DECK_MAX_PUSH_SIZE, git
 * gets no more of it, and deck's own refusal is the answer.
 */
type PushPhase = "receiving" | "streaming" | "refused";

function servePush(o: PushOptions): void {
  const { deps, res } = o;
  const limit = deps.config.maxPushSize;
  const push = o.pushes.open({ ...o.caller, via: "git" }, o.app);
  const child = spawnGit(gitServiceArgv("receive-pack", deps.paths.repo(o.app.name), { statelessRpc: true, maxPackBytes: limit }), { ...o.env, DECK_PUSH_ID: push.id });
  const meter = new PushMeter();
  const declared = o.req.headers["content-encoding"] === "gzip" ? NaN : Number(o.req.headers["content-length"]);
  let phase: PushPhase = "receiving";
  let finished = false;
  const held: Buffer[] = [];
  const send = (chunk: Buffer) => {
    if (!res.headersSent) res.writeHead(200, { "content-type": "application/x-git-receive-pack-result", "cache-control": "no-cache" });
    res.write(chunk);
  };
  const overLimit = () => {
    if (!limit || !meter.commands) return false;
    // A declared length refuses the push before any of its pack reaches git.
    return meter.packBytes > limit || (Number.isFinite(declared) && declared - meter.headerBytes > limit);
  };
  // Whatever is left of the request is read and dropped, so the pusher gets to read the answer.
  const stopReading = () => {
    o.body.off("data", onData);
    if (o.body !== o.req) o.req.unpipe();
    o.req.resume();
    child.stdin!.end();
  };
  const onData = (chunk: Buffer) => {
    meter.feed(chunk);
    if (overLimit()) {
      phase = "refused";
      deps.log(`git push to ${o.app.name} by ${o.caller.user.email} refused: the pack is over DECK_MAX_PUSH_SIZE (${limit} bytes)`);
      return stopReading();
    }
    if (!child.stdin!.write(chunk)) {
      o.body.pause();
      child.stdin!.once("drain", () => o.body.resume());
    }
  };
  o.body.on("data", onData);
  o.body.on("end", () => {
    child.stdin!.end();
    if (phase !== "receiving") return;
    phase = "streaming";
    for (const c of held.splice(0)) send(c);
  });
  o.body.on("error", () => abandonGit(child));
  child.stdin!.on("error", () => undefined);
  // Streamed as it comes once the request is in: sideband progress (the build output) reaches the pusher live.
  child.stdout!.on("data", (c: Buffer) => {
    if (phase === "streaming") send(c);
    else if (phase === "receiving") held.push(c);
  });
  child.stderr!.on("data", (c: Buffer) => deps.log(`git receive-pack: ${c.toString().trim()}`));
  child.on("close", () => {
    finished = true;
    void finishPush(deps, o.pushes, push).finally(() => respondAfterGit());
  });
  const respondAfterGit = () => {
    if (!res.headersSent) res.writeHead(200, { "content-type": "application/x-git-receive-pack-result", "cache-control": "no-cache" });
    if (phase === "refused") {
      send(refusalResponse(meter.commands!, [pushTooLargeLine(limit)], "pack larger than DECK_MAX_PUSH_SIZE"));
    } else {
      // git stopped before the request was all in (a malformed request): its answer is all there is.
      if (phase === "receiving") stopReading();
      for (const c of held.splice(0)) send(c);
    }
    res.end();
  };
  res.on("close", () => {
    if (finished) return;
    o.pushes.close(push.id, "the pusher disconnected");
    abandonGit(child);
  });
}

/** HTTP basic auth whose password is a personal access token; returns its user and scopes. */
async function authenticate(deps: DeployDeps, req: IncomingMessage) {
  const h = req.headers.authorization;
  if (!h?.startsWith("Basic ")) return null;
  const decoded = Buffer.from(h.slice(6), "base64").toString("utf8");
  const password = decoded.slice(decoded.indexOf(":") + 1);
  if (!password.startsWith("deck_") || password.length > 200) return null;
  const token = await usePersonalToken(deps.db, hashToken(password));
  if (!token) return null;
  const user = await findUserById(deps.db, token.userId);
  return user ? { user, scopes: token.scopes } : null;
}
