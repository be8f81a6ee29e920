/**
 * The app behind the proxies in `npm run bench:router`: `node scripts/bench-upstream.mjs PORT NAME`.
 *
 *   GET  /        "NAME\n" at once
 *   GET  /slow    "NAME slow\n" after 2 s (the slow requests of the blue-green run)
 *   GET  /1m      1 MiB body
 *   POST /upload  reads the whole body, then answers 200 "ok\n"
 *
 * Plain JavaScript so it starts in tens of milliseconds (a blue-green switch starts one per deploy).
 * SIGTERM stops it at once, as Node does by default: requests still in flight then are cut, so the
 * benchmark sees them if a proxy sent traffic to an upstream it was told was drained.
 */
import http from "node:http";

const port = Number(process.argv[2]);
const name = process.argv[3] ?? "upstream";
const hello = Buffer.from(`${name}\n`);
const slow = Buffer.from(`${name} slow\n`);
const mebibyte = Buffer.alloc(1024 * 1024, "x");

const server = http.createServer((req, res) => {
  if (req.method === "POST") {
    let bytes = 0;
    req.on("data", (chunk) => (bytes += chunk.length));
    req.on("end", () => {
      const body = `ok ${bytes}\n`;
      res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
    return;
  }
  req.resume();
  if (req.url === "/slow") {
    setTimeout(() => {
      res.writeHead(200, { "content-type": "text/plain", "content-length": slow.length });
      res.end(slow);
    }, 2000);
    return;
  }
  const body = req.url === "/1m" ? mebibyte : hello;
  res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
  res.end(body);
});
server.keepAliveTimeout = 120_000;
server.listen(port, "127.0.0.1");
