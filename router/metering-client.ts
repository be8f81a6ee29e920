/** Reads the router's counters over its control socket: Prometheus text, and bandwidth to save. */
import http from "node:http";
import { hourOf } from "../core/index.ts";
import type { RouterCounters, UsageBatch } from "./metering.ts";

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
  /** The same counters as JSON, with the in-flight count of every upstream. */
  counters(): Promise<RouterCounters>;
  /** Bandwidth to save: the router hands out the same batch until it is acknowledged. */
  takeBatch(): Promise<UsageBatch>;
  /** The batch is saved. */
  acknowledge(id: string): Promise<void>;
}

export function createRouterMetering(socketPath: string, timeoutMs = 5_000): RouterMetering {
  return {
    async metrics() {
      const r = await request(socketPath, "GET", "/metrics", timeoutMs);
      if (r.status !== 200) throw new Error(`the router answered /metrics with status ${r.status}`);
      return r.text;
    },
    async counters() {
      const r = await request(socketPath, "GET", "/metering/counters", timeoutMs);
      if (r.status !== 200) throw new Error(`the router answered /metering/counters with status ${r.status}`);
      return JSON.parse(r.text) as RouterCounters;
    },
    async takeBatch() {
      const r = await request(socketPath, "POST", "/metering/batch", timeoutMs);
      if (r.status === 404) {
        // A router started by an older deck (it keeps running across a deck server upgrade): it
        // hands its counts over once, without batches or hours.
        const old = await request(socketPath, "POST", "/metering/drain", timeoutMs);
        if (old.status !== 200) throw new Error(`the router answered /metering/drain with status ${old.status}`);
        const hour = hourOf(Date.now());
        const usage = (JSON.parse(old.text) as { app: string; requests: number; bytesIn: number; bytesOut: number }[]).map((u) => ({ ...u, hour }));
        return { id: null, usage };
      }
      if (r.status !== 200) throw new Error(`the router answered /metering/batch with status ${r.status}`);
      return JSON.parse(r.text) as UsageBatch;
    },
    async acknowledge(id) {
      const r = await request(socketPath, "POST", `/metering/ack?id=${encodeURIComponent(id)}`, timeoutMs);
      if (r.status !== 200) throw new Error(`the router answered /metering/ack with status ${r.status}`);
    },
  };
}
