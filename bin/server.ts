import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, writeFile, rm } from "node:fs/promises";
import { hostname } from "node:os";
import pg from "pg";
import type { Server as NetServer } from "node:net";
import type http from "node:http";
import { createApiServer } from "../api/index.ts";
import type { StreamEvent } from "../api/event-stream.ts";
import { createAuthDeps, setPassword } from "../api/auth/index.ts";
import { oauthProvidersFromConfig } from "../api/auth/oidc.ts";
import { readImageRef, removeBuildLeftovers, runBuild } from "../builder/index.ts";
import { ConfigError, SANDBOX_UID_RANGE, type DeckConfig } from "../config/index.ts";
import { listenOn, type Listenable } from "../core/index.ts";
import { AppQueue, BuildRuns, BuildSlots, DeployEvents, endOrphanedDeployments, holderName, pathsFor, reconcile, refreshRoute, resendRoutes, RouteLocks, type DeployDeps } from "../deploy/index.ts";
import { CertManager, pushCertificates } from "../deploy/index.ts";
import { createSshServer, ensureRepo, installHook, loadOrCreateHostKey, PushRegistry, removeRepo, resumeQueuedPushes, startHookBridge } from "../gitd/index.ts";
import { createRouterControl, ensureRouter } from "../router/index.ts";
import { RouterWatch } from "../router/router-watch.ts";
import { createRouterMetering } from "../router/metering-client.ts";
import { UsageSaver } from "../router/usage-saver.ts";
import { publishRoutes } from "../router/route-publisher.ts";
import { createDockerClient, DockerRuntime, findFreePort, formatProtection, ProcessRuntime, scopeFor } from "../runtime/index.ts";
import { applyNetworkRules } from "../runtime/network-rules.ts";
import { probeSandbox } from "../runtime/sandbox.ts";
import { openDatabase, SharedEvents, type Database } from "../store/index.ts";
import { MetricsCollector } from "../monitor/collector.ts";
import { NotifyWorker } from "../monitor/notify/index.ts";
import { UptimeProber } from "../monitor/uptime/index.ts";
import { AlertEvaluator } from "../monitor/alerts/index.ts";
import { AutoscaleController } from "../monitor/autoscale/index.ts";
import { DrainShipper, LogRetention, routerAccessLog, SUPERVISOR_MAX_LOG_BYTES } from "../monitor/logs/index.ts";
import { rollbackOnAlert } from "../ops/alerts.ts";
import { scaleForAutoscale } from "../ops/autoscale.ts";
import { admitBuild } from "../billing/account/quota.ts";
import { CapWatch } from "../billing/account/cap-watch.ts";
import { BandwidthWatch } from "../billing/account/bandwidth-watch.ts";
import { InvoiceJobs } from "../billing/invoices/index.ts";
import { LedgerJobs } from "../billing/ledger/index.ts";
import { stripeSyncFromConfig } from "../billing/stripe-sync/index.ts";
import { listenForNotifications } from "../store/notification-listener.ts";
import { findApp, listKeptSlugPaths, listSandboxUidsOutside } from "../store/queries/index.ts";
import { configureSecrets } from "../store/secret-box.ts";
import { networkRulesSpecFor, probeMasterKey } from "./doctor.ts";
import { networkInterfaces } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type ssh2 from "ssh2";

/**
 * Loads this deck's network rules and logs one line for every protection that is off, naming it and
 * how to turn it on: nothing that keeps tenants apart is off without a word.
 */
export async function reportProtections(config: DeckConfig, db: Database, log: (line: string) => void): Promise<void> {
  const outside = await listSandboxUidsOutside(db.pool, config.sandboxUidBase, SANDBOX_UID_RANGE);
  const network = await applyNetworkRules(await networkRulesSpecFor(config, outside));
  const checks = [...(await probeSandbox()), network, await probeMasterKey(config)];
  for (const p of checks.filter((c) => !c.on)) log(`protection off: ${formatProtection(p)}`);
}

/**
 * Holds a PostgreSQL advisory lock named after this host and data dir for as long as the server runs
 * (on a connection of its own: the lock goes with the connection, so a crashed server frees it).
 */
export async function holdDataDir(url: string, dataDir: string): Promise<() => Promise<void>> {
  const key = createHash("sha256").update(`${hostname()}:${dataDir}`).digest().readBigInt64BE(0);
  const client = new pg.Client({ connectionString: url });
  // Failures after connecting surface as the next query's error; none may crash the process.
  client.on("error", () => {});
  await client.connect();
  const held = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1::bigint) AS ok", [key.toString()]);
  if (!held.rows[0]?.ok) {
    await client.end();
    throw new Error(`another deck server is running on ${dataDir}; stop it first (deck down), or give this one another DECK_DATA_DIR`);
  }
  return () => client.end();
}

/** Bytes of the Docker images an app's kept builds point to (each image once): its share of billable storage. */
async function appImageBytes(db: Database["pool"], docker: ReturnType<typeof createDockerClient>, app: string): Promise<number> {
  const slugs = await listKeptSlugPaths(db, app);
  const seen = new Set<string>();
  let bytes = 0;
  for (const slug of slugs) {
    const ref = await readImageRef(slug);
    if (!ref || seen.has(ref.image)) continue;
    seen.add(ref.image);
    bytes += (await docker.inspectImage(ref.image))?.size ?? 0;
  }
  return bytes;
}

/** Where deck itself is installed (its deck.yaml may sit beside it). */
const DECK_ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

/**
 * What no build or app process may see even where it lies under a directory the sandbox binds (deck
 * installed under /opt, say): the data dir, deck's own install, and the directory of its deck.yaml
 * (master key, database URL, OIDC secrets) unless that is a system directory the sandbox needs.
 */
export function hiddenFromApps(config: DeckConfig): string[] {
  const out = [config.dataDir, DECK_ROOT];
  const configDir = config.configFile ? dirname(config.configFile) : undefined;
  if (configDir && !["/", "/etc", "/opt", "/usr", "/usr/local"].includes(configDir)) out.push(configDir);
  return out;
}

export interface RunningServer {
  deps: DeployDeps;
  stop(): Promise<void>;
}

async function listen(server: http.Server | ssh2.Server | NetServer, port: number, host: string): Promise<void> {
  await listenOn(server as Listenable, port, host).catch((e: NodeJS.ErrnoException) => {
    throw e.code === "EADDRINUSE" ? new Error(`port ${port} on ${host} is already in use (set another with the matching DECK_*_PORT)`) : e;
  });
}

/**
 * The router process reads its settings from the environment only (it must start without the
 * deck server), so every router setting from deck.yaml or the environment is passed explicitly.
 */
function routerEnv(config: DeckConfig, probeToken: string): Record<string, string> {
  const env: Record<string, string> = {
    DECK_PROBE_TOKEN: probeToken,
    DECK_DATA_DIR: config.dataDir, DECK_HOST: config.host, DECK_HTTP_PORT: String(config.httpPort), DECK_HTTPS_PORT: String(config.httpsPort),
    DECK_DOMAIN: config.domain, DECK_RATE_LIMIT: String(config.rateLimitRps), DECK_RATE_BURST: String(config.rateLimitBurst),
    DECK_MAX_BODY_SIZE: String(config.maxBodyBytes), DECK_HEADER_TIMEOUT: String(config.headerTimeout), DECK_BODY_TIMEOUT: String(config.bodyTimeout), DECK_IDLE_TIMEOUT: String(config.idleTimeout),
    DECK_MAX_CONNECTIONS_PER_IP: String(config.maxConnectionsPerIp), DECK_PAUSE_TIMEOUT: String(config.pauseTimeout), DECK_ACCESS_LOG: config.accessLog,
  };
  if (config.redisUrl) env.REDIS_URL = config.redisUrl;
  return env;
}

/** A random secret kept in `file` (mode 600), made the first time. */
async function loadOrCreateProbeToken(file: string): Promise<string> {
  const existing = await readFile(file, "utf8").then((t) => t.trim(), () => "");
  if (/^[A-Za-z0-9_-]{32,}$/.test(existing)) return existing;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString("base64url");
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  return token;
}

/** Where builder nodes reach this server's API port (DECK_NODE_URL, else the address it listens on). */
export function nodeUrl(config: DeckConfig): string {
  if (config.nodeUrl) return config.nodeUrl;
  const host = config.host === "0.0.0.0" ? "127.0.0.1" : config.host === "::" ? "[::1]" : config.host.includes(":") ? `[${config.host}]` : config.host;
  return `http://${host}:${config.apiPort}`;
}

/** App processes are published on DECK_UPSTREAM_HOST: it must be an address of this machine. */
async function checkUpstreamHost(host: string): Promise<void> {
  try {
    await findFreePort(host);
  } catch (e) {
    const own = Object.values(networkInterfaces()).flat().filter((a) => a !== undefined && !a.internal && !a.address.startsWith("fe80:")).map((a) => a!.address);
    throw new ConfigError(
      `DECK_UPSTREAM_HOST="${host}" is not an address of this machine (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); ` +
        `use 127.0.0.1 or one of ${own.length > 0 ? own.join(", ") : "its network addresses"}`,
    );
  }
}

/**
 * `deck server`: the control plane. Apps and the router run as their own processes, so they keep
 * serving while this process restarts; on start it adopts them and reconciles with the database.
 */
export async function startServer(config: DeckConfig, log: (line: string) => void = (l) => console.log(l)): Promise<RunningServer> {
  const paths = pathsFor(config.dataDir);
  for (const d of [paths.runDir, paths.procStateDir, join(config.dataDir, "logs"), join(config.dataDir, "repos")]) await mkdir(d, { recursive: true });
  // Before the database starts: a bad DECK_MASTER_KEY then stops deck with nothing left running.
  configureSecrets({ dataDir: config.dataDir, masterKey: config.masterKey });
  // Likewise a docker runtime without an engine.
  const docker = config.runtime === "docker" ? createDockerClient() : undefined;
  if (docker) {
    await docker.ping().catch((e: Error) => {
      throw new Error(`DECK_RUNTIME=docker but no Docker engine answers (${e.message.split("\n")[0]}); start dockerd or set DOCKER_HOST`);
    });
  }
  await checkUpstreamHost(config.upstreamHost);
  // What has started, stopped in reverse order: by stop(), or at once when a later step fails (a port
  // already in use …), so a failed start leaves no socket, timer or database pool behind.
  const started: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of started.splice(0).reverse()) await stop();
  };
  try {
    const db: Database = await openDatabase({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, log });
    started.push(() => db.close());
    // One server per data dir: a second one started by mistake would take the first one's work for
    // abandoned (its queue entries, its half-built slugs) before failing on a port already in use.
    started.push(await holdDataDir(db.url, config.dataDir));
    // What a build killed with an earlier run of the server left (half-written slugs, work dirs).
    await removeBuildLeftovers({ appsDir: join(config.dataDir, "apps"), cacheDir: join(config.dataDir, "cache"), log });
    // Before any app is adopted or started; kept when deck stops, since the apps outlive it.
    await reportProtections(config, db, log);
    // The secret deck's uptime checks show the router so that it does not meter them as the apps' traffic;
    // kept with deck's keys, since the router outlives this process.
    const probeToken = await loadOrCreateProbeToken(join(config.dataDir, "keys", "probe.token"));
    const launchRouter = () => ensureRouter({
      dataDir: config.dataDir,
      logFile: join(config.dataDir, "logs", "router.log"),
      env: { ...process.env, ...routerEnv(config, probeToken), DECK_CONFIG: "" },
    });
    const router = await launchRouter();
    log(router.started ? `router started (pid ${router.pid}) on http://${config.host}:${config.httpPort}` : `router already running (pid ${router.pid}); adopted`);

    const runtime = docker
      ? new DockerRuntime({ client: docker, stateDir: join(paths.runDir, "docker"), scope: scopeFor(config.dataDir), memoryBytes: config.appMemory, cpus: config.appCpus, log })
      : new ProcessRuntime({ stateDir: paths.procStateDir, memoryBytes: config.appMemory, cpus: config.appCpus, hide: hiddenFromApps(config), maxLogBytes: SUPERVISOR_MAX_LOG_BYTES });
    if (runtime instanceof DockerRuntime) {
      started.push(() => runtime.close());
      // The containers' firewall is in place before the first build or container of this run.
      for (const p of await runtime.prepare()) if (!p.on) log(`protection off: ${formatProtection(p)}`);
    }

    // Saves the bandwidth the router has counted (before an app's rows go, and on a timer).
    const routerMetering = createRouterMetering(paths.routerSocket);
    const metering = new UsageSaver(() => db.pool, routerMetering, log);
    // The apps' lines of work live in PostgreSQL; a notification wakes entries waiting here when
    // another server finishes work, and each entry also looks again on its own every half second.
    const holder = holderName(config.dataDir);
    const queue = new AppQueue({ db: db.pool, holder, mode: config.deployQueue, log });
    const builds = new BuildSlots({ db: db.pool, holder, limit: config.buildConcurrency, originUrl: nodeUrl(config), log });
    queue.start();
    builds.start();
    await builds.dropAbandoned();
    const wakeBoth = () => {
      queue.wake();
      builds.wake();
    };
    const queueWakeups = listenForNotifications({ url: db.url, channels: ["deck_app_queue", "deck_build_queue"], onNotification: wakeBoth, onConnected: wakeBoth, log });
    started.push(async () => {
      queue.stop();
      builds.stop();
      await queueWakeups.close();
    });
    // Stripe, when STRIPE_SECRET_KEY is set: subscriptions, usage on its meters, its webhooks (billing/stripe-sync).
    const stripe = stripeSyncFromConfig(config, db.pool, log);
    const base: DeployDeps = {
      db: db.pool,
      config,
      paths,
      runtime,
      // Route changes also go to PostgreSQL for router nodes (`deck server --role router`).
      router: publishRoutes(createRouterControl(paths.routerSocket), { db: db.pool, log }),
      build: (req) => runBuild(req, {
        runtime: config.runtime, engine: docker, baseImage: config.baseImage,
        imageBuildLimits: { memoryBytes: config.buildMemory, cpus: config.buildCpus },
        // The data dir is never visible to a build, even where it lies under a directory the sandbox binds.
        hide: hiddenFromApps(config),
      }),
      allocatePort: () => findFreePort(config.upstreamHost),
      queue,
      builds,
      runs: new BuildRuns(),
      routes: new RouteLocks(),
      events: new DeployEvents(),
      repos: { ensure: (app) => ensureRepo(paths, app), remove: (app) => removeRepo(paths, app) },
      loadImage: docker ? (tar) => docker.loadImage(tar) : undefined,
      hasImage: docker ? async (id) => (await docker.inspectImage(id)) !== undefined : undefined,
      removeArtifactImage: docker
        ? async (slugPath) => {
            const ref = await readImageRef(slugPath);
            if (ref) await docker.removeImage(ref.image);
          }
        : undefined,
      log,
      saveUsage: () => metering.saveAll(),
      onPlanChanged: stripe ? async (orgId) => void (await stripe.onPlanChanged(orgId)) : undefined,
      paymentPages: stripe ?? undefined,
      // Free plans stop at their build minutes, spend caps stop builds; a check that cannot be made lets the push through (and says so).
      admitBuild: (app) => admitBuild(db.pool, app).catch((e: Error) => {
        log(`billing: could not check ${app.name}'s quota, building anyway: ${e.message}`);
        return null;
      }),
    };
    // Background ACME orders and renewals; the deploy dependencies are complete from here on.
    const certs = new CertManager(base);
    const deps: DeployDeps = { ...base, certs };
    // What GET /api/v1/events streams: every deploy move, uptime change and alert, of this server and of
    // every other deck server on the database.
    const streamEvents = new SharedEvents<StreamEvent>({ db: db.pool, url: db.url, log });
    streamEvents.start();
    started.push(() => streamEvents.close());
    deps.events.subscribe((e) => streamEvents.emit({ type: "deploy", app: e.app, data: { ...e } }));
    deps.events.subscribe((e) => {
      if (e.to === "failed" || e.to === "interrupted") log(`deploy ${e.deploymentId} of ${e.app} (${e.kind}) ${e.to} while ${e.from}: ${e.code ?? ""} ${e.message ?? ""}`.trimEnd());
    });

    // Hooks carry absolute paths (node, socket); rewrite them in case either moved.
    for (const entry of await readdir(join(config.dataDir, "repos")).catch(() => [] as string[])) {
      if (entry.endsWith(".git")) await installHook(join(config.dataDir, "repos", entry), paths);
    }
    metering.start(config.meteringInterval * 1000);
    started.push(async () => {
      // Deploys already under way (a webhook's, a config change's) finish before the database closes;
      // one still running after the deadline is marked failed at the next start.
      if (!(await deps.queue.idle(30_000))) log("stopping with a deploy still running; the next start marks it failed");
      await certs.stop();
      await metering.stop();
    });
    const pushes = new PushRegistry();
    const hookServer = await startHookBridge(deps, pushes, paths.hookSocket);
    started.push(() => new Promise<void>((res) => hookServer.close(() => res())));
    const r = await reconcile(deps);
    // Deployments whose server died without another one starting on its data dir end too.
    const orphans = setInterval(() => {
      endOrphanedDeployments(deps).then(
        (n) => n > 0 && log(`ended ${n} deployment(s) that no deck server works on any more`),
        (e: Error) => log(`looking for deployments no server works on failed: ${e.message}`),
      );
    }, 30_000);
    orphans.unref();
    started.push(async () => clearInterval(orphans));
    // Pushes that waited in line when deck last stopped take their places again before any new work.
    await resumeQueuedPushes(deps, r.resumable);
    // Certificates from the database reach the router, then due orders and renewals start in the background.
    await certs.start();
    if (r.adopted || r.stopped || r.restarted.length) log(`reconciled: ${r.adopted} process(es) adopted, ${r.stopped} stray stopped, restarted ${r.restarted.join(", ") || "none"}`);
    // The router's supervisor restarts its worker; this brings back a router whose supervisor died.
    const watch = new RouterWatch({
      dataDir: config.dataDir, log, start: launchRouter,
      onBack: async () => {
        const n = await resendRoutes(deps);
        await pushCertificates(deps);
        log(`router: sent the routes of ${n} app(s) again`);
      },
    });
    watch.start();
    started.push(() => watch.stop());

    // Alert notices go out from the outbox in PostgreSQL; every deck server on the database sends, none the same row twice.
    const notify = new NotifyWorker({
      db: db.pool, databaseUrl: db.url, smtpUrl: config.smtpUrl, mailFrom: config.smtpFrom, externalUrl: config.publicUrl,
      outboundAllow: config.outboundAllow, log,
    });
    notify.start();
    started.push(() => notify.stop());
    // Judges every app's alert rules after each round of samples and on uptime changes; servers sharing the database take turns.
    // The host users reach deck's SSH at, for the commands notices name.
    const sshHost = config.publicUrl ? new URL(config.publicUrl).hostname : config.host === "0.0.0.0" || config.host === "::" ? hostname() : config.host;
    const alerts = new AlertEvaluator({
      db: db.pool, log, sshPort: config.sshPort, sshHost,
      rollback: rollbackOnAlert(deps),
      onEvent: (e) => streamEvents.emit({ type: "alert", app: e.app, data: { ...e } }),
    });
    alerts.start();
    started.push(() => alerts.stop());
    // Scales autoscaled process types (ps:autoscale) on their app's samples; servers sharing the database take turns.
    const autoscale = new AutoscaleController({
      db: db.pool, log, sshPort: config.sshPort, sshHost, intervalMs: config.autoscaleInterval * 1000,
      scale: scaleForAutoscale(deps),
      onEvent: (e) => streamEvents.emit({ type: "scale", app: e.app, data: { ...e } }),
    });
    autoscale.start();
    started.push(() => autoscale.stop());
    // Samples of every app's CPU, memory, restarts and traffic (metrics APP), rolled up and kept by age.
    const collector = new MetricsCollector({
      db: db.pool, intervalSeconds: config.metricsInterval, log, onSample: (at) => alerts.onSample(at), source: holder.prefix.replace(/:$/, ""),
      sources: { processes: () => runtime.list(), stats: () => runtime.stats(), routerCounters: () => routerMetering.counters() },
    });
    collector.start();
    started.push(() => collector.stop());
    // Checks each running app's health check path through the router (uptime APP); servers sharing the database take turns.
    const uptime = new UptimeProber({
      db: db.pool, httpPort: config.httpPort, domain: config.domain, intervalMs: config.uptimeInterval * 1000, log,
      host: config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host,
      probeToken,
      onChange: (c) => {
        streamEvents.emit({ type: "uptime", app: c.app, data: { down: c.down, cause: c.cause, since: c.since, source: c.source } });
        if (c.source === "probe") alerts.onUptime(c);
      },
    });
    uptime.start();
    started.push(() => uptime.stop());
    // Trims every app's log to its retention (logs:retention), in place, every minute.
    const retention = new LogRetention({ db: db.pool, appLog: paths.appLog, log });
    retention.start();
    started.push(() => retention.stop());
    // Billing: build, storage and domain usage into the ledger; last month's invoices an hour after it ended.
    const ledgerJobs = new LedgerJobs({
      db: db.pool, dataDir: config.dataDir, log, intervalMs: config.billingInterval * 1000,
      imageBytes: docker ? (app) => appImageBytes(db.pool, docker, app) : undefined,
    });
    ledgerJobs.start();
    started.push(() => ledgerJobs.stop());
    const invoiceJobs = new InvoiceJobs({ db: db.pool, log, intervalMs: config.billingInterval * 1000 });
    invoiceJobs.start();
    started.push(() => invoiceJobs.stop());
    // Spend caps: notices at 80% and 100% of an org's cap (builds stop at 100%: admitBuild).
    const capWatch = new CapWatch({ db: db.pool, log, intervalMs: config.billingInterval * 1000, sshHost, sshPort: config.sshPort });
    capWatch.start();
    started.push(() => capWatch.stop());
    // Free plans: traffic past the month's bandwidth is throttled (DECK_FREE_THROTTLE), not billed.
    const bandwidthWatch = new BandwidthWatch({
      db: db.pool, log, intervalMs: config.billingInterval * 1000, throttleBytesPerSecond: config.freeThrottle, sshHost, sshPort: config.sshPort,
      applyRoute: async (name) => {
        const app = await findApp(db.pool, name);
        if (app) await refreshRoute(deps, app);
      },
    });
    bandwidthWatch.start();
    started.push(() => bandwidthWatch.stop());
    if (stripe) {
      stripe.start();
      started.push(() => stripe.stop());
    }
    // Ships every app's log lines to its drains (drains:add) as they are written.
    const drains = new DrainShipper({ db: db.pool, appLog: paths.appLog, accessLog: routerAccessLog(config.dataDir), place: holder.prefix.replace(/:$/, ""), outboundAllow: config.outboundAllow, log });
    await drains.start();
    started.push(() => drains.stop());

    const hostKey = await loadOrCreateHostKey(join(config.dataDir, "ssh", "ssh_host_ed25519_key"));
    const ssh = createSshServer({ deps, pushes, hostKey });
    const auth = await createAuthDeps({ db: db.pool, dataDir: config.dataDir });
    const api = createApiServer(deps, pushes, {
      extra: { auth, stripe, oauth: oauthProvidersFromConfig(config), setPassword, routerMetrics: () => routerMetering.metrics(), events: (l: (e: StreamEvent) => void) => streamEvents.subscribe(l) },
    });
    await listen(ssh, config.sshPort, config.host);
    started.push(() => new Promise<void>((res) => ssh.close(() => res())));
    await listen(api, config.apiPort, config.host);
    started.push(() => new Promise<void>((res) => { api.close(() => res()); api.closeAllConnections(); }));
    await writeFile(join(paths.runDir, "server.pid"), `${process.pid}\n`);
    started.push(() => rm(join(paths.runDir, "server.pid"), { force: true }));
    log(`deck is running: git+ssh on ${config.host}:${config.sshPort}, API and git over HTTP on http://${config.host}:${config.apiPort}, apps at http://APP.${config.domain}:${config.httpPort} and https://APP.${config.domain}:${config.httpsPort}`);

    // Pushes that waited in line when deck last stopped are deployed now, in their order.
    // On stop, first of all: work still waiting in line leaves it (a waiting push keeps its place for the next start).
    started.push(async () => {
      queue.close();
      builds.close();
    });
    return { deps, stop: stopAll };
  } catch (err) {
    await stopAll().catch(() => {});
    throw err;
  }
}
