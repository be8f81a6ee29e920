/**
 * Token scopes on every route of the REST API, through a real HTTP server, real personal tokens and
 * session access tokens, and a real database: every route declares its scope (and the OpenAPI document
 * says which), a token narrower than a route's scope gets 403 naming the scope it lacks, and revealing
 * config values takes the scope (and the role) that may change them.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import type { DeployDeps } from "../deploy/index.ts";
import { addMember, insertApp, insertOrganization, insertUser, saveConfigVars } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { createApiApp } from "./app.ts";
import { createAuthDeps, createPersonalToken, SCOPES, SESSION_SCOPES, type Scope } from "./auth/index.ts";
import { ROUTES, type RouteDef } from "./registry.ts";

const APP = "scoped";
const SECRET = "s3cret-value-that-must-stay-masked";
const RANK: Record<Scope, number> = { read: 0, deploy: 1, write: 2, admin: 3 };

/** Routes that take no token, on purpose: a new public route must be added here knowingly. */
const PUBLIC = [
  "GET /auth/jwks", "GET /auth/oidc/:provider/callback", "GET /auth/oidc/:provider/start", "GET /health", "GET /openapi.json",
  "POST /apps/:app/webhooks/github", "POST /apps/:app/webhooks/gitlab", "POST /billing/stripe/webhook", "POST /session",
];

const routeName = (def: RouteDef) => `${def.method.toUpperCase()} ${def.path}`;

/** The route's path with each parameter filled: `valid` names the test app, otherwise a value no schema accepts. */
function pathOf(def: RouteDef, valid: boolean): string {
  return def.path.replace(/:([A-Za-z0-9_]+)/g, (_, name: string) => (valid && name === "app" ? APP : "-NOT VALID-"));
}

interface Reply {
  status: number;
  json: { error?: { code: string; message: string } } & Record<string, unknown>;
  text: string;
}

const backends = await databaseBackends();

for (const backend of backends) {
  describe(`token scopes on every API route (${backend.name} PostgreSQL)`, () => {
    let tdb: TestDatabase;
    let server: http.Server;
    let base = "";
    const tokens = {} as Record<Scope, string>;
    let session = "";
    let memberSession = "";
    const logged: string[] = [];

    const call = async (method: string, path: string, token: string | null, body?: unknown): Promise<Reply> => {
      const headers: Record<string, string> = {};
      if (token) headers.authorization = `Bearer ${token}`;
      if (body !== undefined) headers["content-type"] = "application/json";
      const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      let json: Reply["json"] = {};
      try {
        json = JSON.parse(text) as Reply["json"];
      } catch {
        // raw routes answer text
      }
      return { status: res.status, json, text };
    };

    before(async () => {
      tdb = await openTestDatabase(backend, { secrets: true });
      const db = tdb.db.pool;
      const auth = await createAuthDeps({ db, dataDir: tdb.dataDir });
      const owner = await insertUser(db, { email: "owner@example.com", isAdmin: false });
      const member = await insertUser(db, { email: "member@example.com", isAdmin: false });
      const org = await insertOrganization(db, { name: "Scoped", slug: "scoped-org" });
      await addMember(db, org.id, owner.id, "owner");
      await addMember(db, org.id, member.id, "member");
      const app = await insertApp(db, { name: APP, orgId: org.id, createdBy: owner.id });
      await saveConfigVars(db, app.id, { API_KEY: SECRET });
      for (const scope of SCOPES) tokens[scope] = (await createPersonalToken(db, { userId: owner.id, name: scope, scopes: [scope] })).token;
      session = await auth.keys.signAccessToken({ userId: owner.id, scopes: SESSION_SCOPES });
      memberSession = await auth.keys.signAccessToken({ userId: member.id, scopes: SESSION_SCOPES });
      // Only the database is real behind the routes: no request in this file gets past the checks to
      // a handler that would need the runtime, router or builder.
      const deps = { db, log: (line: string) => logged.push(line) } as unknown as DeployDeps;
      server = http.createServer(createApiApp(deps, { extra: { auth } }).callback());
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
    });

    after(async () => {
      if (server) await new Promise((resolve) => server.close(resolve));
      await tdb?.cleanup();
    });

    it("every route declares its scope, the OpenAPI document lists it, and only the known routes are public", async () => {
      const doc = await call("GET", "/openapi.json", null);
      assert.equal(doc.status, 200, doc.text);
      const paths = doc.json.paths as Record<string, Record<string, { "x-scope"?: string; security?: { bearer: string[] }[] }>>;
      const documented = Object.values(paths).reduce((n, ops) => n + Object.keys(ops).length, 0);
      assert.equal(documented, ROUTES.length, "the document has exactly the registered routes");
      for (const def of ROUTES) {
        assert.ok(def.scope === "public" || (SCOPES as readonly string[]).includes(def.scope), `${routeName(def)} declares a scope`);
        const op = paths[`/api/v1${def.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`]?.[def.method];
        assert.ok(op, `${routeName(def)} is in the document`);
        assert.equal(op["x-scope"], def.scope, `${routeName(def)}: documented scope`);
        assert.deepEqual(op.security, def.scope === "public" ? undefined : [{ bearer: [def.scope] }], `${routeName(def)}: security`);
        // Nothing that changes state is open to a read-only token.
        if (def.method !== "get" && def.scope !== "public") assert.notEqual(def.scope, "read", `${routeName(def)} changes state`);
      }
      assert.deepEqual(ROUTES.filter((d) => d.scope === "public").map(routeName).sort(), PUBLIC);
    });

    it("a token narrower than a route's scope gets 403 naming the missing scope, on every route", async () => {
      let refused = 0;
      for (const def of ROUTES) {
        if (def.scope === "public") continue;
        const needed = def.scope;
        for (const scope of SCOPES.filter((s) => RANK[s] < RANK[needed])) {
          const r = await call(def.method.toUpperCase(), pathOf(def, true), tokens[scope], def.method === "get" ? undefined : {});
          assert.equal(r.status, 403, `${routeName(def)} with a ${scope} token: ${r.text}`);
          assert.equal(r.json.error?.code, "insufficient_scope", `${routeName(def)} with a ${scope} token`);
          assert.equal(
            r.json.error?.message,
            `this token lacks the "${needed}" scope needed for ${routeName(def)}: use a token with that scope (POST /api/v1/tokens) or sign in`,
          );
          refused++;
        }
      }
      assert.ok(refused > ROUTES.length, `${refused} refusals`);
    });

    it("a token with the route's scope, or a session, gets past the scope check on every route", async () => {
      for (const def of ROUTES) {
        if (def.scope === "public") continue;
        // Invalid parameters and an empty body: the request stops at validation, after the scope check.
        const path = def.path.includes(":") ? pathOf(def, false) : `${def.path}${def.query ? "?not-a-field=1" : ""}`;
        for (const token of [tokens[def.scope], session]) {
          const r = await call(def.method.toUpperCase(), path, token, def.body ? { "not-a-field": 1 } : undefined);
          assert.notEqual(r.json.error?.code, "insufficient_scope", `${routeName(def)}: ${r.text}`);
          assert.ok(r.status < 500, `${routeName(def)}: ${r.status} ${r.text}`);
        }
      }
      assert.deepEqual(logged.filter((l) => /error|Error/.test(l)), [], "no request reached a handler that failed");
    });

    describe("revealing config values", () => {
      it("a read token sees masked values and is refused ?reveal=true, naming the write scope", async () => {
        const masked = await call("GET", `/apps/${APP}/config`, tokens.read);
        assert.equal(masked.status, 200, masked.text);
        assert.deepEqual(Object.keys(masked.json), ["API_KEY"]);
        assert.ok(!masked.text.includes(SECRET), masked.text);
        for (const scope of ["read", "deploy"] as const) {
          const r = await call("GET", `/apps/${APP}/config?reveal=true`, tokens[scope]);
          assert.equal(r.status, 403, r.text);
          assert.equal(r.json.error?.code, "insufficient_scope");
          assert.equal(
            r.json.error?.message,
            `this token lacks the "write" scope needed for GET /apps/:app/config?reveal=true: use a token with that scope (POST /api/v1/tokens) or sign in`,
          );
          assert.ok(!r.text.includes(SECRET));
        }
      });

      it("a write token and a signed-in owner see the values in clear", async () => {
        for (const token of [tokens.write, tokens.admin, session]) {
          const r = await call("GET", `/apps/${APP}/config?reveal=true`, token);
          assert.equal(r.status, 200, r.text);
          assert.deepEqual(r.json, { API_KEY: SECRET });
        }
      });

      it("a signed-in member, whose role may not change config, is refused by the role", async () => {
        const masked = await call("GET", `/apps/${APP}/config`, memberSession);
        assert.equal(masked.status, 200, masked.text);
        const r = await call("GET", `/apps/${APP}/config?reveal=true`, memberSession);
        assert.equal(r.status, 403, r.text);
        assert.equal(r.json.error?.code, "forbidden");
        assert.match(r.json.error?.message ?? "", /^permission denied: config:set on scoped/);
        assert.ok(!r.text.includes(SECRET));
      });
    });
  });
}
