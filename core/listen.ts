/** A server that listens like Node's net.Server (http, https, http2, ssh2 servers do). */
export interface Listenable {
  once(event: "error", listener: (err: Error) => void): unknown;
  off(event: "error", listener: (err: Error) => void): unknown;
  listen(...args: unknown[]): unknown;
}

/**
 * `server.listen(port, host)` or `server.listen(path)` as a promise: it settles once the server
 * listens, or rejects with the error that kept it from listening (EADDRINUSE …) instead of emitting it.
 */
export function listenOn(server: Listenable, portOrPath: number | string, host?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    const done = () => {
      server.off("error", onError);
      resolve();
    };
    if (host === undefined) server.listen(portOrPath, done);
    else server.listen(portOrPath, host, done);
  });
}
