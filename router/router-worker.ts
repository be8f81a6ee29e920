/**
 * A router worker: the process that serves traffic, run by the supervisor (supervisor.ts) as a cluster
 * worker. It loads its code, says `loaded`, and waits; told to `serve`, it reads the saved route table
 * and certificates, answers the control socket and takes the connections the supervisor hands it.
 * A standby worker is one that has not been told to serve yet.
 *
 * Reads DECK_HOST, DECK_HTTP_PORT, DECK_HTTPS_PORT, DECK_DATA_DIR and the router limits through
 * loadConfig().
 */
import { chmod, mkdir, unlink } from "node:fs/promises";
import type http from "node:http";
import type { Socket } from "node:net";
import { loadConfig } from "../config/index.ts";
import { AccessLog } from "./access-log.ts";
import { loadCertsFile } from "./certs-file.ts";
import { createControlServer } from "./control-server.ts";
import { createRateLimiter, limitsFromConfig } from "./limits-config.ts";
import { routerPaths } from "./paths.ts";
import { createProxyServer, type ProxyServer } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { loadRoutesFile } from "./routes-file.ts";
import { CertStore, createTlsFrontend, type TlsFrontend } from "./tls-server.ts";
import { isSupervisorMessage, type WorkerMessage } from "./worker-messages.ts";

/** How long in-flight requests get to finish after SIGTERM before connections are cut. */
const SHUTDOWN_DEADLINE_MS = 5_000;

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString()} router[${process.pid}] ${line}\n`);
}

interface Serving {
  proxy: ProxyServer;
  https: TlsFrontend;
  control: http.Server;
  accessLog?: AccessLog;
  meteringFile: string;
  accessLogFile: string;
}

/** Control servers listen on their own socket, never through the cluster primary. */
function listenExclusive(server: http.Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ path, exclusive: true }, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function loadTable(routes: Awaited<ReturnType<typeof loadRoutesFile>>, file: string): RouteTable {
  if (!routes.ok) {
    log(`ignoring saved routes: ${routes.message}; starting with an empty table until the deck server sends one`);
    return new RouteTable();
  }
  try {
    const table = new RouteTable(routes.routes);
    log(`loaded ${routes.routes.length} routes from ${file}`);
    return table;
  } catch (e) {
    log(`ignoring saved routes: ${(e as Error).message}`);
    return new RouteTable();
  }
}

async function serve(): Promise<Serving> {
  const config = loadConfig();
  const paths = routerPaths(config.dataDir);
  await mkdir(paths.runDir, { recursive: true });
  const table = loadTable(await loadRoutesFile(paths.routesFile), paths.routesFile);

  const certs = await CertStore.create(log);
  const savedCerts = await loadCertsFile(paths.certsFile);
  try {
    if (!savedCerts.ok) throw new Error(savedCerts.message);
    for (const reason of [...savedCerts.skipped, ...certs.replace(savedCerts.certs)]) log(`certs: left out ${reason}`);
    log(`loaded ${certs.certificates().length} certificates from ${paths.certsFile}`);
  } catch (e) {
    log(`ignoring saved certificates: ${(e as Error).message}; serving the self-signed fallback until the deck server sends them`);
  }

  const accessLog = config.accessLog === "on" ? new AccessLog(paths.accessLog, log) : undefined;
  const proxy = createProxyServer({
    table, log,
    limits: limitsFromConfig(config),
    rateLimiter: createRateLimiter(config, log),
    accessLog,
    httpsPort: config.httpsPort,
  });
  const unsaved = await proxy.metering.loadUnsaved(paths.meteringFile);
  if ("error" in unsaved) log(`metering: cannot read unsaved usage: ${unsaved.error}`);
  else if (unsaved.entries > 0 || unsaved.skipped) log(`metering: took back ${unsaved.entries} unsaved usage entries from ${paths.meteringFile}${unsaved.skipped ? `; left out ${unsaved.skipped} that did not read as counts` : ""}`);
  const control = createControlServer({
    table, inflight: (u) => proxy.inflight(u), inflightByUpstream: () => proxy.inflightByUpstream(), metering: proxy.metering, routesFile: paths.routesFile, log,
    certs: { store: certs, file: paths.certsFile }, challenges: proxy.challenges, routerPid: process.ppid,
  });
  const https = createTlsFrontend({ proxy, certs, log });

  // A worker that died left its socket file behind; the supervisor starts one worker at a time.
  await unlink(paths.socket).catch(() => {});
  await listenExclusive(control, paths.socket);
  await chmod(paths.socket, 0o600).catch(() => {});
  log(`serving http://${config.host}:${config.httpPort} and https://${config.host}:${config.httpsPort}, control on ${paths.socket}`);
  return { proxy, https, control, accessLog, meteringFile: paths.meteringFile, accessLogFile: paths.accessLog };
}

async function stop(s: Serving, signal: string): Promise<void> {
  log(`${signal}: stopping; in-flight requests get ${SHUTDOWN_DEADLINE_MS} ms`);
  s.control.close();
  await Promise.all([s.proxy.close(SHUTDOWN_DEADLINE_MS), s.https.close(SHUTDOWN_DEADLINE_MS)]).catch((e: unknown) => log(`shutdown: ${(e as Error).message}`));
  // Counts the deck server has not saved yet (and those of the requests that just finished) go to a
  // file the next worker starts with.
  const kept = await s.proxy.metering.saveUnsaved(s.meteringFile).catch((e: Error) => {
    log(`metering: cannot keep unsaved usage in ${s.meteringFile}: ${e.message}`);
    return 0;
  });
  if (kept > 0) log(`metering: kept ${kept} unsaved usage entries in ${s.meteringFile}`);
  log("stopped");
}

export function runRouterWorker(): void {
  const tell = (message: WorkerMessage) => process.send?.(message);
  let state: { name: "standby" } | { name: "starting" } | { name: "serving"; serving: Serving } | { name: "stopping" } = { name: "standby" };

  // Acknowledged once per turn of the event loop, however many arrived in it.
  let took: number[] = [];
  const acknowledge = (id: number) => {
    if (took.length === 0) setImmediate(() => tell({ type: "took", ids: took.splice(0) }));
    took.push(id);
  };

  process.on("message", (message: unknown, handle: unknown) => {
    if (!isSupervisorMessage(message)) return;
    if (message.type === "serve") {
      if (state.name !== "standby") return;
      state = { name: "starting" };
      serve().then(
        (serving) => {
          if (state.name !== "starting") return;
          state = { name: "serving", serving };
          tell({ type: "serving" });
        },
        (e: unknown) => {
          log(`failed to start serving: ${(e as Error).message}`);
          process.exit(1);
        },
      );
      return;
    }
    acknowledge(message.id);
    const socket = handle as Socket | undefined;
    if (socket === undefined) return;
    if (state.name !== "serving") return void socket.destroy();
    // The supervisor accepted it: from here it is like a connection this worker accepted itself.
    const server = message.kind === "http" ? state.serving.proxy.server : state.serving.https.server;
    server.emit("connection", socket);
  });

  const onStop = (signal: string) => {
    const current = state;
    if (current.name === "stopping") return;
    state = { name: "stopping" };
    if (current.name !== "serving") return process.exit(0);
    void stop(current.serving, signal).then(() => process.exit(0));
  };
  process.on("SIGTERM", () => onStop("SIGTERM"));
  process.on("SIGINT", () => onStop("SIGINT"));
  // After logrotate renames the access log: the next lines go to a new file under the old name.
  for (const signal of ["SIGUSR1", "SIGHUP"] as const) {
    process.on(signal, () => {
      if (state.name !== "serving" || state.serving.accessLog === undefined) return;
      log(`${signal}: reopening ${state.serving.accessLogFile}`);
      state.serving.accessLog.reopen();
    });
  }
  tell({ type: "loaded" });
}
