import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import Koa from "koa";
import { DeckError, type ErrorCode } from "../core/index.ts";
import { errorMiddleware, type ErrorBody } from "./error-middleware.ts";

const INTERNAL = "cannot decrypt with the key at /var/lib/deck/keys/master.key";

/** Each path raises one kind of error, as a route of the API would. */
function raise(path: string): never {
  switch (path) {
    case "/known": throw new DeckError("app_not_found", 'app "shop" does not exist (see apps:list)');
    case "/hidden": throw new DeckError("secret_corrupt", `a stored config value cannot be decrypted: ${INTERNAL}`);
    case "/unavailable": throw new DeckError("database_unreachable", `cannot connect to PostgreSQL at postgres://deck@10.0.0.5/deck: ${INTERNAL}`);
    case "/undeclared": throw new DeckError("made_up_code" as ErrorCode, `an undeclared code: ${INTERNAL}`);
    case "/limited": throw new DeckError("rate_limited", "too many sign-in attempts; try again in 7 s", { retryAfterSeconds: 6.2 });
    default: throw new TypeError(`Cannot read properties of undefined (${INTERNAL})`);
  }
}

describe("the API's error answers", () => {
  const logs: string[] = [];
  let server: Server;
  let base: string;

  before(async () => {
    const app = new Koa();
    app.use(errorMiddleware((line) => logs.push(line)));
    app.use(async (ctx, next) => {
      if (ctx.path === "/ok") return void (ctx.body = { ok: true });
      if (ctx.path === "/nowhere") return next();
      raise(ctx.path);
    });
    server = app.listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function get(path: string): Promise<{ status: number; headers: Headers; body: ErrorBody; text: string }> {
    const res = await fetch(`${base}${path}`);
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: JSON.parse(text) as ErrorBody, text };
  }

  it("answers a declared code with its status, its message and its hint", async () => {
    const r = await get("/known");
    assert.equal(r.status, 404);
    assert.deepEqual(r.body.error, {
      code: "app_not_found",
      message: 'app "shop" does not exist (see apps:list)',
      hint: "check the name with apps:list (GET /api/v1/apps); an app you have no role on is not shown",
      requestId: r.headers.get("x-request-id"),
    });
  });

  for (const [path, status, code] of [["/hidden", 500, "secret_corrupt"], ["/unavailable", 503, "database_unreachable"], ["/undeclared", 500, "internal"], ["/crash", 500, "internal"]] as const) {
    it(`answers ${path.slice(1)} with ${status} ${code}, a generic message naming the request id, and logs the details under that id`, async () => {
      const before = logs.length;
      const r = await get(path);
      const id = r.headers.get("x-request-id");
      assert.ok(id && /^[0-9a-f-]{36}$/.test(id), String(id));
      assert.equal(r.status, status);
      assert.equal(r.body.error.code, code);
      assert.equal(r.body.error.requestId, id);
      assert.match(r.body.error.message, new RegExp(`^deck could not complete this request because of an error on its side; .* request id ${id}$`));
      assert.ok(!r.text.includes("master.key") && !r.text.includes("10.0.0.5") && !r.text.includes("made_up_code") && !r.text.includes("TypeError"), r.text);
      const logged = logs.slice(before);
      assert.equal(logged.length, 1, logged.join("\n"));
      assert.ok(logged[0].startsWith(`api GET ${path} (request id ${id}): `), logged[0]);
      assert.ok(logged[0].includes(INTERNAL), logged[0]);
    });
  }

  it("gives a hidden code's hint, so the client still learns what can be done", async () => {
    const r = await get("/unavailable");
    assert.equal(r.body.error.hint, "PostgreSQL does not answer: check that it runs and that DATABASE_URL points at it");
  });

  it("keeps Retry-After on a 429", async () => {
    const r = await get("/limited");
    assert.equal(r.status, 429);
    assert.equal(r.headers.get("retry-after"), "7");
    assert.equal(r.body.error.message, "too many sign-in attempts; try again in 7 s");
  });

  it("puts a new X-Request-Id on every answer, errors or not, and on a path no route serves", async () => {
    const ok = await fetch(`${base}/ok`);
    assert.equal(ok.status, 200);
    const nowhere = await get("/nowhere");
    assert.equal(nowhere.status, 404);
    assert.equal(nowhere.body.error.code, "not_found");
    assert.equal(nowhere.body.error.requestId, nowhere.headers.get("x-request-id"));
    const ids = [ok.headers.get("x-request-id"), nowhere.headers.get("x-request-id"), (await fetch(`${base}/ok`)).headers.get("x-request-id")];
    assert.ok(ids.every((id) => id !== null));
    assert.equal(new Set(ids).size, 3);
  });
});
