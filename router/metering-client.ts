/** Reads the router's counters over its control socket: Prometheus text and drained bandwidth. */
import http from "node:http";
import type { AppUsage } from "./metering.ts";

function request(socketPath: string, method: string, path: string, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path, headers: { Host: "router" }, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("timeout", () => req.destroy(new Error(`the router did not answer ${path} within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

export interface RouterMetering {
  /** The router's metrics in the Prometheus text format. */
  metrics(): Promise<string>;
  /** Usage counted since the previous drain (the router starts again from zero). */
  drain(): Promise<AppUsage[]>;
}

export function createRouterMetering(socketPath: string, timeoutMs = 5_000): RouterMetering {
  return {
    async metrics() {
      const r = await request(socketPath, "GET", "/metrics", timeoutMs);
      if (r.status !== 200) throw new Error(`the router answered /metrics with status ${r.status}`);
      return r.text;
    },
    async drain() {
      const r = await request(socketPath, "POST", "/metering/drain", timeoutMs);
      if (r.status !== 200) throw new Error(`the router answered /metering/drain with status ${r.status}`);
      return JSON.parse(r.text) as AppUsage[];
    },
  };
}
