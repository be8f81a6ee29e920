import http from "node:http";

export type HealthResult = { ok: true; status: number } | { ok: false; reason: string };

function probe(host: string, port: number, path: string, timeoutMs: number): Promise<number | string> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path, timeout: timeoutMs, agent: false, headers: { "user-agent": "deck-health-check", connection: "close" } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message));
  });
}

/**
 * Polls the process until it answers with a status below 500. `stillAlive` lets the caller fail fast
 * when the process has exited instead of waiting out the whole deadline.
 */
export async function waitHealthy(options: {
  /** The address routers will reach the process at (DECK_UPSTREAM_HOST). */
  host: string;
  port: number;
  path: string;
  deadlineMs: number;
  signal?: AbortSignal;
  stillAlive: () => Promise<string | null>;
}): Promise<HealthResult> {
  const end = Date.now() + options.deadlineMs;
  let last = "no answer yet";
  for (let attempt = 0; ; attempt++) {
    if (options.signal?.aborted) return { ok: false, reason: "cancelled" };
    const r = await probe(options.host, options.port, options.path, Math.min(5000, Math.max(500, end - Date.now())));
    if (typeof r === "number" && r > 0 && r < 500) return { ok: true, status: r };
    last = typeof r === "number" ? `answered ${r}` : r === "ECONNREFUSED" ? `not listening on $PORT (${options.port}) at ${options.host}` : r;
    const dead = await options.stillAlive();
    if (dead) return { ok: false, reason: dead };
    if (Date.now() >= end) return { ok: false, reason: `no healthy answer on ${options.path} within ${Math.round(options.deadlineMs / 1000)}s (last: ${last})` };
    // Most apps listen within a fraction of a second: poll briskly at first, then back off.
    await new Promise((r2) => setTimeout(r2, attempt < 40 ? 20 : 250));
  }
}
