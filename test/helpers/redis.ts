/** A real redis-server for tests: on a free port, no persistence, stopped by pid. */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import net from "node:net";
import { freePort } from "../../router/test-support.ts";

export interface TestRedis {
  url: string;
  port: number;
  /** Freezes the server (SIGSTOP): its connections stay open and nothing answers, as with a hung Redis. */
  pause(): void;
  /** Lets a paused server run again (SIGCONT). */
  resume(): void;
  stop(): Promise<void>;
}

/** Why Redis tests cannot run here, or null. With CI=true a missing redis-server is an error, not a skip. */
export function redisUnavailable(): string | null {
  const found = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  if (found.status === 0) return null;
  const reason = "redis-server is not installed (apt-get install -y redis-server)";
  if (process.env.CI === "true") throw new Error(`${reason} (required when CI=true)`);
  return reason;
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  const child: ChildProcess = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const until = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.on("error", () => resolve(false));
    });
    if (up) break;
    if (Date.now() > until || child.exitCode !== null) {
      child.kill("SIGKILL");
      throw new Error(`redis-server did not start on port ${port}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pause() {
      child.kill("SIGSTOP");
    },
    resume() {
      child.kill("SIGCONT");
    },
    async stop() {
      // A paused server would not act on SIGTERM until continued.
      if (child.exitCode === null) child.kill("SIGCONT");
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
