// Static file server copied into a static site's slug as .deck/static-server.mjs.
// Dependency-free on purpose: the slug carries no node_modules. Serves the slug dir (the parent of
// .deck/) on $PORT; GET and HEAD only; index.html for directories; 404 for anything outside the
// slug, for dotfiles (except .well-known) and for the .deck dir itself.
import { createServer } from "node:http";
import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { extname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = await realpath(fileURLToPath(new URL("..", import.meta.url)));
const PORT = Number(process.env.PORT || 5000);

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".htm": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".xml": "application/xml; charset=utf-8",
  ".csv": "text/csv; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".avif": "image/avif",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".otf": "font/otf",
  ".wasm": "application/wasm",
  ".pdf": "application/pdf",
  ".mp4": "video/mp4",
  ".webm": "video/webm",
  ".mp3": "audio/mpeg",
  ".webmanifest": "application/manifest+json",
};

function contentType(path) {
  return TYPES[extname(path).toLowerCase()] ?? "application/octet-stream";
}

/** The decoded path segments of a request, or null when the path may not be served. */
function segmentsOf(url) {
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(url, "http://localhost").pathname);
  } catch {
    return null;
  }
  if (pathname.includes("\0")) return null;
  const segments = pathname.split("/").filter((s) => s !== "");
  for (const s of segments) {
    if (s.includes("\\")) return null;
    if (s.startsWith(".") && s !== ".well-known") return null;
  }
  return segments;
}

/** Resolves symlinks and refuses anything that ends up outside the slug. */
async function resolveInsideRoot(path) {
  let real;
  try {
    real = await realpath(path);
  } catch {
    return null;
  }
  return real === ROOT || real.startsWith(ROOT + sep) ? real : null;
}

async function findFile(segments) {
  let path = await resolveInsideRoot(join(ROOT, ...segments));
  if (!path) return null;
  let info = await stat(path);
  if (info.isDirectory()) {
    path = await resolveInsideRoot(join(path, "index.html"));
    if (!path) return null;
    info = await stat(path);
    return info.isFile() ? { path, info, isDirectory: true } : null;
  }
  return info.isFile() ? { path, info, isDirectory: false } : null;
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body), ...headers });
  res.end(body);
}

const server = createServer(async (req, res) => {
  if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "Method Not Allowed\n", { allow: "GET, HEAD" });
  const segments = segmentsOf(req.url ?? "/");
  if (!segments) return send(res, 404, "Not Found\n");
  try {
    const found = await findFile(segments);
    if (!found) return send(res, 404, "Not Found\n");
    const url = new URL(req.url ?? "/", "http://localhost");
    if (found.isDirectory && !url.pathname.endsWith("/")) {
      // Relative links inside the page resolve against the directory only with the trailing slash.
      return send(res, 301, "Moved Permanently\n", { location: `${url.pathname}/${url.search}` });
    }
    res.writeHead(200, {
      "content-type": contentType(found.path),
      "content-length": found.info.size,
      "last-modified": found.info.mtime.toUTCString(),
    });
    if (req.method === "HEAD") return res.end();
    createReadStream(found.path)
      .on("error", () => res.destroy())
      .pipe(res);
  } catch {
    if (!res.headersSent) send(res, 404, "Not Found\n");
    else res.destroy();
  }
});

server.listen(PORT, () => {
  console.log(`static site listening on port ${server.address().port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
