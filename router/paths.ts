import { join } from "node:path";

export interface RouterPaths {
  runDir: string;
  /** Unix socket of the control API. */
  socket: string;
  /** Last route table, loaded at start. */
  routesFile: string;
  pidFile: string;
  /** Last certificates the deck server sent (with private keys: 0600), loaded at start. */
  certsFile: string;
  /** Bandwidth not yet saved when the router stopped, taken back at its next start. */
  meteringFile: string;
  /** JSON lines, one per request (DECK_ACCESS_LOG). */
  accessLog: string;
}

/** Where a router keeps its runtime files under the deck data directory. */
export function routerPaths(dataDir: string): RouterPaths {
  const runDir = join(dataDir, "run");
  return {
    runDir,
    socket: join(runDir, "router.sock"),
    routesFile: join(runDir, "routes.json"),
    pidFile: join(runDir, "router.pid"),
    certsFile: join(runDir, "certs.json"),
    meteringFile: join(runDir, "metering.json"),
    accessLog: join(dataDir, "logs", "access.log"),
  };
}
