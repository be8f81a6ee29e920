/**
 * The router process: `node --import tsx router/main.ts`.
 *
 * Runs on its own (not in the deck server's process group) so apps stay reachable while the deck
 * server crashes or restarts. It serves the last saved route table from the moment it starts.
 * Reads DECK_HOST, DECK_HTTP_PORT, DECK_HTTPS_PORT and DECK_DATA_DIR through loadConfig().
 */
import { chmod, mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { loadConfig } from "../config/index.ts";
import { listenOn } from "../core/index.ts";
import { createControlServer } from "./control-server.ts";
import { probeRouter } from "./control-client.ts";
import { routerPaths } from "./paths.ts";
import { AccessLog } from "./access-log.ts";
import { createRateLimiter, limitsFromConfig } from "./limits-config.ts";
import { createProxyServer } from "./proxy-server.ts";
import { RouteTable } from "./route-table.ts";
import { loadRoutesFile } from "./routes-file.ts";
import { loadCertsFile } from "./certs-file.ts";
import { CertStore, createTlsFrontend } from "./tls-server.ts";

/** How long in-flight requests get to finish after SIGTERM before connections are cut. */
const SHUTDOWN_DEADLINE_MS = 5_000;

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString()} router[${process.pid}] ${line}\n`);
}

async function removeIfOurs(pidFile: string): Promise<void> {
  const text = await readFile(pidFile, "utf8").catch(() => "");
  if (text.trim() === String(process.pid)) await unlink(pidFile).catch(() => {});
}

async function main(): Promise<number> {
  const config = loadConfig();
  const paths = routerPaths(config.dataDir);
  await mkdir(paths.runDir, { recursive: true });

  if (existsSync(paths.socket)) {
    const other = await probeRouter(paths.socket);
    if (other) {
      log(`another router (pid ${other.pid}) already answers on ${paths.socket}; not starting`);
      return 1;
    }
    await unlink(paths.socket).catch(() => {});
  }

  const loaded = await loadRoutesFile(paths.routesFile);
  let initial = loaded.ok ? loaded.routes : [];
  if (!loaded.ok) log(`ignoring saved routes: ${loaded.message}; starting with an empty table until the deck server sends one`);
  let table: RouteTable;
  try {
    table = new RouteTable(initial);
  } catch (e) {
    log(`ignoring saved routes: ${(e as Error).message}`);
    initial = [];
    table = new RouteTable();
  }
  log(`loaded ${initial.length} routes from ${paths.routesFile}`);

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
    table, inflight: (u) => proxy.inflight(u), metering: proxy.metering, routesFile: paths.routesFile, log,
    certs: { store: certs, file: paths.certsFile }, challenges: proxy.challenges,
  });
  const https = createTlsFrontend({ proxy, certs, log });

  // The HTTP port first: the control socket answering /health is the signal that the router is up.
  try {
    await proxy.listen(config.httpPort, config.host);
  } catch (e) {
    log(`cannot listen on ${config.host}:${config.httpPort}: ${(e as Error).message}`);
    return 1;
  }
  try {
    await https.listen(config.httpsPort, config.host);
  } catch (e) {
    log(`cannot listen on ${config.host}:${config.httpsPort} for HTTPS: ${(e as Error).message} (set another with DECK_HTTPS_PORT)`);
    await proxy.close(0);
    return 1;
  }
  await writeFile(paths.pidFile, `${process.pid}\n`);
  try {
    await listenOn(control, paths.socket);
  } catch (e) {
    log(`cannot listen on ${paths.socket}: ${(e as Error).message} (another router starting?)`);
    await Promise.all([proxy.close(0), https.close(0)]);
    await removeIfOurs(paths.pidFile);
    return 1;
  }
  await chmod(paths.socket, 0o600).catch(() => {});
  log(`serving http://${config.host}:${config.httpPort} and https://${config.host}:${config.httpsPort}, control on ${paths.socket}`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log(`${signal}: stopping; in-flight requests get ${SHUTDOWN_DEADLINE_MS} ms`);
      control.close();
      Promise.all([proxy.close(SHUTDOWN_DEADLINE_MS), https.close(SHUTDOWN_DEADLINE_MS)])
        .catch((e: unknown) => log(`shutdown: ${(e as Error).message}`))
        .then(async () => {
          // Counts the deck server has not saved yet (and those of the requests that just finished) go
          // to a file the next router starts with.
          const kept = await proxy.metering.saveUnsaved(paths.meteringFile).catch((e: Error) => {
            log(`metering: cannot keep unsaved usage in ${paths.meteringFile}: ${e.message}`);
            return 0;
          });
          if (kept > 0) log(`metering: kept ${kept} unsaved usage entries in ${paths.meteringFile}`);
          // The socket file went with control.close() (Node unlinks it), so a successor's is left alone.
          await removeIfOurs(paths.pidFile);
          log("stopped");
          resolve(0);
        });
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    // After logrotate renames the access log: the next lines go to a new file under the old name.
    for (const signal of ["SIGUSR1", "SIGHUP"] as const) {
      process.on(signal, () => {
        if (accessLog === undefined) return;
        log(`${signal}: reopening ${paths.accessLog}`);
        accessLog.reopen();
      });
    }
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    log(`failed to start: ${(e as Error).message}`);
    process.exit(1);
  },
);
