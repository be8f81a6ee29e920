/**
 * The measuring instruments of `npm run bench:router`: processes it starts (and stops by pid), wrk
 * runs (as many requests as possible, or at a fixed rate), percentiles, RSS, nginx configurations
 * and a steady load generator for the blue-green switches. HAProxy's and Caddy's configurations are
 * in bench-router-peers.ts.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import http from "node:http";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function has(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
}

export { freePort } from "../router/test-support.ts";

/** Every process the benchmark starts, so each is stopped by its own pid however the run ends. */
export class Processes {
  private readonly live = new Set<ChildProcess>();

  /** Starts `argv` pinned to `core`; output goes to `logFile` (appended) or nowhere. */
  start(core: string, argv: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; logFile?: string } = {}): ChildProcess {
    const out = options.logFile ? openSync(options.logFile, "a") : "ignore";
    // taskset execs the command, so the child's pid is the command's own (for RSS and signals).
    const child = spawn("taskset", ["-c", core, ...argv], { env: options.env ?? process.env, cwd: options.cwd, stdio: ["ignore", out, out] });
    if (typeof out === "number") closeSync(out); // the child has its own copy
    this.live.add(child);
    child.once("exit", () => this.live.delete(child));
    return child;
  }

  /** SIGTERM, then waits for the exit (SIGKILL after 5 s). */
  async stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.live].map((c) => this.stop(c)));
  }
}

export interface Reply {
  status: number;
  body: string;
}

/** One GET, on a fresh connection unless an agent is given; undefined when the connection fails. */
export function get(port: number, host: string, path = "/", agent: http.Agent | false = false): Promise<Reply | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path, headers: { host }, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", () => resolve(undefined));
    });
    req.on("error", () => resolve(undefined));
  });
}

/** Waits until GET / answers 200 (with a body starting with `expect` when given). */
export async function waitAnswers(port: number, host: string, expect = "", timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const r = await get(port, host);
    if (r?.status === 200 && r.body.startsWith(expect)) return;
    await sleep(20);
  }
  throw new Error(`nothing answered 200${expect ? ` "${expect}"` : ""} on port ${port} for ${host} within ${timeoutMs / 1000} s`);
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Nearest-rank percentile of unsorted samples. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Resident memory of a process in MiB (VmRSS); 0 once it has exited. */
export function rssMiB(pid: number): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return 0;
  }
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : 0;
}

export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function alive(pid: number): boolean {
  try {
    return !/State:\s+Z/.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Milliseconds, from wrk's own histogram. */
  p50: number;
  p99: number;
  p999: number;
  /** Answers with status >= 400, and socket errors (connect, read, write, timeout). */
  httpErrors: number;
  socketErrors: number;
}

/** wrk's Lua hook: prints the numbers in one parseable line (p99.9 is not in wrk's own --latency). */
const WRK_DONE = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d us=%d p50=%d p99=%d p999=%d status=%d socket=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.status, e.connect + e.read + e.write + e.timeout))
end
`;

/**
 * wrk at a fixed rate: each request waits for the next free slot of a schedule of `rate` slots a
 * second, shared by all connections (wrk's `delay` hook; the clock through LuaJIT's FFI). Requests
 * fall behind the schedule only when the server cannot keep up.
 */
function fixedRate(rate: number): string {
  return `
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local per_ms = ${rate} / 1000
local start, slots = nil, 0
function delay()
  local t = now_ms()
  if start == nil then start = t end
  slots = slots + 1
  local slot = start + slots / per_ms
  if slot > t then return math.floor(slot - t) end
  return 0
end
`;
}

export interface WrkScriptOptions {
  /** POST a body of this many bytes with every request. */
  uploadBytes?: number;
  /** Requests per second for the whole run instead of as many as possible. */
  rate?: number;
}

/** The Lua script for wrk: the done hook, plus a request body or a fixed rate when asked. */
export function wrkScript(o: WrkScriptOptions = {}): string {
  const body = o.uploadBytes ? `wrk.method = "POST"\nwrk.body = string.rep("x", ${o.uploadBytes})\nwrk.headers["Content-Type"] = "application/octet-stream"\n` : "";
  return body + (o.rate ? fixedRate(o.rate) : "") + WRK_DONE;
}

export interface WrkOptions {
  /** The cores wrk is pinned to, as taskset takes them ("1", "0,1"). */
  core: string;
  /** wrk's threads (default 1): one per core it may use. */
  threads?: number;
  port: number;
  host: string;
  path?: string;
  connections: number;
  seconds: number;
  /** Path of a script written from wrkScript(). */
  script: string;
}

export async function wrk(o: WrkOptions): Promise<WrkResult> {
  const { stdout: out } = await execFileAsync(
    "taskset",
    ["-c", o.core, "wrk", `-t${o.threads ?? 1}`, `-c${o.connections}`, `-d${o.seconds}s`, "--timeout", "10s", "-s", o.script, "-H", `Host: ${o.host}`, `http://127.0.0.1:${o.port}${o.path ?? "/"}`],
    { encoding: "utf8" },
  );
  const m = /BENCH requests=(\d+) us=(\d+) p50=(\d+) p99=(\d+) p999=(\d+) status=(\d+) socket=(\d+)/.exec(out);
  if (!m) throw new Error(`wrk printed no result:\n${out}`);
  const [requests, us, p50, p99, p999, status, socket] = m.slice(1).map(Number);
  const seconds = us / 1e6;
  return { requests, seconds, rps: requests / seconds, p50: p50 / 1000, p99: p99 / 1000, p999: p999 / 1000, httpErrors: status, socketErrors: socket };
}

export interface SteadyLoadResult {
  sent: number;
  ok: number;
  /** Non-200 answers and failed requests, by status or error code. */
  errors: Map<string, number>;
  slowSent: number;
  slowOk: number;
  /** Requests still unanswered when the load stopped waiting. */
  unfinished: number;
}

/**
 * A steady `rate` requests/s through one keep-alive pool, every `slowEvery`-th to /slow (answered
 * after 2 s). Each request is counted as answered 200, answered otherwise, or failed.
 */
export class SteadyLoad {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 400 });
  private timer: NodeJS.Timeout | undefined;
  private started = 0;
  private outstanding = 0;
  readonly result: SteadyLoadResult = { sent: 0, ok: 0, errors: new Map(), slowSent: 0, slowOk: 0, unfinished: 0 };

  constructor(private readonly port: number, private readonly host: string, private readonly rate: number, private readonly slowEvery = 20) {}

  start(): void {
    this.started = performance.now();
    this.timer = setInterval(() => {
      const due = Math.floor(((performance.now() - this.started) / 1000) * this.rate);
      while (this.result.sent < due) this.send();
    }, 5);
  }

  private fail(kind: string): void {
    this.result.errors.set(kind, (this.result.errors.get(kind) ?? 0) + 1);
  }

  private send(): void {
    const slow = this.result.sent % this.slowEvery === this.slowEvery - 1;
    this.result.sent++;
    if (slow) this.result.slowSent++;
    this.outstanding++;
    let done = false;
    const finish = (ok: boolean, kind: string) => {
      if (done) return;
      done = true;
      this.outstanding--;
      if (ok) {
        this.result.ok++;
        if (slow) this.result.slowOk++;
      } else this.fail(kind);
    };
    const req = http.get({ host: "127.0.0.1", port: this.port, path: slow ? "/slow" : "/", headers: { host: this.host }, agent: this.agent, timeout: 30_000 }, (res) => {
      res.on("data", () => {});
      res.on("end", () => finish(res.statusCode === 200, `HTTP ${res.statusCode}`));
      res.on("error", (e: NodeJS.ErrnoException) => finish(false, e.code ?? e.message));
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("no answer within 30 s"), { code: "timeout" })));
    // A reset of a reused keep-alive connection before any answer is the race of a server closing
    // an idle connection as the client reuses it; browsers retry those, so it is reported apart.
    req.on("error", (e: NodeJS.ErrnoException) => finish(false, `${e.code ?? e.message}${req.reusedSocket && e.code === "ECONNRESET" ? " on a reused keep-alive connection" : ""}`));
  }

  /** Stops sending and waits (up to 10 s) for the answers still due. */
  async stop(): Promise<SteadyLoadResult> {
    clearInterval(this.timer);
    const until = Date.now() + 10_000;
    while (this.outstanding > 0 && Date.now() < until) await sleep(20);
    this.result.unfinished = this.outstanding;
    this.agent.destroy();
    return this.result;
  }

  errorCount(): number {
    let n = 0;
    for (const c of this.result.errors.values()) n += c;
    return n + this.result.unfinished;
  }
}

export interface NginxSite {
  host: string;
  upstream: number;
  /** Large bodies: no size limit, streamed to the upstream instead of buffered to disk first. */
  bodies?: boolean;
}

export interface NginxProxyOptions {
  dir: string;
  /** Port served with nginx's default access log (combined format, to a file). */
  port: number;
  /** Port served with access_log off. */
  portNoLog: number;
  sites: NginxSite[];
  /** Worker processes (default 1: the one core nginx is given). */
  workers?: number;
}

function tempPaths(dir: string): string {
  return `client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`;
}

/**
 * nginx as a reverse proxy as users run it: one worker per core it is given, keep-alive upstream pool
 * (proxy_http_version 1.1, Connection ""), the forwarding headers deck also sets. Upstream
 * connections are reused without a request cap (keepalive_requests), like deck's pool.
 */
export function nginxProxyConf(o: NginxProxyOptions): string {
  const upstreams = o.sites.map((s, i) => `  upstream site${i} { server 127.0.0.1:${s.upstream}; keepalive 128; keepalive_requests 1000000; keepalive_timeout 300s; }`).join("\n");
  const location = (i: number, s: NginxSite) => `
    location / {
      proxy_pass http://site${i};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Request-Id $request_id;${s.bodies ? "\n      client_max_body_size 100m;\n      proxy_request_buffering off;" : ""}
    }`;
  const servers = o.sites
    .flatMap((s, i) => [
      `  server { listen 127.0.0.1:${o.port}; server_name ${s.host}; access_log ${o.dir}/access.log;${location(i, s)}\n  }`,
      `  server { listen 127.0.0.1:${o.portNoLog}; server_name ${s.host}; access_log off;${location(i, s)}\n  }`,
    ])
    .join("\n");
  return `worker_processes ${o.workers ?? 1};
daemon off;
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log;
events { worker_connections 8192; }
http {
  ${tempPaths(o.dir)}
${upstreams}
${servers}
}
`;
}

/**
 * The static upstream for the request-rate runs: nginx answering "hello world\n" from memory, with
 * stub_status counting the connections it accepted. It announces its keep-alive timeout. (A Node.js responder sharing the load
 * generator's core tops out near the proxies' own rate and would hide the difference between them.)
 */
export function nginxStaticConf(dir: string, port: number, workers = 1): string {
  return `worker_processes ${workers};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  # The second value is announced as "Keep-Alive: timeout=300": clients that honour it (deck's
  # router keeps an idle connection for the announced time, 4 s when none is) may reuse
  # connections across the pauses between runs, as nginx's own keep-alive pool does.
  keepalive_timeout 300s 300s;
  ${tempPaths(dir)}
  server {
    listen 127.0.0.1:${port};
    location = /connections { stub_status; }
    location / { default_type text/plain; return 200 "hello world\\n"; }
  }
}
`;
}

const statusQueries = new Map<number, number>();

/** Connections the static upstream has accepted so far, not counting those of these queries. */
export async function acceptedConnections(port: number): Promise<number> {
  const queries = (statusQueries.get(port) ?? 0) + 1;
  statusQueries.set(port, queries);
  const r = await get(port, "upstream", "/connections");
  const m = r && /\n\s*(\d+)\s+\d+\s+\d+/.exec(r.body);
  if (!m) throw new Error(`the static upstream's stub_status did not answer: ${r?.body ?? "no connection"}`);
  return Number(m[1]) - queries;
}
