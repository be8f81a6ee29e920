/**
 * The router process: `node --import tsx router/main.ts`.
 *
 * Runs on its own (not in the deck server's process group) so apps stay reachable while the deck
 * server crashes or restarts. Started, it is the supervisor (supervisor.ts), which holds the ports and
 * runs the workers that serve (router-worker.ts, this same file run as a cluster worker). Each worker
 * serves the last saved route table from the moment it starts.
 */
import cluster from "node:cluster";

function fail(e: unknown): never {
  process.stdout.write(`${new Date().toISOString()} router[${process.pid}] failed to start: ${(e as Error).message}\n`);
  process.exit(1);
}

if (cluster.isPrimary) {
  // The supervisor loads only what it needs, so it is up before its first worker has loaded.
  const { runSupervisor } = await import("./supervisor.ts");
  runSupervisor().then((code) => process.exit(code), fail);
} else {
  const { runRouterWorker } = await import("./router-worker.ts");
  runRouterWorker();
}
