import { createServer, isIPv6 } from "node:net";

/** How long a handed-out port stays reserved in this process (its process should be listening by then). */
const RESERVATION_MS = 60_000;
const recentlyHandedOut = new Map<number, number>();

/** Listens on `port` (0: any) at `host`, closes again and returns the port; rejects with the bind error. */
function bindOnce(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === "object" && address ? address.port : 0;
      server.close(() => (bound > 0 ? resolve(bound) : reject(new Error(`could not read the port bound on ${host}`))));
    });
  });
}

/**
 * Whether `port` is free on every address of the family of `host`: apps commonly listen on all
 * addresses (0.0.0.0:$PORT), and that fails while anything holds the port on any one of them.
 */
export async function portFreeEverywhere(port: number, host = "127.0.0.1"): Promise<boolean> {
  // "::" covers IPv4 too where the machine has IPv6 (Node's listen(PORT) binds it); "0.0.0.0" where not.
  for (const wildcard of isIPv6(host) ? ["::"] : ["0.0.0.0", "::"]) {
    try {
      await bindOnce(wildcard, port);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE" || code === "EACCES") return false;
      // No IPv6 on this machine: the IPv4 check above is the whole answer.
      if (wildcard === "::" && (code === "EAFNOSUPPORT" || code === "EADDRNOTAVAIL")) continue;
      throw e;
    }
  }
  return true;
}

/**
 * A port that is free right now on `host` and on every other address. Between handing it out and the
 * app binding it, the kernel may offer the same port again, so ports handed out in the last minute
 * are skipped.
 */
export async function findFreePort(host = "127.0.0.1"): Promise<number> {
  const now = Date.now();
  for (const [port, at] of recentlyHandedOut) {
    if (now - at > RESERVATION_MS) recentlyHandedOut.delete(port);
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await bindOnce(host, 0);
    if (recentlyHandedOut.has(port) || !(await portFreeEverywhere(port, host))) continue;
    recentlyHandedOut.set(port, now);
    return port;
  }
  throw new Error(`no free port on ${host} after 50 attempts`);
}
