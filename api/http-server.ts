import http from "node:http";
import { BUILD_EXCHANGE_PREFIX, type DeployDeps } from "../deploy/index.ts";
import { handleGitHttp, type PushRegistry } from "../gitd/index.ts";
import { createApiApp } from "./app.ts";
import type { ApiDeps } from "./registry.ts";

/**
 * The API port: smart HTTP git under /git, the REST API (Koa) under /api/v1.
 */
export function createApiServer(deps: DeployDeps, pushes: PushRegistry, extra: Partial<ApiDeps> = {}): http.Server {
  const api = createApiApp(deps, extra).callback();
  return http.createServer((req, res) => {
    const url = req.url ?? "/";
    // Builder nodes fetching the source of, and handing back, the builds they run for this server.
    if (url.startsWith(BUILD_EXCHANGE_PREFIX)) {
      return void deps.builds.remote.handle(req, res).catch((e: Error) => {
        deps.log(`build exchange ${req.method} ${url}: ${e.stack ?? e}`);
        res.destroy();
      });
    }
    if (url.startsWith("/git/")) {
      return void handleGitHttp(deps, pushes, req, res).catch((e: Error) => {
        deps.log(`git http ${req.method} ${url}: ${e.stack ?? e}`);
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end("internal error\n");
      });
    }
    void api(req, res);
  });
}
