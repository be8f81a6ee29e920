/**
 * The deck server's ways to its router pass the RouterControl contract against a real router process
 * (router/main.ts, started as `deck server` starts it): the control socket client, and that client
 * wrapped by publishRoutes, which also writes every change to PostgreSQL for router nodes.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { databaseBackends, openTestDatabase } from "../test/helpers/database.ts";
import { createRouterControl } from "./control-client.ts";
import { ensureRouter, stopRouter } from "./launch.ts";
import { routerPaths } from "./paths.ts";
import { publishRoutes } from "./route-publisher.ts";
import { describeRouterControlContract, type RouterControlHarness } from "./router-control.contract.ts";
import { freePort } from "./test-support.ts";

/** A router process of its own on free ports, as `deck server` launches it. */
async function startRouterProcess(): Promise<{ socket: string; httpPort: number; httpsPort: number; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "deck-router-contract-"));
  const dataDir = join(dir, "data");
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = { ...process.env, DECK_HOST: "127.0.0.1", DECK_HTTP_PORT: String(httpPort), DECK_HTTPS_PORT: String(httpsPort), DECK_DATA_DIR: dataDir };
  delete env.DECK_CONFIG;
  try {
    await ensureRouter({ dataDir, env, logFile: join(dir, "router.log") });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    socket: routerPaths(dataDir).socket,
    httpPort,
    httpsPort,
    async stop() {
      await stopRouter(dataDir, 2_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describeRouterControlContract("control socket client", async (): Promise<RouterControlHarness> => {
  const router = await startRouterProcess();
  return { control: createRouterControl(router.socket), httpPort: router.httpPort, httpsPort: router.httpsPort, close: () => router.stop() };
});

// Publishing does not depend on where PostgreSQL runs: one backend (the external one when configured).
const backends = await databaseBackends();
for (const b of backends.slice(0, -1)) if (b.name === "external") await b.drop();
const backend = backends.at(-1)!;

describeRouterControlContract(`publishRoutes over the control socket client (${backend.name} PostgreSQL)`, async (): Promise<RouterControlHarness> => {
  const database = await openTestDatabase(backend);
  const router = await startRouterProcess().catch(async (e: unknown) => {
    await database.cleanup();
    throw e;
  });
  return {
    control: publishRoutes(createRouterControl(router.socket), { db: database.db.pool }),
    httpPort: router.httpPort,
    httpsPort: router.httpsPort,
    async close() {
      await router.stop();
      await database.cleanup();
    },
  };
});
