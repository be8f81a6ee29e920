import { appNameFromRepoPath } from "../core/index.ts";
import type { GitService } from "./git-process.ts";

export type GitEndpoint = "info/refs" | "git-receive-pack" | "git-upload-pack";

export type GitHttpRequest =
  | { ok: true; app: string; endpoint: GitEndpoint; service: GitService }
  | { ok: false; status: 400 | 405; message: string; headers?: Record<string, string> };

/** Longer than any URL git sends for a valid app name; longer ones are refused unread. */
const MAX_URL_LENGTH = 1024;
const USAGE = "use http://HOST:PORT/git/APP.git as the remote";
const ENDPOINT = /^\/git\/([^/]*)\/(info\/refs|git-receive-pack|git-upload-pack)$/;

function bad(message: string): GitHttpRequest {
  return { ok: false, status: 400, message: `deck: ${message}` };
}

/**
 * Reads a smart HTTP git request line (git's http-protocol docs) before anything else happens: which
 * app, which endpoint, which service. Everything else is a one-line 400 (405 for a wrong method),
 * answered before authentication, so a malformed URL never reaches the database or the disk.
 */
export function parseGitHttpRequest(method: string, rawUrl: string): GitHttpRequest {
  if (rawUrl.length > MAX_URL_LENGTH) return bad(`the URL is longer than ${MAX_URL_LENGTH} characters; ${USAGE}`);
  const q = rawUrl.indexOf("?");
  const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const query = q < 0 ? "" : rawUrl.slice(q + 1);
  const m = ENDPOINT.exec(path);
  if (!m) return bad(`not a smart HTTP git URL (deck serves /git/APP.git/info/refs, git-upload-pack and git-receive-pack); ${USAGE}`);
  let decoded: string;
  try {
    decoded = decodeURIComponent(m[1]);
  } catch {
    return bad(`the app name in the URL has bad percent-encoding; ${USAGE}`);
  }
  // Checked apart from the app name rule so the message names the real problem.
  if (/[\u0000-\u001f\u007f]/.test(decoded)) return bad(`the app name in the URL holds control characters; ${USAGE}`);
  if (decoded.includes("/") || decoded.includes("..")) return bad(`the URL names a path, not an app; ${USAGE}`);
  const name = appNameFromRepoPath(decoded);
  if (!name.ok) return bad(name.message);
  const endpoint = m[2] as GitEndpoint;
  if (endpoint === "info/refs") {
    if (method !== "GET") return { ok: false, status: 405, message: "deck: info/refs takes GET", headers: { allow: "GET" } };
    const service = new URLSearchParams(query).get("service");
    if (service !== "git-receive-pack" && service !== "git-upload-pack") {
      return bad("deck serves smart HTTP only: ?service=git-upload-pack (fetch) or ?service=git-receive-pack (push)");
    }
    return { ok: true, app: name.name, endpoint, service: service === "git-receive-pack" ? "receive-pack" : "upload-pack" };
  }
  if (method !== "POST") return { ok: false, status: 405, message: `deck: ${endpoint} takes POST`, headers: { allow: "POST" } };
  return { ok: true, app: name.name, endpoint, service: endpoint === "git-receive-pack" ? "receive-pack" : "upload-pack" };
}
