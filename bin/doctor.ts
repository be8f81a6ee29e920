import { stat } from "node:fs/promises";
import pg from "pg";
import { SANDBOX_UID_RANGE, type DeckConfig } from "../config/index.ts";
import { createDockerClient, formatProtection, scopeFor, type Protection } from "../runtime/index.ts";
import { dockerFirewallStatus, firewallTableFor } from "../runtime/docker-network.ts";
import { networkTableFor, probeNetwork, readResolvers, uidRangesFor, type NetworkRulesSpec } from "../runtime/network-rules.ts";
import { probeSandbox } from "../runtime/sandbox.ts";
import { embeddedDatabaseUrl, redactUrl } from "../store/index.ts";
import { masterKeyFile, resolveMasterKey } from "../store/secret-box.ts";

/**
 * `deck doctor`: every protection that keeps tenants apart, one line each, on or off; exit status 1
 * when any is off. `deck server` logs the ones that are off at start-up from the same probes.
 */

/** The network rules of this deck: the configured uid range plus uids stored under an earlier base. */
export async function networkRulesSpecFor(config: DeckConfig, storedOutside: number[] = []): Promise<NetworkRulesSpec> {
  return {
    table: networkTableFor(config.dataDir),
    uidRanges: uidRangesFor(config.sandboxUidBase, SANDBOX_UID_RANGE, storedOutside),
    resolvers: await readResolvers(),
  };
}

/** The master key: present, and readable by deck's user only. */
export async function probeMasterKey(config: DeckConfig): Promise<Protection> {
  const name = "master-key";
  if (config.masterKey) {
    try {
      resolveMasterKey({ dataDir: config.dataDir, masterKey: config.masterKey });
      return { name, on: true, detail: "config vars are sealed (AES-256-GCM) under DECK_MASTER_KEY" };
    } catch (e) {
      return { name, on: false, detail: (e as Error).message };
    }
  }
  const file = masterKeyFile(config.dataDir);
  // A file that cannot be read is reported like a missing one: off, with how to make one.
  const st = await stat(file).catch(() => undefined);
  if (!st) return { name, on: false, detail: `no master key yet (${file})`, fix: "start deck server once (it creates the key) or set DECK_MASTER_KEY" };
  if (st.mode & 0o077) {
    const mode = (st.mode & 0o777).toString(8);
    return { name, on: false, detail: `${file} is readable by other users (mode ${mode})`, fix: `chmod 600 ${file}` };
  }
  return { name, on: true, detail: `config vars are sealed (AES-256-GCM) under ${file} (mode 600)` };
}

/** Counts of stored config still in clear (written before config was encrypted). */
export interface PlainConfigCount {
  environments: number;
  releases: number;
}

const COUNT_PLAIN_SQL = `SELECT (SELECT count(*) FROM environments WHERE variables_format = 'plain') AS environments,
  (SELECT count(*) FROM releases WHERE config_format = 'plain') AS releases`;

/** `count` answers how much config is stored in clear, or rejects when the database cannot be asked. */
export async function probeConfigAtRest(count: () => Promise<PlainConfigCount>): Promise<Protection> {
  const name = "config-at-rest";
  let plain: PlainConfigCount;
  try {
    plain = await count();
  } catch (e) {
    return { name, on: true, detail: `config vars are sealed when written; older rows not counted: ${(e as Error).message.split("\n")[0]}` };
  }
  if (plain.environments + plain.releases === 0) return { name, on: true, detail: "every stored config var is sealed" };
  return {
    name, on: false,
    detail: `${plain.environments} app environment(s) and ${plain.releases} release(s) hold config in clear (written before encryption)`,
    fix: "deck seals each when it next reads that app's config: run config:show APP for each app",
  };
}

/** Asks the database deck uses (DATABASE_URL, or the embedded one while it runs) without migrating or starting it. */
async function countPlainConfig(config: DeckConfig): Promise<PlainConfigCount> {
  const url = config.databaseUrl ?? (await embeddedDatabaseUrl(config.dataDir));
  if (!url) throw new Error(`no database under ${config.dataDir} yet`);
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  // A dropped connection must not crash the doctor; the failing connect or query reports it.
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (e) {
    throw new Error(`database at ${redactUrl(url)} not reachable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const { rows } = await client.query(COUNT_PLAIN_SQL);
    return { environments: Number(rows[0].environments), releases: Number(rows[0].releases) };
  } finally {
    // The answer (or the failure) is already in hand; a connection that fails to end is not a finding.
    await client.end().catch(() => {});
  }
}

async function storedUidsOutside(config: DeckConfig): Promise<number[]> {
  const url = config.databaseUrl ?? (await embeddedDatabaseUrl(config.dataDir));
  if (!url) return [];
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  // A dropped connection must not crash the doctor; the failing connect or query reports it.
  client.on("error", () => {});
  try {
    await client.connect();
    const lo = config.sandboxUidBase;
    const { rows } = await client.query("SELECT sandbox_uid FROM apps WHERE sandbox_uid < $1 OR sandbox_uid >= $2 ORDER BY sandbox_uid", [lo, lo + SANDBOX_UID_RANGE]);
    return rows.map((r) => Number(r.sandbox_uid));
  } catch {
    // Not reachable (or not migrated yet): the configured range is what the rules are checked for.
    return [];
  } finally {
    // The answer (or the failure) is already in hand; a connection that fails to end is not a finding.
    await client.end().catch(() => {});
  }
}

/** DECK_RUNTIME=docker: apps run only while the engine answers. */
export async function probeDockerEngine(): Promise<Protection> {
  const client = createDockerClient();
  try {
    await client.ping();
    return { name: "docker", on: true, detail: "the Docker engine answers; app containers run with the docker runtime's hardening" };
  } catch (e) {
    return { name: "docker", on: false, detail: `DECK_RUNTIME=docker but no Docker engine answers (${(e as Error).message.split("\n")[0]})`, fix: "start dockerd or set DOCKER_HOST" };
  }
}

/** Every protection of this deck, in the order `deck doctor` prints them. */
export async function collectProtections(config: DeckConfig): Promise<Protection[]> {
  const network = await probeNetwork(await networkRulesSpecFor(config, await storedUidsOutside(config)));
  const list = [...(await probeSandbox()), network, await probeMasterKey(config), await probeConfigAtRest(() => countPlainConfig(config))];
  if (config.runtime === "docker") list.push(await probeDockerEngine(), await dockerFirewallStatus(firewallTableFor(scopeFor(config.dataDir))));
  return list;
}

/** Prints one line per protection; returns the exit status (1 when any is off). */
export async function runDoctor(config: DeckConfig, write: (line: string) => void): Promise<number> {
  const list = await collectProtections(config);
  for (const p of list) write(formatProtection(p));
  const off = list.filter((p) => !p.on);
  write(off.length === 0 ? "every protection is on" : `${off.length} protection(s) off: ${off.map((p) => p.name).join(", ")}`);
  return off.length === 0 ? 0 : 1;
}
