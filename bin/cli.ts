import { readFile } from "node:fs/promises";
import { ConfigError, loadConfig, type DeckConfig } from "../config/index.ts";
import { pathsFor } from "../deploy/index.ts";
import { parsePublicKey } from "../gitd/index.ts";
import { stopRouter } from "../router/index.ts";
import { createDockerClient, DockerRuntime, ProcessRuntime, scopeFor } from "../runtime/index.ts";
import { join } from "node:path";
import { NODE_SHUTDOWN_DEADLINE_MS, startRouterNode } from "../router/node.ts";
import { embeddedDatabaseUrl, openDatabase } from "../store/index.ts";
import { addMember, countUsers, createApiToken, insertOrganization, insertSshKey, insertUser } from "../store/queries/index.ts";
import { removeNetworkRules, networkTableFor } from "../runtime/network-rules.ts";
import { runDoctor } from "./doctor.ts";
import { startServer } from "./server.ts";
import { startBuilderNode } from "./builder-node.ts";

const USAGE = `Usage: deck COMMAND

  server                                     run deck (SSH :2222, API :3000, router :8080)
  server --role router                       run a router node alone: routes from DATABASE_URL, apps on :8080
  server --role builder                      run a builder node: takes builds of the deck servers on DATABASE_URL
  database:url                               print the URL of this deck's embedded database (for router and builder nodes)
  admin:bootstrap --email E --ssh-key FILE   create the first admin; prints an API token
  down                                       stop the deck server, the router and every app process deck started
  doctor                                     list every protection that keeps tenants apart, on or off
  tui [--url URL] [--token TOKEN] [--readonly] the admin dashboard in this terminal (an API client of a deck server)
  help                                       show this text

Settings come from DECK_* environment variables or deck.yaml (see README.md).`;

function fail(message: string, code = 1): never {
  process.stderr.write(`deck: ${message}\n`);
  process.exit(code);
}

function config(): DeckConfig {
  try {
    return loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) fail(e.message, 2);
    throw e;
  }
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (!v || v.startsWith("--")) fail(`${name} needs a value`);
  return v;
}

async function bootstrap(args: string[]): Promise<void> {
  const email = flag(args, "--email");
  const keyFile = flag(args, "--ssh-key");
  if (!email || !keyFile) fail("usage: deck admin:bootstrap --email YOU@EXAMPLE.COM --ssh-key ~/.ssh/id_ed25519.pub");
  if (!/^[^\s@]+@[^\s@]+$/.test(email) || email.length > 254) fail(`"${email.slice(0, 60)}" is not an email address`);
  let keyText: string;
  try {
    keyText = await readFile(keyFile, "utf8");
  } catch {
    fail(`cannot read ${keyFile}; pass the public key file, e.g. ~/.ssh/id_ed25519.pub`);
  }
  let key;
  try {
    key = parsePublicKey(keyText);
  } catch (e) {
    fail((e as Error).message);
  }
  const cfg = config();
  const db = await openDatabase({ dataDir: cfg.dataDir, databaseUrl: cfg.databaseUrl });
  try {
    const token = await db.pool.transaction(async (tx) => {
      if ((await countUsers(tx)) > 0) return null;
      const user = await insertUser(tx, { email, isAdmin: true });
      const org = await insertOrganization(tx, { name: "Default", slug: "default" });
      await addMember(tx, org.id, user.id, "owner");
      await insertSshKey(tx, { userId: user.id, name: key.comment || "bootstrap", publicKey: key.publicKey, fingerprint: key.fingerprint });
      return createApiToken(tx, user.id, "bootstrap", ["admin"]);
    });
    if (!token) fail("refusing: deck already has users; ask an admin to add your key");
    process.stdout.write(`Created admin ${email} (SSH key ${key.fingerprint}).\nAPI token (shown once; use it as the password for git over HTTP):\n${token}\n`);
  } finally {
    await db.close();
  }
}

/** The running deck server of this data dir, from its pid file: a live process running bin/cli.ts. */
async function runningServerPid(runDir: string): Promise<number | undefined> {
  // No pid file (no server ever ran here, or it stopped cleanly) and no /proc entry (that process is
  // gone) both mean: no running server.
  const pid = Number.parseInt((await readFile(join(runDir, "server.pid"), "utf8").catch(() => "")).trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return cmdline.includes("bin/cli.ts") && cmdline.includes("server") ? pid : undefined;
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
  }
  return false;
}

/**
 * Stops this deck's containers whatever DECK_RUNTIME says now: they may have been started under an
 * earlier setting. They are found by this data dir's scope label, so another deck's containers on the
 * same engine stay. Says why they could not be stopped when this deck runs on Docker and no engine
 * answers; without Docker configured, an engine that does not answer holds none of them.
 */
async function stopContainers(cfg: DeckConfig): Promise<string | undefined> {
  const client = createDockerClient();
  try {
    await client.ping();
  } catch (e) {
    if (cfg.runtime !== "docker") return undefined;
    return `DECK_RUNTIME=docker but no Docker engine answers (${(e as Error).message.split("\n")[0]}); its app containers were not stopped`;
  }
  const docker = new DockerRuntime({ client, stateDir: join(cfg.dataDir, "run", "docker"), scope: scopeFor(cfg.dataDir) });
  try {
    await docker.stopEverything(cfg.stopGrace * 1000);
  } finally {
    await docker.close();
  }
  return undefined;
}

async function down(): Promise<void> {
  const cfg = config();
  const paths = pathsFor(cfg.dataDir);
  // A running deck server would start the router again within a second: it stops first.
  const server = await runningServerPid(paths.runDir);
  if (server !== undefined) {
    process.kill(server, "SIGTERM");
    if (!(await waitGone(server, 40_000))) process.kill(server, "SIGKILL");
  }
  // Both runtimes, whichever DECK_RUNTIME names now: supervised processes have state files under the
  // data dir, containers carry its scope label.
  await new ProcessRuntime({ stateDir: paths.procStateDir }).stopAll(cfg.stopGrace * 1000);
  const containersLeft = await stopContainers(cfg);
  // Long enough for the router's requests in flight (5 s) and its counts to be saved.
  await stopRouter(cfg.dataDir, 10_000);
  // With no app left running, its network rules go too; the next `deck server` loads them again.
  await removeNetworkRules(networkTableFor(cfg.dataDir));
  if (containersLeft !== undefined) fail(containersLeft);
  process.stdout.write(`stopped ${server === undefined ? "" : "the deck server, "}the router and all app processes\n`);
}

async function doctor(): Promise<void> {
  const code = await runDoctor(config(), (line) => process.stdout.write(`${line}\n`));
  // A Docker or database client may keep a socket open; the answer is complete.
  process.exit(code);
}

const ROLES = ["all", "router", "builder"] as const;

async function server(args: string[]): Promise<void> {
  const role = flag(args, "--role") ?? "all";
  if (!(ROLES as readonly string[]).includes(role)) fail(`unknown role "${role.slice(0, 40)}"; roles: ${ROLES.join(", ")}`, 2);
  if (role === "router") return routerNode();
  if (role === "builder") return builderNode();
  const cfg = config();
  const running = await startServer(cfg);
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${sig}: stopping the deck server (apps and the router keep running; \`deck down\` stops them)`);
    void running.stop().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

/** `deck server --role builder`: one builder node, taking builds from the deck servers' line. */
async function builderNode(): Promise<void> {
  const cfg = config();
  if (!cfg.databaseUrl) fail("--role builder needs DATABASE_URL, the PostgreSQL your deck server uses (for its embedded database, run `deck database:url` where it runs)", 2);
  const log = (line: string) => process.stdout.write(`${new Date().toISOString()} builder-node[${process.pid}] ${line}\n`);
  const node = await startBuilderNode(cfg, log);
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping; builds under way are stopped and fail their pushes`);
    void node.stop().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

/** `deck server --role router`: one router node, no SSH, API or builds. */
async function routerNode(): Promise<void> {
  const cfg = config();
  if (!cfg.databaseUrl) fail("--role router needs DATABASE_URL, the PostgreSQL your deck server uses (for its embedded database, run `deck database:url` where it runs)", 2);
  const log = (line: string) => process.stdout.write(`${new Date().toISOString()} router-node[${process.pid}] ${line}\n`);
  const node = await startRouterNode({ config: cfg, log });
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping; in-flight requests get ${NODE_SHUTDOWN_DEADLINE_MS / 1000} s`);
    void node.stop().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // After logrotate renames the access log: the next lines go to a new file under the old name.
  for (const sig of ["SIGUSR1", "SIGHUP"] as const) {
    process.on(sig, () => {
      log(`${sig}: reopening the access log`);
      node.reopenLogs();
    });
  }
}

async function databaseUrl(): Promise<void> {
  const cfg = config();
  const url = cfg.databaseUrl ?? (await embeddedDatabaseUrl(cfg.dataDir));
  if (!url) fail(`no embedded database under ${cfg.dataDir} yet; start \`deck server\` there first`);
  process.stdout.write(`${url}\n`);
}

const [command, ...rest] = process.argv.slice(2);
const commands: Record<string, () => Promise<void>> = {
  server: () => server(rest),
  "database:url": databaseUrl,
  "admin:bootstrap": () => bootstrap(rest),
  down,
  doctor,
  tui: async () => {
    // Loaded only here: the dashboard's React and Ink are not for the server.
    const { runTui } = await import("../tui/index.ts");
    process.exitCode = await runTui(rest);
  },
  help: async () => void process.stdout.write(`${USAGE}\n`),
};
const run = commands[command ?? "help"];
if (!run) fail(`unknown command "${String(command).slice(0, 40)}"\n${USAGE}`);
run().catch((e: Error) => {
  if (e.name === "DeckError" || e instanceof ConfigError) fail(e.message, e instanceof ConfigError ? 2 : 1);
  process.stderr.write(`deck: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
