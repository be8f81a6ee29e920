/**
 * A real `deck server --role builder` process for tests and benchmarks, started with the real CLI in a
 * temp dir of its own.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./deck.ts";
import { stopChild } from "./processes.ts";

const DECK = join(ROOT, "bin", "deck");

/** Environment of a process that must not inherit deck settings from the test's own environment. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("DECK_") && k !== "DATABASE_URL" && k !== "REDIS_URL") env[k] = v;
  return { ...env, ...extra };
}

/** One `deck server --role builder` process in a temp dir of its own. */
export class BuilderNodeProcess {
  child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  private constructor(readonly dir: string, readonly env: Record<string, string>) {}

  static async start(env: Record<string, string>): Promise<BuilderNodeProcess> {
    const node = new BuilderNodeProcess(await mkdtemp(join(tmpdir(), "deck-builder-")), env);
    await node.spawn();
    return node;
  }

  get dataDir(): string {
    return join(this.dir, "data");
  }

  log(): string {
    const file = join(this.dir, "node.log");
    return existsSync(file) ? readFileSync(file, "utf8") : "";
  }

  async spawn(): Promise<void> {
    const out = openSync(join(this.dir, "node.log"), "a");
    const child = spawn(DECK, ["server", "--role", "builder"], { cwd: this.dir, env: cleanEnv({ DECK_DATA_DIR: this.dataDir, ...this.env }), stdio: ["ignore", out, out] });
    closeSync(out);
    this.child = child;
    this.exited = new Promise((r) => child.once("exit", () => r()));
    const deadline = Date.now() + 60_000;
    const before = this.log().split(" is taking builds").length;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode) throw new Error(`builder node exited: ${this.log().slice(-2000)}`);
      if (this.log().split(" is taking builds").length > before) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`builder node did not start within 60s: ${this.log().slice(-2000)}`);
  }

  async kill9(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null && !child.signalCode) {
      child.kill("SIGKILL");
      await this.exited;
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    await stopChild(child, this.exited, 20_000);
  }

  async remove(): Promise<void> {
    await this.stop();
    if (process.env.KEEP_NODE_LOGS) process.stderr.write(`--- builder node ${this.dir}\n${this.log()}`);
    await rm(this.dir, { recursive: true, force: true });
  }
}

