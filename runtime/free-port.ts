import { createServer } from "node:net";

/** How long a handed-out port stays reserved in this process (its process should be listening by then). */
const RESERVATION_MS = 60_000;
const recentlyHandedOut = new Map<number, number>();

function listenOnAnyPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error(`could not read the port bound on ${host}`))));
    });
  });
}

/**
 * A port that is free right now. Between handing it out and the app binding it, the kernel may offer the
 * same port again, so ports handed out in the last minute are skipped.
 */
export async function findFreePort(host = "127.0.0.1"): Promise<number> {
  const now = Date.now();
  for (const [port, at] of recentlyHandedOut) {
    if (now - at > RESERVATION_MS) recentlyHandedOut.delete(port);
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await listenOnAnyPort(host);
    if (recentlyHandedOut.has(port)) continue;
    recentlyHandedOut.set(port, now);
    return port;
  }
  throw new Error(`no free port on ${host} after 50 attempts`);
}
