/**
 * Runs a real deck server (bin/deck server) in a temp dir on free ports, with a bootstrapped admin,
 * and drives it the way a user would: real git over SSH and HTTP, real ssh commands, real HTTP
 * through the router. Everything it starts is stopped by pid when the test ends.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync, readFileSync, openSync, closeSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createDockerClient, ProcessRuntime, scopeFor } from "../../runtime/index.ts";
import { firewallTableFor, removeDockerFirewall } from "../../runtime/docker-network.ts";
import { networkTableFor, removeNetworkRules } from "../../runtime/network-rules.ts";
import { stopRouter } from "../../router/index.ts";
import { freePort } from "../../router/test-support.ts";

export { freePort };
import { destroyEmbeddedServer } from "../../store/index.ts";
import type { DbBackend } from "./database.ts";

export const ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const DECK = join(ROOT, "bin", "deck");

export interface RunResult { code: number; stdout: string; stderr: string }
export interface TimedLine { at: number; text: string }
export interface PushResult extends RunResult { lines: TimedLine[]; endedAt: number }

export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; onLine?: (l: TimedLine) => void } = {}): Promise<PushResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let carry = "";
    const lines: TimedLine[] = [];
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 180_000);
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c: Buffer) => {
      stderr += c;
      const parts = (carry + c.toString()).split(/\r?\n|\r/);
      carry = parts.pop() ?? "";
      for (const p of parts) {
        const l = { at: Date.now(), text: p };
        lines.push(l);
        opts.onLine?.(l);
      }
    });
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr, lines, endedAt: Date.now() });
    });
    // A command that exits without reading its input (ssh after the server closed the channel) is
    // not an error of the test.
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

/** Creates a git work tree with the given files committed on `main`. */
export async function makeRepo(dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  execFileSync("git", ["init", "-q", "-b", "main", dir]);
  await commitFiles(dir, files, "initial");
  return dir;
}

export async function commitFiles(dir: string, files: Record<string, string>, message: string): Promise<string> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  const g = (...a: string[]) => execFileSync("git", ["-C", dir, "-c", "user.name=Test", "-c", "user.email=test@example.com", ...a], { encoding: "utf8" });
  g("add", "-A");
  g("commit", "-q", "--allow-empty", "-m", message);
  return g("rev-parse", "HEAD").trim();
}

/** A minimal Node.js web app whose answer names its version. */
export function nodeApp(version: string, extra: { slowStartMs?: number; buildScript?: string; crash?: boolean } = {}): Record<string, string> {
  const pkg: Record<string, unknown> = { name: "app", version: "1.0.0", private: true, scripts: { start: "node server.js" } };
  if (extra.buildScript) (pkg.scripts as Record<string, string>).build = extra.buildScript;
  const server = extra.crash
    ? `console.error("boom: missing DATABASE"); process.exit(1);\n`
    : `const http = require("http");
const delay = ${extra.slowStartMs ?? 0};
// Names this process among the app's others (pids repeat: each process has its own pid namespace).
const instance = require("crypto").randomBytes(6).toString("hex");
const server = http.createServer((req, res) => {
  if (req.url.startsWith("/slow")) return setTimeout(() => res.end("${version} slow\\n"), 1500);
  res.end("${version} " + (process.env.GREETING || "") + " instance=" + instance + "\\n");
});
setTimeout(() => server.listen(process.env.PORT, () => console.log("${version} listening on " + process.env.PORT)), delay);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`;
  return { "package.json": JSON.stringify(pkg, null, 2), "server.js": server, Procfile: "web: node server.js\n", "VERSION": version };
}

export interface DeckPorts { ssh: number; api: number; http: number; https: number }

export interface DeckOptions {
  backend: DbBackend;
  env?: Record<string, string>;
  /**
   * Ports to use instead of free ones picked at start, for a test that must know a URL of the server
   * before it runs (an OAuth redirect URI registered with a provider; see `freePort`).
   */
  ports?: Partial<DeckPorts>;
}

export class Deck {
  readonly dir: string;
  readonly dataDir: string;
  ports!: DeckPorts;
  token = "";
  keyFile: string;
  server: ChildProcess | null = null;
  private logFile: string;
  private exitPromise: Promise<void> | null = null;

  private constructor(dir: string, readonly options: DeckOptions) {
    this.dir = dir;
    this.dataDir = join(dir, "data");
    this.keyFile = join(dir, "id_ed25519");
    this.logFile = join(dir, "server.log");
  }

  static async start(options: DeckOptions): Promise<Deck> {
    const d = new Deck(await mkdtemp(join(tmpdir(), "deck-e2e-")), options);
    const fixed = options.ports ?? {};
    d.ports = { ssh: fixed.ssh ?? (await freePort()), api: fixed.api ?? (await freePort()), http: fixed.http ?? (await freePort()), https: fixed.https ?? (await freePort()) };
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "tester@deck", "-f", d.keyFile]);
    const boot = await run(DECK, ["admin:bootstrap", "--email", "admin@example.com", "--ssh-key", `${d.keyFile}.pub`], { env: d.env(), cwd: d.dir });
    if (boot.code !== 0) throw new Error(`bootstrap failed: ${boot.stderr}`);
    d.token = boot.stdout.trim().split("\n").pop()!;
    try {
      await d.startServer();
    } catch (e) {
      // The caller never gets the instance, so nothing else would stop what was started.
      await d.stop();
      throw e;
    }
    return d;
  }

  env(): NodeJS.ProcessEnv {
    const e: NodeJS.ProcessEnv = {
      ...process.env,
      DECK_DATA_DIR: this.dataDir,
      DECK_SSH_PORT: String(this.ports.ssh),
      DECK_API_PORT: String(this.ports.api),
      DECK_HTTP_PORT: String(this.ports.http),
      DECK_HTTPS_PORT: String(this.ports.https),
      DECK_HOST: "127.0.0.1",
      DECK_STOP_GRACE: "3",
      // Tests load one app from one address far above any sane per-client limit; tests of the limit set it.
      DECK_RATE_LIMIT: "0",
      ...this.options.env,
    };
    if (this.options.backend.name === "external") e.DATABASE_URL = this.options.backend.url;
    else delete e.DATABASE_URL;
    return e;
  }

  async startServer(): Promise<void> {
    const logStart = this.log().length;
    const out = openSync(this.logFile, "a");
    this.server = spawn(DECK, ["server"], { cwd: this.dir, env: this.env(), stdio: ["ignore", out, out] });
    closeSync(out);
    const child = this.server;
    this.exitPromise = new Promise((r) => child.once("exit", () => r()));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode) throw new Error(`deck server exited: ${this.log().slice(-2000)}`);
      if (this.log().slice(logStart).includes("deck is running")) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`deck server did not start within 60s: ${this.log().slice(-2000)}`);
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
  }

  /** Stops the control plane the way `deck server` is stopped on purpose (SIGTERM); apps and the router keep running. */
  async terminate(): Promise<void> {
    this.server?.kill("SIGTERM");
    await this.exitPromise;
    this.server = null;
  }

  /** Kills the control plane like a crash would; the router and apps must keep running. */
  async kill9(): Promise<void> {
    this.server?.kill("SIGKILL");
    await this.exitPromise;
    this.server = null;
  }

  sshArgs(): string[] {
    return ["-i", this.keyFile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-p", String(this.ports.ssh)];
  }

  gitEnv(): NodeJS.ProcessEnv {
    return { ...process.env, GIT_SSH_COMMAND: `ssh ${this.sshArgs().slice(0, -2).join(" ")}`, GIT_TERMINAL_PROMPT: "0" };
  }

  /** `ssh deck@host COMMAND ARGS` */
  ssh(command: string, opts: { keyFile?: string; timeoutMs?: number } = {}): Promise<PushResult> {
    const args = this.sshArgs();
    if (opts.keyFile) args[1] = opts.keyFile;
    return run("ssh", [...args, "deck@127.0.0.1", command], { timeoutMs: opts.timeoutMs });
  }

  sshUrl(app: string): string {
    return `ssh://deck@127.0.0.1:${this.ports.ssh}/${app}`;
  }

  httpUrl(app: string, token = this.token): string {
    return `http://deck:${token}@127.0.0.1:${this.ports.api}/git/${app}.git`;
  }

  /** `git push` of HEAD to main (or `ref`) over SSH or HTTP; stderr lines are time-stamped as they arrive. */
  push(repo: string, app: string, opts: { via?: "ssh" | "http"; ref?: string; force?: boolean; onLine?: (l: TimedLine) => void; url?: string } = {}): Promise<PushResult> {
    const url = opts.url ?? (opts.via === "http" ? this.httpUrl(app) : this.sshUrl(app));
    const args = ["-C", repo, "push", "--progress", url, `HEAD:${opts.ref ?? "refs/heads/main"}`];
    if (opts.force) args.splice(3, 0, "--force");
    return run("git", args, { env: this.gitEnv(), onLine: opts.onLine });
  }

  /** GET through deck's router with the app's host name. */
  get(app: string, path = "/", opts: { agent?: http.Agent; timeoutMs?: number } = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
    return httpGet(this.ports.http, `${app}.localhost`, path, opts);
  }

  async stop(): Promise<void> {
    if (this.server) {
      this.server.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.exitPromise, new Promise((r) => (timer = setTimeout(r, 15_000)))]);
      // A pending timer would keep the test process alive for the rest of the 15 s after a quick exit.
      clearTimeout(timer);
      if (this.server.exitCode === null && !this.server.signalCode) {
        this.server.kill("SIGKILL");
        await this.exitPromise;
      }
      this.server = null;
    }
    await new ProcessRuntime({ stateDir: join(this.dataDir, "run", "procs") }).stopAll(3000).catch(() => undefined);
    await stopRouter(this.dataDir, 3000).catch(() => undefined);
    // The network rules stay when deck stops (its apps outlive it); a test's deck takes them with it.
    await removeNetworkRules(networkTableFor(this.dataDir)).catch(() => undefined);
    if (this.env().DECK_RUNTIME === "docker") await removeDockerLeftovers(scopeFor(this.dataDir));
    // Stops the embedded PostgreSQL if the server left it running, and deletes its cluster.
    if (this.options.backend.name === "embedded") await destroyEmbeddedServer(this.dataDir).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The containers, networks and firewall table a docker-runtime deck of a test leaves behind (apps outlive deck). */
async function removeDockerLeftovers(scope: string): Promise<void> {
  const client = createDockerClient();
  for (const c of await client.listContainers([`deck.scope=${scope}`]).catch(() => [])) await client.removeContainer(c.id).catch(() => undefined);
  for (const n of await client.listNetworks([`deck.scope=${scope}`]).catch(() => [])) await client.removeNetwork(n.id).catch(() => undefined);
  await removeDockerFirewall(firewallTableFor(scope)).catch(() => undefined);
}

export function httpGet(port: number, host: string, path = "/", opts: { agent?: http.Agent; timeoutMs?: number } = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, headers: { host }, agent: opts.agent ?? false, timeout: opts.timeoutMs ?? 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
  });
}

export async function readText(file: string): Promise<string> {
  return readFile(file, "utf8");
}
