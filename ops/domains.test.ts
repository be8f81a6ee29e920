import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { DeckError, isDeckError, type Route } from "../core/index.ts";
import { findApp, insertApp, insertOrganization, insertUser, listDomains, q, type AppRow } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { RouteLocks, type DeployDeps } from "../deploy/index.ts";
import { callerFor, type Caller } from "./access.ts";
import { addAppDomain } from "./domains.ts";

// The database is real; the router records the routes it is sent, and refuses a host another app holds,
// as deck's router does (route_conflict).
for (const backend of await databaseBackends()) {
  describe(`domains:add (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    let deps: DeployDeps;
    let caller: Caller;
    const routes = new Map<string, Route>();
    const reserved = new Map<string, string>();
    before(async () => {
      t = await openTestDatabase(backend);
      const user = await insertUser(t.db.pool, { email: "admin@example.com", isAdmin: true });
      const org = await insertOrganization(t.db.pool, { name: "o", slug: "o" });
      for (const name of ["shop", "victim", "other"]) await insertApp(t.db.pool, { name, orgId: org.id, createdBy: user.id });
      caller = await callerFor(t.db.pool, user, "cli");
      deps = {
        db: t.db.pool,
        config: { domain: "apps.example.com", upstreamHost: "127.0.0.1", acme: "off" },
        runtime: { list: async () => [] },
        router: {
          setRoute: async (route: Route) => {
            for (const host of route.hosts) {
              const holder = reserved.get(host);
              if (holder !== undefined && holder !== route.app) throw new DeckError("route_conflict", `host "${host}" is already routed to app "${holder}"`);
            }
            routes.set(route.app, route);
          },
        },
        routes: new RouteLocks(),
        log: () => undefined,
      } as unknown as DeployDeps;
    });
    after(async () => {
      await t?.cleanup();
    });

    const domainsOf = async (app: string) => (await listDomains(t.db.pool, (await findApp(t.db.pool, app))!.id)).map((d) => d.domain);
    const refusal = (p: Promise<unknown>) => p.then(() => assert.fail("accepted"), (e: unknown) => {
      assert.ok(isDeckError(e), String(e));
      return e;
    });

    it("refuses names the router cannot serve a certificate for, with one line", async () => {
      for (const bad of ["shop.example-", "-x.example", "x_y.example", "bücher.example", "10.0.0.1", "[::1]", "shop.example:443", "*.shop.example", `${"a".repeat(64)}.example`]) {
        const e = await refusal(addAppDomain(deps, caller, "shop", bad));
        assert.equal(e.code, "validation_failed", bad);
        assert.equal(e.message, `"${bad.slice(0, 60)}" is not a domain name like www.example.com`);
      }
      await addAppDomain(deps, caller, "shop", "WWW.Shop.Example.");
      await addAppDomain(deps, caller, "shop", "xn--bcher-kva.example");
      assert.deepEqual(await domainsOf("shop"), ["www.shop.example", "xn--bcher-kva.example"]);
    });

    it("refuses deck's own domain, not only the names under it", async () => {
      const bare = await refusal(addAppDomain(deps, caller, "shop", "Apps.Example.com."));
      assert.equal(bare.code, "conflict");
      assert.equal(bare.message, "apps.example.com is deck's own domain; apps get APP.apps.example.com automatically, and a custom domain is one of your own, like www.example.com");
      const under = await refusal(addAppDomain(deps, caller, "shop", "victim.apps.example.com"));
      assert.equal(under.code, "conflict");
      assert.ok(!(await domainsOf("shop")).includes("apps.example.com"));
    });

    it("keeps no domain whose route update the router refused", async () => {
      reserved.set("taken.example.com", "victim");
      const e = await refusal(addAppDomain(deps, caller, "shop", "taken.example.com"));
      assert.equal(e.code, "conflict");
      assert.equal(e.message, "taken.example.com is already served by another app; remove it there first", "the other app is not named");
      assert.ok(!(await domainsOf("shop")).includes("taken.example.com"));
      assert.ok(!routes.get("shop")!.hosts.includes("taken.example.com"));
      // Once the router takes it, the domain can be added.
      reserved.delete("taken.example.com");
      await addAppDomain(deps, caller, "shop", "taken.example.com");
      assert.ok(routes.get("shop")!.hosts.includes("taken.example.com"));
    });

    it("answers two domains:add of one name at once with a conflict for the second, never an internal error", async () => {
      const other: AppRow = (await findApp(t.db.pool, "other"))!;
      // The other app's insert is not committed yet when this one checks, so both get past the
      // check and this insert waits on the unique index, then fails.
      const first = new pg.Client({ connectionString: t.db.url });
      await first.connect();
      let result: unknown;
      try {
        await first.query("BEGIN");
        await first.query("INSERT INTO domains (app_id, domain) VALUES ($1, 'race.example.com')", [other.id]);
        const adding = addAppDomain(deps, caller, "shop", "race.example.com").then(() => "added", (e: unknown) => e);
        for (let i = 0; i < 200; i++) {
          const waiting = await t.db.pool.oneFirst(q`SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
          if (Number(waiting) > 0) break;
          await new Promise((r) => setTimeout(r, 25));
        }
        await first.query("COMMIT");
        result = await adding;
      } finally {
        await first.end();
      }
      assert.ok(isDeckError(result), String(result));
      assert.equal(result.code, "conflict");
      assert.equal(result.message, "race.example.com already belongs to another app");
      assert.deepEqual(await domainsOf("other"), ["race.example.com"]);
    });
  });
}
