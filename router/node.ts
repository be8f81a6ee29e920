/**
 * A router node: `deck server --role router`. It serves apps like the deck server's own router, but
 * takes its routes from PostgreSQL instead of a control socket, so several nodes on several machines
 * can stand in front of the same apps.
 *
 * It listens for `deck_routes` notifications and applies each change to its in-memory table within
 * milliseconds (route-sync.ts); every second it also looks for changes it may have missed, and reports
 * in `router_nodes` which route version it serves and what it has in flight to which upstream, so a
 * deploy stops old processes only once every live node has moved off them. When PostgreSQL is away it
 * keeps serving its last table (also saved to a file, for a restart meanwhile) and reloads everything
 * once it is back.
 *
 * It also samples its own traffic per app into `metric_samples` (source `router:HOST:PORT`, added to
 * the deck servers' rows by readers), and checks every app's health check path through itself as an
 * uptime location of its own (`uptime APP` names the node in incidents it saw).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { coalesced, DeckError, listenOn } from "../core/index.ts";
import type { DeckConfig } from "../config/index.ts";
import { listenForNotifications, openDatabase, redactUrl, type Database, type NotificationListener } from "../store/index.ts";
import {
  CERTS_CHANNEL, CHALLENGES_CHANNEL, listAcmeChallenges, listRouteChangesSince, listServableCertificates, pruneRouterNodes, removeRouterNode, ROUTES_CHANNEL,
  saveRouterNodeHeartbeat,
} from "../store/queries/index.ts";
import { configureSecrets, masterKeyFile } from "../store/secret-box.ts";
import { MetricsCollector } from "../monitor/collector.ts";
import { UptimeProber } from "../monitor/uptime/index.ts";
import { endUptimeLocation } from "../store/queries/uptime.ts";
import { AccessLog } from "./access-log.ts";
import { loadCertsFile, saveCertsFile } from "./certs-file.ts";
import { createRateLimiter, limitsFromConfig } from "./limits-config.ts";
import { createMetricsServer } from "./metrics-server.ts";
import { createProxyServer } from "./proxy-server.ts";
import { UsageSaver } from "./usage-saver.ts";
import { RouteTable } from "./route-table.ts";
import { RouteSync } from "./route-sync.ts";
import { loadRoutesFile, saveRoutesFile } from "./routes-file.ts";
import { CertStore, createTlsFrontend } from "./tls-server.ts";

/** How long in-flight requests get to finish on SIGTERM before connections are cut. */
export const NODE_SHUTDOWN_DEADLINE_MS = 5_000;
const HEARTBEAT_MS = 1_000;
/** While requests to upstreams that left the table are still running, a deploy is waiting on them. */
const DRAINING_HEARTBEAT_MS = 100;
/** Rows of nodes silent this long (stopped without saying so) are removed by the next node to start. */
const FORGET_NODES_SECONDS = 24 * 3600;

export interface RouterNodeOptions {
  config: DeckConfig;
  log?: (line: string) => void;
}

export interface RouterNode {
  readonly id: string;
  readonly label: string;
  /** Stops accepting, lets requests finish until the deadline, then leaves `router_nodes`. */
  stop(deadlineMs?: number): Promise<void>;
  /** Opens the access log again by its name (after logrotate renamed it). */
  reopenLogs(): void;
}

export interface RouterNodePaths {
  routesFile: string;
  certsFile: string;
  accessLog: string;
  /** Bandwidth not yet saved to PostgreSQL when the node stopped, taken back at the next start. */
  meteringFile: string;
}

/** Files of the node listening on `httpPort` (several nodes may share one data dir on one machine). */
export function routerNodePaths(dataDir: string, httpPort: number): RouterNodePaths {
  return {
    routesFile: join(dataDir, "run", `router-node-${httpPort}-routes.json`),
    certsFile: join(dataDir, "run", `router-node-${httpPort}-certs.json`),
    accessLog: join(dataDir, "logs", `router-node-${httpPort}-access.log`),
    meteringFile: join(dataDir, "run", `router-node-${httpPort}-metering.json`),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const firstLine = (e: unknown) => ((e as Error)?.message ?? String(e)).split("\n")[0];

/** The last table this node served, so it can serve before (or without) reaching PostgreSQL. */
async function loadSavedTable(file: string, log: (line: string) => void): Promise<RouteTable> {
  const saved = await loadRoutesFile(file);
  try {
    if (!saved.ok) throw new Error(saved.message);
    const table = new RouteTable(saved.routes);
    if (!saved.missing) log(`serving ${saved.routes.length} saved route(s) from ${file} until the database is read`);
    return table;
  } catch (e) {
    log(`ignoring saved routes: ${firstLine(e)}`);
    return new RouteTable();
  }
}

async function loadSavedCerts(file: string, log: (line: string) => void): Promise<CertStore> {
  const certs = await CertStore.create(log);
  const saved = await loadCertsFile(file);
  try {
    if (!saved.ok) throw new Error(saved.message);
    for (const reason of [...saved.skipped, ...certs.replace(saved.certs)]) log(`certificates: left out ${reason}`);
  } catch (e) {
    log(`ignoring saved certificates: ${firstLine(e)}`);
  }
  return certs;
}

export async function startRouterNode(options: RouterNodeOptions): Promise<RouterNode> {
  const { config } = options;
  const log = options.log ?? (() => {});
  const url = config.databaseUrl;
  if (!url) throw new DeckError("database_url_required", "a router node needs DATABASE_URL: the PostgreSQL the deck server uses");
  const paths = routerNodePaths(config.dataDir, config.httpPort);
  const id = randomUUID();
  const label = `${hostname()}:${config.httpPort}`;

  const table = await loadSavedTable(paths.routesFile, log);
  // Private keys are sealed with the deck server's master key: DECK_MASTER_KEY, or its key file when
  // the node shares the deck server's data dir. A node never makes a key of its own.
  const canOpenKeys = Boolean(config.masterKey) || existsSync(masterKeyFile(config.dataDir));
  if (canOpenKeys) configureSecrets({ dataDir: config.dataDir, masterKey: config.masterKey });
  else log("HTTPS: DECK_MASTER_KEY is not set, so certificates stored by the deck server cannot be opened; serving the self-signed certificate only (set it to the content of the deck server's DATA_DIR/keys/master.key)");
  const certs = await loadSavedCerts(paths.certsFile, log);

  const rateLimiter = createRateLimiter(config, log);
  const accessLog = config.accessLog === "on" ? new AccessLog(paths.accessLog, log) : undefined;
  // The node's own uptime checks carry this secret, so they are not metered as the apps' traffic.
  const probeToken = randomBytes(32).toString("base64url");
  const proxy = createProxyServer({ table, log, limits: limitsFromConfig(config), rateLimiter, accessLog, httpsPort: config.httpsPort, probeToken });
  const https = createTlsFrontend({ proxy, certs, log });
  const unsaved = await proxy.metering.loadUnsaved(paths.meteringFile);
  if ("error" in unsaved) log(`metering: cannot read unsaved usage: ${unsaved.error}`);
  else if (unsaved.entries > 0 || unsaved.skipped) log(`metering: took back ${unsaved.entries} unsaved usage entries from ${paths.meteringFile}${unsaved.skipped ? `; left out ${unsaved.skipped} that did not read as counts` : ""}`);
  const listen = async (what: string, host: string, port: number, envName: string, start: () => Promise<void>) => {
    try {
      await start();
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code === "EADDRINUSE" ? "already in use" : firstLine(e);
      throw new DeckError("listen_failed", `cannot listen for ${what} on ${host}:${port}: ${reason} (set another with ${envName})`);
    }
  };
  await listen("HTTP", config.host, config.httpPort, "DECK_HTTP_PORT", () => proxy.listen(config.httpPort, config.host));
  try {
    await listen("HTTPS", config.host, config.httpsPort, "DECK_HTTPS_PORT", () => https.listen(config.httpsPort, config.host));
  } catch (e) {
    await proxy.close(0);
    throw e;
  }
  const metrics = config.metricsPort > 0 ? createMetricsServer(proxy.metering) : null;
  if (metrics !== null) {
    try {
      await listen("metrics", config.metricsHost, config.metricsPort, "DECK_METRICS_PORT", () => listenOn(metrics, config.metricsPort, config.metricsHost));
    } catch (e) {
      await Promise.all([proxy.close(0), https.close(0)]);
      throw e;
    }
  }

  let db: Database | null = null;
  let listener: NotificationListener | null = null;
  let stopping = false;
  let dbTrouble = "";
  const trouble = (what: string, e: unknown) => {
    const message = `${what}: ${firstLine(e)}`;
    if (message !== dbTrouble) log(`database: ${message}; serving the last routes`);
    dbTrouble = message;
  };
  const recovered = () => {
    if (dbTrouble !== "") log("database: reachable again");
    dbTrouble = "";
  };

  const saveRoutes = coalesced(() => saveRoutesFile(paths.routesFile, table.routes()).catch((e) => log(`cannot save routes to ${paths.routesFile}: ${firstLine(e)}`)));

  /** Upstreams in flight that the table no longer routes to: a deploy is draining them. */
  const draining = (inflight: Record<string, number>): boolean => {
    const keys = Object.keys(inflight);
    if (keys.length === 0) return false;
    const live = new Set<string>();
    for (const entry of table.snapshot.byApp.values()) for (const u of entry.upstreams) live.add(u.address);
    return keys.some((k) => !live.has(k));
  };

  const heartbeat = coalesced(async () => {
    if (db === null) return;
    try {
      await saveRouterNodeHeartbeat(db.pool, { id, label, routeVersion: sync.version, inflight: proxy.inflightByUpstream() });
      recovered();
    } catch (e) {
      trouble("cannot report to router_nodes", e);
      // The listening connection may be just as dead without having noticed yet.
      if (listener?.connected) listener.reconnect();
    }
  });

  // Every second, and every 100 ms while a deploy waits for this node's requests to old upstreams.
  let timer: NodeJS.Timeout | undefined;
  let beating = true;
  let ticking = false;
  const schedule = (ms: number) => {
    clearTimeout(timer);
    if (beating) timer = setTimeout(() => void tick(), ms);
  };
  const tick = async () => {
    ticking = true;
    try {
      await heartbeat();
      // Also the safety net for a notification that never arrived.
      if (db !== null && listener?.connected) await sync.catchUp().catch((e) => trouble("cannot read routes", e));
    } finally {
      ticking = false;
    }
    schedule(draining(proxy.inflightByUpstream()) ? DRAINING_HEARTBEAT_MS : HEARTBEAT_MS);
  };

  const sync = new RouteSync({
    table,
    fetchSince: (version) => listRouteChangesSince(db!.pool, version),
    log,
    onApplied: () => {
      void saveRoutes();
      void heartbeat();
      // Requests to the upstreams just replaced are watched closely from now on.
      if (!ticking) schedule(DRAINING_HEARTBEAT_MS);
    },
  });

  let lastCertTrouble = "";
  const certTrouble = (e: unknown) => {
    const message = firstLine(e);
    if (message !== lastCertTrouble) log(`certificates: cannot load them (${message}); serving the ones loaded before`);
    lastCertTrouble = message;
  };
  const loadCertificates = coalesced(async () => {
    if (db === null || !canOpenKeys) return;
    const list = await listServableCertificates(db.pool);
    for (const reason of certs.replace(list)) log(`certificates: left out ${reason}`);
    lastCertTrouble = "";
    log(`certificates: serving ${certs.certificates().length} from the database`);
    await saveCertsFile(paths.certsFile, certs.certificates()).catch((e) => log(`cannot save certificates to ${paths.certsFile}: ${firstLine(e)}`));
  });

  const loadChallenges = async () => {
    if (db !== null) proxy.challenges.replaceAll(await listAcmeChallenges(db.pool));
  };
  const reloadEverything = async () => {
    await sync.reloadAll();
    await loadCertificates().catch(certTrouble);
    await loadChallenges().catch((e) => trouble("cannot read ACME challenges", e));
    recovered();
  };

  let firstRead: () => void = () => {};
  const firstReadDone = new Promise<void>((r) => (firstRead = r));

  // Samples and uptime checks start with the first database connection (the pool reconnects by itself).
  let monitoring: { collector: MetricsCollector; prober: UptimeProber } | null = null;
  const startMonitoring = (database: Database) => {
    if (monitoring !== null) return;
    const collector = new MetricsCollector({
      db: database.pool, intervalSeconds: config.metricsInterval, log, source: `router:${label}`, rollups: false,
      sources: { processes: async () => [], stats: async () => [], routerCounters: async () => ({ ...proxy.metering.counters(), inflight: proxy.inflightByUpstream() }) },
    });
    const prober = new UptimeProber({
      db: database.pool, httpPort: config.httpPort, domain: config.domain, intervalMs: config.uptimeInterval * 1000, log, probeToken, location: label,
      host: config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host,
    });
    collector.start();
    prober.start();
    monitoring = { collector, prober };
  };

  const startListening = (database: Database) => {
    db = database;
    startMonitoring(database);
    void pruneRouterNodes(database.pool, FORGET_NODES_SECONDS).catch(() => undefined);
    listener = listenForNotifications({
      url,
      channels: [ROUTES_CHANNEL, CERTS_CHANNEL, CHALLENGES_CHANNEL],
      log,
      onNotification: (channel, payload) => {
        if (channel === ROUTES_CHANNEL) sync.notified(payload);
        else if (channel === CHALLENGES_CHANNEL) void loadChallenges().catch((e) => trouble("cannot read ACME challenges", e));
        else void loadCertificates().catch(certTrouble);
      },
      onConnected: async () => {
        try {
          await reloadEverything();
        } catch (e) {
          trouble("cannot read routes", e);
        } finally {
          firstRead();
        }
      },
    });
  };

  // The first attempt is waited for, so a node that can reach its database starts with current routes.
  const connect = async () => {
    for (let delay = 500; !stopping; delay = Math.min(delay * 2, 10_000)) {
      try {
        const database = await openDatabase({ dataDir: config.dataDir, databaseUrl: url, log });
        if (stopping) return void (await database.close());
        recovered();
        return startListening(database);
      } catch (e) {
        trouble(`cannot connect to ${redactUrl(url)}`, e);
        firstRead();
        await sleep(delay);
      }
    }
  };
  void connect();
  await Promise.race([firstReadDone, sleep(15_000)]);

  schedule(HEARTBEAT_MS);

  // Bandwidth for billing, as the deck server does for its own router.
  const usage = new UsageSaver(() => db?.pool ?? null, proxy.metering, log);
  usage.start(config.meteringInterval * 1000);

  const metricsNote = metrics === null ? "" : `; metrics on http://${config.metricsHost.includes(":") ? `[${config.metricsHost}]` : config.metricsHost}:${config.metricsPort}/metrics`;
  log(`router node ${label} (${id}) serving http://${config.host}:${config.httpPort} and https://${config.host}:${config.httpsPort}; routes from ${redactUrl(url)}${metricsNote}`);

  let stopped: Promise<void> | undefined;
  return {
    id,
    label,
    reopenLogs() {
      accessLog?.reopen();
    },
    stop(deadlineMs = NODE_SHUTDOWN_DEADLINE_MS) {
      stopped ??= (async () => {
        stopping = true;
        // Heartbeats go on while requests finish: a deploy under way keeps waiting for them.
        await Promise.all([proxy.close(deadlineMs), https.close(deadlineMs)]).catch((e) => log(`shutdown: ${firstLine(e)}`));
        if (metrics !== null) {
          metrics.closeAllConnections();
          await new Promise((r) => metrics.close(r));
        }
        beating = false;
        clearTimeout(timer);
        const watching = monitoring as { collector: MetricsCollector; prober: UptimeProber } | null;
        if (watching !== null) await Promise.all([watching.collector.stop(), watching.prober.stop()]);
        await usage.stop();
        // What the database did not take is kept for the next start.
        await proxy.metering.saveUnsaved(paths.meteringFile).catch((e) => log(`metering: cannot keep unsaved usage in ${paths.meteringFile}: ${firstLine(e)}`));
        await (listener as NotificationListener | null)?.close();
        await accessLog?.close();
        await rateLimiter.close().catch(() => undefined);
        const database = db as Database | null;
        if (database !== null) {
          await removeRouterNode(database.pool, id).catch(() => undefined);
          // Incidents this node saw end with its last check: nobody looks from here any more.
          await endUptimeLocation(database.pool, label).catch((e) => log(`uptime: cannot end this node's incidents: ${firstLine(e)}`));
          await database.close().catch(() => undefined);
        }
        log("stopped");
      })();
      return stopped;
    },
  };
}
