/**
 * A builder node: `deck server --role builder`. No SSH, API, router or apps: it opens the deck servers'
 * database, puts the same sandbox and network rules around builds as a deck server, and runs a
 * BuildWorker (builder/worker.ts) that takes their waiting builds.
 */
import { randomBytes } from "node:crypto";
import { lookup } from "node:dns/promises";
import { mkdir } from "node:fs/promises";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { BuildWorker, removeBuildLeftovers } from "../builder/index.ts";
import { SANDBOX_UID_RANGE, type DeckConfig } from "../config/index.ts";
import { applyDockerFirewall } from "../runtime/docker-network.ts";
import { createDockerClient, firewallTableFor, formatProtection, removeDockerFirewall, scopeFor } from "../runtime/index.ts";
import { applyNetworkRules, removeNetworkRules, networkTableFor } from "../runtime/network-rules.ts";
import { openDatabase, type Database } from "../store/index.ts";
import { listSandboxUidsOutside } from "../store/queries/index.ts";
import { configureSecrets } from "../store/secret-box.ts";
import { networkRulesSpecFor } from "./doctor.ts";
import { hiddenFromApps, holdDataDir, reportProtections } from "./server.ts";

/** The IP addresses a host name stands for (itself when it is one); none when it does not resolve. */
async function addressesOf(host: string): Promise<string[]> {
  const bare = host.replace(/^\[|\]$/g, "");
  if (isIP(bare)) return [bare];
  return (await lookup(bare, { all: true }).catch(() => [])).map((a) => a.address);
}

export interface BuilderNode {
  readonly name: string;
  /** Stops taking builds; builds under way are stopped and reported as failed to their pushes. */
  stop(): Promise<void>;
}

export async function startBuilderNode(config: DeckConfig, log: (line: string) => void): Promise<BuilderNode> {
  if (!config.databaseUrl) throw new Error("--role builder needs DATABASE_URL, the PostgreSQL your deck server uses");
  if (config.buildConcurrency < 1) throw new Error("a builder node needs DECK_BUILD_CONCURRENCY of 1 or more");
  // Config vars reach builds: the deck server's master key opens them.
  configureSecrets({ dataDir: config.dataDir, masterKey: config.masterKey });
  const started: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of started.splice(0).reverse()) await stop().catch((e: Error) => log(`stopping: ${e.message}`));
  };
  try {
    const db: Database = await openDatabase({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, log });
    started.push(() => db.close());
    started.push(await holdDataDir(db.url, config.dataDir));
    await mkdir(join(config.dataDir, "cache"), { recursive: true });
    await removeBuildLeftovers({ appsDir: join(config.dataDir, "builds"), cacheDir: join(config.dataDir, "cache"), log });
    // Tenants' builds run here: the same sandbox and network rules as on a deck server. No app runs
    // here, so the rules go with the node.
    await reportProtections(config, db, log);
    started.push(() => removeNetworkRules(networkTableFor(config.dataDir)));
    // The uids those rules cover: a build under any other uid would escape them, so it is refused.
    const outside = new Set(await listSandboxUidsOutside(db.pool, config.sandboxUidBase, SANDBOX_UID_RANGE));
    // Those rules refuse this machine's own addresses; here deck's database and the deck servers whose
    // builds run here are other machines, refused too: the database now, each deck server before its
    // first build.
    const rulesSpec = await networkRulesSpecFor(config, [...outside]);
    const refused = new Set<string>();
    const refuse = async (host: string) => {
      const fresh = (await addressesOf(host)).filter((a) => !refused.has(a));
      if (fresh.length === 0) return;
      for (const a of fresh) refused.add(a);
      const r = await applyNetworkRules({ ...rulesSpec, refused: [...refused] });
      if (!r.on) log(`protection off: ${formatProtection(r)}`);
    };
    await refuse(new URL(db.url).hostname);
    const coversUid = (uid: number) => (uid >= config.sandboxUidBase && uid < config.sandboxUidBase + SANDBOX_UID_RANGE) || outside.has(uid);
    const docker = config.runtime === "docker" ? createDockerClient() : undefined;
    if (docker) {
      await docker.ping().catch((e: Error) => {
        throw new Error(`DECK_RUNTIME=docker but no Docker engine answers (${e.message.split("\n")[0]}); start dockerd or set DOCKER_HOST`);
      });
      // Dockerfile builds' RUN steps reach neither this host nor link-local addresses.
      const table = firewallTableFor(scopeFor(config.dataDir));
      const firewall = await applyDockerFirewall(table);
      if (!firewall.on) log(`protection off: ${formatProtection(firewall)}`);
      started.push(() => removeDockerFirewall(table));
    }

    // The pid and a random part: two nodes never share a name (in containers the pid is often 1).
    const name = `builder@${hostname()}:${process.pid}.${randomBytes(2).toString("hex")}`;
    const worker = new BuildWorker({
      db: db.pool, databaseUrl: db.url, name, capacity: config.buildConcurrency, dataDir: config.dataDir,
      build: {
        engine: docker, baseImage: config.baseImage,
        imageBuildLimits: { memoryBytes: config.buildMemory, cpus: config.buildCpus },
        // The data dir is never visible to a build, even where it lies under a directory the sandbox binds.
        hide: hiddenFromApps(config),
      },
      limits: { memoryBytes: config.buildMemory, cpus: config.buildCpus },
      images: docker, coversUid, log,
      beforeBuild: (job) => refuse(new URL(job.originUrl).hostname),
    });
    await worker.start();
    started.push(() => worker.stop());
    log(`builder node ${name} is taking builds (${config.buildConcurrency} at once)`);
    return { name, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
