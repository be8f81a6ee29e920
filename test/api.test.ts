import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ROUTES } from "../api/registry.ts";
import "../api/app.ts";
import { databaseBackends } from "./helpers/database.ts";
import { Deck } from "./helpers/deck.ts";

const backends = await databaseBackends();

for (const backend of backends) {
  describe(`REST API basics (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let base: string;
    const call = async (method: string, path: string, body?: unknown, opts: { token?: string | null; raw?: string; headers?: Record<string, string> } = {}) => {
      const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
      const token = opts.token === undefined ? deck.token : opts.token;
      if (token) headers.authorization = `Bearer ${token}`;
      const res = await fetch(`${base}${path}`, { method, headers, body: opts.raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
      const text = await res.text();
      let json: any = null;
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
      return { status: res.status, json, text, headers: res.headers };
    };

    before(async () => {
      deck = await Deck.start({ backend });
      base = `http://127.0.0.1:${deck.ports.api}/api/v1`;
    });
    after(async () => {
      await deck?.stop();
      if (backend.name === "external") await backend.drop();
    });

    it("serves an OpenAPI 3.1 document that lists every route", async () => {
      const doc = await call("GET", "/openapi.json", undefined, { token: null });
      assert.equal(doc.status, 200);
      assert.equal(doc.json.openapi, "3.1.0");
      assert.ok(ROUTES.length >= 20);
      for (const r of ROUTES) {
        const path = `/api/v1${r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`;
        assert.ok(doc.json.paths[path]?.[r.method], `${r.method.toUpperCase()} ${path} is missing from the OpenAPI document`);
        if (r.body) assert.ok(doc.json.paths[path][r.method].requestBody, `${path} documents its body`);
      }
      // The document is built from the validation schemas: the app name rule is in it.
      assert.match(JSON.stringify(doc.json.paths["/api/v1/apps"].post.requestBody), /\^\[a-z\]\[a-z0-9-\]\{0,62\}\$/);
    });

    it("answers every error as JSON with a code and a one-line message", async () => {
      const noAuth = await call("GET", "/apps", undefined, { token: null });
      assert.equal(noAuth.status, 401);
      assert.equal(noAuth.json.error.code, "unauthenticated");
      const badToken = await call("GET", "/apps", undefined, { token: "deck_not-a-real-token" });
      assert.equal(badToken.status, 401);
      const unknown = await call("GET", "/nothing-here");
      assert.equal(unknown.status, 404);
      assert.equal(unknown.json.error.code, "not_found");
      const missing = await call("GET", "/apps/nosuchapp");
      assert.equal(missing.status, 404);
      assert.match(missing.json.error.message, /app "nosuchapp" does not exist/);
      for (const r of [noAuth, badToken, unknown, missing]) assert.doesNotMatch(r.json.error.message, /\n/);
    });

    it("refuses malformed JSON, oversize bodies, unknown fields and wrong types with a clear 4xx and stores nothing", async () => {
      const malformed = await call("POST", "/apps", undefined, { raw: "{\"name\": " });
      assert.equal(malformed.status, 400);
      assert.match(malformed.json.error.message, /not valid JSON/);
      const big = await call("POST", "/apps", undefined, { raw: JSON.stringify({ name: "a".repeat(200_000) }) });
      assert.equal(big.status, 413);
      const extra = await call("POST", "/apps", { name: "okname", admin: true });
      assert.equal(extra.status, 400);
      assert.match(extra.json.error.message, /unknown field "admin"/);
      const wrongType = await call("POST", "/apps", { name: 42 });
      assert.equal(wrongType.status, 400);
      assert.match(wrongType.json.error.message, /^body\.name: /);
      const notJson = await call("POST", "/apps", undefined, { raw: "name=x", headers: { "content-type": "application/x-www-form-urlencoded" } });
      assert.equal(notJson.status, 415);
      const badQuery = await call("GET", "/apps?limit=100000");
      assert.equal(badQuery.status, 400);
      assert.match(badQuery.json.error.message, /^query\.limit: /);
      const apps = await call("GET", "/apps");
      assert.deepEqual(apps.json.items, []);
    });

    it("treats SQL-looking text as plain data and never stores invalid values", async () => {
      const sqlish = ["x'; DROP TABLE apps; --", "' OR 1=1 --", "\"); DELETE FROM users; --", "robert'); --"];
      for (const s of sqlish) {
        const app = await call("POST", "/apps", { name: s });
        assert.equal(app.status, 400, s);
        const org = await call("POST", "/orgs", { slug: s, name: s });
        assert.equal(org.status, 400, s);
        const member = await call("PUT", "/orgs/default/members", { email: s, role: "member" });
        assert.equal(member.status, 400, s);
        const domain = await call("POST", "/apps/none/domains", { domain: s });
        assert.ok([400, 404].includes(domain.status), s);
        const key = await call("POST", "/keys", { publicKey: s });
        assert.equal(key.status, 400, s);
      }
      // A name that is valid text everywhere it is allowed is stored as given, quotes and all.
      const created = await call("POST", "/orgs", { slug: "quotes", name: "Robert'); DROP TABLE users; --" });
      assert.equal(created.status, 201);
      assert.equal(created.json.name, "Robert'); DROP TABLE users; --");
      assert.equal((await call("GET", "/apps")).status, 200);
      assert.equal((await call("GET", "/users/me")).json.email, "admin@example.com");
      const orgs = await call("GET", "/orgs");
      assert.deepEqual(orgs.json.items.map((o: { slug: string }) => o.slug).sort(), ["default", "quotes"]);
    });

    it("never repeats a config value in an error answer", async () => {
      assert.equal((await call("POST", "/apps", { name: "secretive" })).status, 201);
      const value = "s3cr3t-9f8e7d6c5b4a";
      const answers = [
        await call("PATCH", "/apps/secretive/config", { set: { "BAD-KEY": value } }),
        await call("PATCH", "/apps/secretive/config", { set: { PORT: value } }),
        await call("PATCH", "/apps/secretive/config", { set: { OK: value }, extra: value }),
        await call("PATCH", "/apps/secretive/config", { set: { OK: value.repeat(4000) } }),
        await call("PATCH", "/apps/nosuch/config", { set: { OK: value } }),
      ];
      for (const a of answers) {
        assert.ok(a.status >= 400 && a.status < 500, a.text);
        assert.ok(!a.text.includes(value), `an error answer repeated the value: ${a.text}`);
      }
      await call("DELETE", "/apps/secretive?confirm=secretive");
    });

    it("paginates lists", async () => {
      for (const n of ["pa", "pb", "pc"]) assert.equal((await call("POST", "/apps", { name: n })).status, 201);
      const first = await call("GET", "/apps?limit=2");
      assert.deepEqual(first.json.items.map((a: { name: string }) => a.name), ["pa", "pb"]);
      assert.equal(first.json.next, 2);
      const second = await call("GET", `/apps?limit=2&offset=${first.json.next}`);
      assert.deepEqual(second.json.items.map((a: { name: string }) => a.name), ["pc"]);
      assert.equal(second.json.next, null);
    });
  });
}
