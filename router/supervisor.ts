/**
 * The router's supervisor: the process `router/main.ts` starts as (the cluster primary).
 *
 * It owns the listening HTTP and HTTPS sockets and hands each accepted connection to the worker that
 * serves (router-worker.ts), so the ports stay open while a worker is replaced: a client connecting
 * meanwhile waits a moment instead of being refused. Loading the router's code takes seconds, so a
 * second worker is kept loaded on standby; when the serving worker dies (an exception, SIGKILL) the
 * standby is told to serve at once (it reads the saved route table and certificates) and a new
 * standby is started. Workers that keep dying are started again after a growing delay.
 *
 * SIGTERM/SIGINT: stop accepting, let the serving worker finish its requests and save its counts,
 * then exit. SIGHUP/SIGUSR1 are passed on to the serving worker (it reopens its access log).
 */
import cluster, { type Worker } from "node:cluster";
import { existsSync } from "node:fs";
import { mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import net from "node:net";
import { loadConfig } from "../config/index.ts";
import { answering } from "./launch.ts";
import { routerPaths } from "./paths.ts";
import { isWorkerMessage, type ConnectionKind, type SupervisorMessage } from "./worker-messages.ts";

/** Connections held while no worker serves; more are closed (clients see a reset and retry). */
const MAX_WAITING_CONNECTIONS = 1024;
/** A worker that lived this long counts as healthy: the next crash starts the delays from zero. */
const HEALTHY_AFTER_MS = 10_000;
/** How long the serving worker gets to stop after SIGTERM before it is killed. */
const WORKER_STOP_MS = 8_000;

/**
 * Delay before starting a worker after `crashes` deaths in a row: none for the first three (the
 * standby takes over within milliseconds anyway), then doubling from 250 ms up to 10 s.
 */
export function restartDelayMs(crashes: number): number {
  if (crashes <= 3) return 0;
  return Math.min(250 * 2 ** (crashes - 4), 10_000);
}

type Role = "standby" | "serving";

interface Handed {
  kind: ConnectionKind;
  socket: net.Socket;
}

interface WorkerState {
  worker: Worker;
  /** Connections sent to it that it has not said it took: the next worker gets them if it dies. */
  handed: Map<number, Handed>;
  /** standby: waits to be told to serve; serving: told to serve. */
  role: Role;
  /** loading its code; loaded (a standby can take over); answering (connections go to it). */
  phase: "loading" | "loaded" | "answering";
  startedAt: number;
}

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString()} router[${process.pid}] ${line}\n`);
}

async function removeIfOurs(pidFile: string): Promise<void> {
  const text = await readFile(pidFile, "utf8").catch(() => "");
  if (text.trim() === String(process.pid)) await unlink(pidFile).catch(() => {});
}

function listenPaused(port: number, host: string, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ pauseOnConnect: true, noDelay: true }, onConnection);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve(server);
    });
  });
}

export async function runSupervisor(): Promise<number> {
  const config = loadConfig();
  const paths = routerPaths(config.dataDir);
  await mkdir(paths.runDir, { recursive: true });

  if (existsSync(paths.socket)) {
    const other = await answering(paths.socket);
    if (other) {
      log(`another router (pid ${other.pid}) already answers on ${paths.socket}; not starting`);
      return 1;
    }
    await unlink(paths.socket).catch(() => {});
  }

  const workers = new Set<WorkerState>();
  const waiting: Handed[] = [];
  let stopping = false;
  let crashes = 0;
  let restartTimer: NodeJS.Timeout | undefined;

  const serving = () => [...workers].find((w) => w.role === "serving");
  const standby = () => [...workers].find((w) => w.role === "standby");

  let nextId = 0;

  // A worker gone meanwhile is noticed by its exit event.
  const send = (state: WorkerState, message: SupervisorMessage) => {
    state.worker.send(message, undefined, {}, () => {});
  };

  /**
   * Sends a connection to the serving worker, keeping this process's copy of the socket open until the
   * worker says it took it (closing that copy leaves the worker's open).
   */
  const handOff = (kind: ConnectionKind, socket: net.Socket) => {
    const target = serving();
    if (target === undefined || target.phase !== "answering" || !target.worker.isConnected()) {
      if (waiting.length >= MAX_WAITING_CONNECTIONS) return void socket.destroy();
      socket.on("error", () => {});
      return void waiting.push({ kind, socket });
    }
    const id = ++nextId;
    target.handed.set(id, { kind, socket });
    target.worker.send({ type: "connection", kind, id } satisfies SupervisorMessage, socket as never, { keepOpen: true }, () => {});
  };

  const promote = (state: WorkerState) => {
    state.role = "serving";
    if (state.phase === "loaded") send(state, { type: "serve" });
  };

  /** Keeps one serving worker and one standby, starting what is missing. */
  const fill = () => {
    if (stopping || restartTimer !== undefined) return;
    const current = serving();
    if (current === undefined) {
      const next = standby();
      if (next !== undefined) {
        log(`worker ${next.worker.process.pid} takes over serving`);
        promote(next);
      } else {
        fork("serving");
      }
    }
    // The standby loads once the serving worker is up, not competing with it for the CPU.
    if (standby() === undefined && serving()?.phase === "answering") fork("standby");
  };

  const fork = (role: Role) => {
    const worker = cluster.fork();
    const state: WorkerState = { worker, handed: new Map(), role, phase: "loading", startedAt: Date.now() };
    workers.add(state);
    worker.on("error", (e) => log(`worker ${worker.process.pid}: ${e.message}`));
    worker.on("message", (message: unknown) => {
      if (!isWorkerMessage(message)) return;
      if (message.type === "loaded") {
        state.phase = "loaded";
        if (state.role === "serving") send(state, { type: "serve" });
        else log(`standby worker ${worker.process.pid} is ready to take over`);
      } else if (message.type === "serving") {
        state.phase = "answering";
        log(`worker ${worker.process.pid} serves`);
        for (const { kind, socket } of waiting.splice(0)) handOff(kind, socket);
        fill();
      } else {
        for (const id of message.ids) {
          state.handed.get(id)?.socket.destroy();
          state.handed.delete(id);
        }
      }
    });
    worker.on("exit", (code, signal) => {
      workers.delete(state);
      const orphans = [...state.handed.values()];
      state.handed.clear();
      if (stopping) return void orphans.forEach((h) => h.socket.destroy());
      // Queued first: they wait for the next worker, which gets them before new ones.
      waiting.unshift(...orphans);
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const lived = Date.now() - state.startedAt;
      crashes = lived >= HEALTHY_AFTER_MS ? 1 : crashes + 1;
      log(`${state.role} worker ${worker.process.pid} ${how}`);
      const delay = restartDelayMs(crashes);
      if (delay === 0) return fill();
      // The standby still takes over at once; only new workers wait.
      const next = serving() === undefined ? standby() : undefined;
      if (next !== undefined) promote(next);
      log(`${crashes} worker deaths in a row; starting the next worker in ${delay} ms`);
      clearTimeout(restartTimer);
      restartTimer = setTimeout(() => {
        restartTimer = undefined;
        fill();
      }, delay);
    });
  };

  let http: net.Server;
  let https: net.Server;
  try {
    http = await listenPaused(config.httpPort, config.host, (s) => handOff("http", s));
  } catch (e) {
    log(`cannot listen on ${config.host}:${config.httpPort}: ${(e as Error).message}`);
    return 1;
  }
  try {
    https = await listenPaused(config.httpsPort, config.host, (s) => handOff("https", s));
  } catch (e) {
    log(`cannot listen on ${config.host}:${config.httpsPort} for HTTPS: ${(e as Error).message} (set another with DECK_HTTPS_PORT)`);
    http.close();
    return 1;
  }
  await writeFile(paths.pidFile, `${process.pid}\n`);
  log(`supervising the router on http://${config.host}:${config.httpPort} and https://${config.host}:${config.httpsPort}`);
  fill();

  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      clearTimeout(restartTimer);
      log(`${signal}: stopping`);
      http.close();
      https.close();
      for (const { socket } of waiting.splice(0)) socket.destroy();
      const exits = [...workers].map((state) => new Promise<void>((done) => {
        if (state.worker.isDead()) return done();
        state.worker.once("exit", () => done());
        const timer = setTimeout(() => state.worker.process.kill("SIGKILL"), WORKER_STOP_MS);
        state.worker.once("exit", () => clearTimeout(timer));
        state.worker.process.kill("SIGTERM");
      }));
      void Promise.all(exits).then(async () => {
        await removeIfOurs(paths.pidFile);
        log("supervisor stopped");
        resolve(0);
      });
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    for (const signal of ["SIGUSR1", "SIGHUP"] as const) {
      process.on(signal, () => serving()?.worker.process.kill(signal));
    }
  });
}
