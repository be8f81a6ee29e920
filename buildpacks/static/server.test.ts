import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const slug = mkdtempSync(join(tmpdir(), "deck-static-"));
let server: ChildProcess | undefined;
let port = 0;

before(async () => {
  mkdirSync(join(slug, ".deck"));
  mkdirSync(join(slug, "docs"));
  copyFileSync(fileURLToPath(new URL("./server.mjs", import.meta.url)), join(slug, ".deck/static-server.mjs"));
  writeFileSync(join(slug, "index.html"), "<h1>home</h1>");
  writeFileSync(join(slug, "style.css"), "h1{}");
  writeFileSync(join(slug, "docs/index.html"), "<h1>docs</h1>");
  writeFileSync(join(slug, ".env"), "SECRET=1");
  symlinkSync("/etc/hostname", join(slug, "escape.txt"));
  server = spawn("node", [".deck/static-server.mjs"], { cwd: slug, env: { ...process.env, PORT: "0" }, stdio: ["ignore", "pipe", "inherit"] });
  port = await new Promise<number>((resolve, reject) => {
    server!.stdout!.on("data", (d: Buffer) => {
      const m = /listening on port (\d+)/.exec(d.toString());
      if (m) resolve(Number(m[1]));
    });
    server!.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
});

after(() => {
  if (server?.pid && server.exitCode === null) process.kill(server.pid, "SIGKILL");
  rmSync(slug, { recursive: true, force: true });
});

/** Sends the path exactly as given (no client-side normalisation of `..`). */
function get(path: string, method = "GET"): Promise<{ status: number; type?: string; location?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, type: res.headers["content-type"], location: res.headers.location, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("serves index.html for / and files with their content type", async () => {
  assert.deepEqual(await get("/"), { status: 200, type: "text/html; charset=utf-8", location: undefined, body: "<h1>home</h1>" });
  const css = await get("/style.css");
  assert.equal(css.status, 200);
  assert.equal(css.type, "text/css; charset=utf-8");
  assert.equal((await get("/style.css", "HEAD")).body, "");
});

test("a directory serves its index.html, redirecting to the trailing slash first", async () => {
  const r = await get("/docs");
  assert.equal(r.status, 301);
  assert.equal(r.location, "/docs/");
  assert.equal((await get("/docs/")).body, "<h1>docs</h1>");
});

test("missing files, dotfiles, the server itself and paths outside the slug are 404", async () => {
  for (const path of ["/nope.html", "/.env", "/.deck/static-server.mjs", "/../../etc/hostname", "/%2e%2e/%2e%2e/etc/hostname", "/docs%2f..%2f..%2f..%2fetc%2fhostname", "/escape.txt"]) {
    assert.equal((await get(path)).status, 404, path);
  }
});

test("only GET and HEAD are allowed", async () => {
  assert.equal((await get("/", "POST")).status, 405);
});
