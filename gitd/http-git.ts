import type { IncomingMessage, ServerResponse } from "node:http";
import { createGunzip } from "node:zlib";
import { isDeckError } from "../core/index.ts";
import { callerFor, type DeployDeps } from "../deploy/index.ts";
import { findUserById, hashToken, usePersonalToken } from "../store/queries/index.ts";
import { resolveGitTarget } from "./git-access.ts";
import { gitServiceArgv, spawnGit, type GitService } from "./git-process.ts";
import type { PushRegistry } from "./push-registry.ts";

/** pkt-line framing (git's protocol-common docs): 4 hex digits of length including themselves. */
export function pktLine(s: string): string {
  return (s.length + 4).toString(16).padStart(4, "0") + s;
}

const ROUTE = /^\/git\/(.+?)\/(info\/refs|git-receive-pack|git-upload-pack)$/;

function plain(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers });
  res.end(`${message}\n`);
}

/**
 * Smart HTTP git (git's http-protocol docs) under /git/APP.git: every request, including the POST
 * that carries a pack, is authenticated with HTTP basic auth whose password is an API token.
 */
export async function handleGitHttp(deps: DeployDeps, pushes: PushRegistry, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://deck");
  const m = ROUTE.exec(url.pathname);
  if (!m) return plain(res, 404, "not a git URL; use http://HOST:PORT/git/APP.git");
  const rawPath = decodeURIComponent(m[1]);
  const endpoint = m[2];
  let service: GitService;
  if (endpoint === "info/refs") {
    const s = url.searchParams.get("service");
    if (s !== "git-receive-pack" && s !== "git-upload-pack") return plain(res, 400, "deck supports smart HTTP only (service=git-upload-pack or git-receive-pack)");
    service = s.slice(4) as GitService;
  } else {
    if (req.method !== "POST") return plain(res, 405, "use POST", { allow: "POST" });
    service = endpoint.slice(4) as GitService;
  }

  const auth = await authenticate(deps, req);
  if (!auth) return plain(res, 401, "authentication required: use your deck API token as the password", { "www-authenticate": 'Basic realm="deck"' });
  const user = auth.user;
  // A token's scopes bound what it can do over git too: fetching needs read, pushing needs deploy.
  const needed = service === "receive-pack" ? ["deploy", "write", "admin"] : ["read", "deploy", "write", "admin"];
  if (!auth.scopes.some((s) => needed.includes(s))) {
    return plain(res, 403, `deck: this token lacks the "${needed[0]}" scope needed to ${service === "receive-pack" ? "push" : "fetch"}`);
  }
  const caller = await callerFor(deps.db, user, "http", req.socket.remoteAddress);
  let app;
  try {
    app = await resolveGitTarget(deps, caller, service, rawPath);
  } catch (e) {
    if (isDeckError(e)) return plain(res, e.code === "forbidden" ? 403 : e.code === "app_not_found" ? 404 : 400, `deck: ${e.message}`);
    throw e;
  }
  const repo = deps.paths.repo(app.name);
  const protocol = req.headers["git-protocol"];
  const env: Record<string, string> = typeof protocol === "string" && /^[a-z0-9=:.-]{1,40}$/i.test(protocol) ? { GIT_PROTOCOL: protocol } : {};

  if (endpoint === "info/refs") {
    const child = spawnGit(gitServiceArgv(service, repo, { statelessRpc: true, advertiseRefs: true }), env);
    res.writeHead(200, { "content-type": `application/x-git-${service}-advertisement`, "cache-control": "no-cache" });
    if (!env.GIT_PROTOCOL) res.write(`${pktLine(`# service=git-${service}\n`)}0000`);
    child.stdout!.pipe(res);
    child.stderr!.resume();
    child.stdin!.end();
    return;
  }

  const push = service === "receive-pack" ? pushes.open({ ...caller, via: "git" }, app) : null;
  const child = spawnGit(gitServiceArgv(service, repo, { statelessRpc: true }), { ...env, ...(push ? { DECK_PUSH_ID: push.id } : {}) });
  let finished = false;
  const body = req.headers["content-encoding"] === "gzip" ? req.pipe(createGunzip()) : req;
  body.on("error", () => child.kill("SIGTERM"));
  body.pipe(child.stdin!);
  child.stdin!.on("error", () => undefined);
  res.writeHead(200, { "content-type": `application/x-git-${service}-result`, "cache-control": "no-cache" });
  // Streamed as it comes: sideband progress (the build output) reaches the pusher live.
  child.stdout!.on("data", (c: Buffer) => res.write(c));
  child.stderr!.on("data", (c: Buffer) => deps.log(`git ${service}: ${c.toString().trim()}`));
  child.on("close", () => {
    finished = true;
    if (push) pushes.close(push.id);
    res.end();
  });
  res.on("close", () => {
    if (finished) return;
    if (push) pushes.close(push.id, "the pusher disconnected");
    child.kill("SIGTERM");
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
