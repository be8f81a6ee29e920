/**
 * `GET /metrics` of a router node on DECK_METRICS_PORT: Prometheus exposition of the node's own
 * counters (per-app requests by status class, bytes in and out, latency histogram, open connections)
 * and of its process (`deck_router_node_*`: memory, CPU, event loop lag). Like kamal-proxy's metrics
 * port it asks for no credentials, so it belongs on an address only Prometheus can reach.
 */
import http from "node:http";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { Metering } from "./metering.ts";

export function createMetricsServer(metering: Metering): http.Server {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "deck_router_node_" });
  return http.createServer((req, res) => {
    const plain = (status: number, text: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...headers });
      res.end(text);
    };
    if ((req.url ?? "/").split("?")[0] !== "/metrics") return plain(404, "this port serves GET /metrics only\n");
    if (req.method !== "GET" && req.method !== "HEAD") return plain(405, `${req.method} is not allowed here; use GET /metrics\n`, { Allow: "GET, HEAD" });
    Promise.all([registry.metrics(), metering.metrics()]).then(
      ([node, router]) => {
        res.writeHead(200, { "Content-Type": registry.contentType });
        res.end(req.method === "HEAD" ? undefined : node + router);
      },
      (e: Error) => plain(500, `cannot collect the metrics: ${e.message.split("\n")[0]}\n`),
    );
  });
}
