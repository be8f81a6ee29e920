import http from "node:http";
import type { DeployDeps } from "../deploy/index.ts";
import { handleGitHttp, type PushRegistry } from "../gitd/index.ts";

/**
 * The API port: smart HTTP git under /git, the REST API under /api/v1.
 */
export function createApiServer(deps: DeployDeps, pushes: PushRegistry): http.Server {
  return http.createServer((req, res) => {
    const url = req.url ?? "/";
    const fail = (e: unknown) => {
      deps.log(`api ${req.method} ${url}: ${(e as Error).stack ?? e}`);
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "internal", message: "internal error" } }));
    };
    if (url.startsWith("/git/")) return void handleGitHttp(deps, pushes, req, res).catch(fail);
    if (url === "/api/v1/health") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify({ ok: true }));
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "not_found", message: `no route for ${req.method} ${url.split("?")[0].slice(0, 100)}` } }));
  });
}
