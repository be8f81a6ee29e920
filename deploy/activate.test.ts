import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { sql } from "slonik";
import { DeckError, type ProcessInfo, type Route } from "../core/index.ts";
import {
  deleteApp, findApp, finishBuild, insertApp, insertBuild, insertDeployment, insertOrganization, insertRelease, insertUser, setAppThrottle, setLiveDeployment, type AppRow,
} from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { parseUpstream } from "../router/route-table.ts";
import { activateRelease, pauseRoute, refreshRoute, RouteLocks, upstreamAddress, withRouteLock } from "./activate.ts";
import type { DeployDeps } from "./deps.ts";

// The database is real. The app's processes and the router are recorded here instead: what is tested
// is which upstreams a route change sends, and in which order (the full path is in test/router-*.test.ts).
const web = (app: string, generation: number, port: number): ProcessInfo => ({
  id: `${app}.g${generation}.web.1`, app, release: generation, generation, type: "web", index: 1, port, state: "running", restarts: 0, startedAt: new Date().toISOString(),
});

/** `target` with every method call recorded in `calls` (as `name.method`) before it runs. */
function recordCalls<T extends object>(target: T, name: string, calls: string[]): T {
  return new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls.push(`${name}.${String(property)}`);
        return (value as (...a: unknown[]) => unknown).apply(object, args);
      };
    },
  });
}

for (const backend of await databaseBackends()) {
  describe(`route refreshes and deploy switches (${backend.name} PostgreSQL)`, () => {
    let t: TestDatabase;
    before(async () => {
      t = await openTestDatabase(backend);
    });
    after(async () => {
      await t?.cleanup();
    });

    /** An app with two deployments, the first live, each with one web process (ports 1001 and 1002). */
    async function setup(name: string): Promise<{ deps: DeployDeps; sent: Route[]; app: AppRow; second: number }> {
      const user = await insertUser(t.db.pool, { email: `${name}@example.com`, isAdmin: false });
      const org = await insertOrganization(t.db.pool, { name, slug: name });
      const app = await insertApp(t.db.pool, { name, orgId: org.id, createdBy: user.id });
      const first = await insertDeployment(t.db.pool, { appId: app.id, kind: "push", createdBy: user.id });
      const second = await insertDeployment(t.db.pool, { appId: app.id, kind: "push", createdBy: user.id });
      await setLiveDeployment(t.db.pool, app.id, first.id);
      const sent: Route[] = [];
      const processes = [web(name, first.id, 1001), web(name, second.id, 1002)];
      const deps = {
        db: t.db.pool,
        config: { domain: "deck.localhost", upstreamHost: "127.0.0.1" },
        runtime: { list: async () => processes },
        router: { setRoute: async (route: Route) => void sent.push(route) },
        routes: new RouteLocks(),
        log: () => undefined,
      } as unknown as DeployDeps;
      return { deps, sent, app: (await findApp(t.db.pool, name))!, second: second.id };
    }

    it("a refresh given a row read before a switch sends the release that is live now", async () => {
      const { deps, sent, app, second } = await setup("stale");
      await setLiveDeployment(t.db.pool, app.id, second);
      await refreshRoute(deps, app);
      assert.deepEqual(sent.map((r) => r.upstreams), [["127.0.0.1:1002"]]);
      assert.deepEqual(sent[0].hosts, ["stale.deck.localhost"]);
    });

    it("a refresh that starts during a switch waits for it, then sends the new release", async () => {
      const { deps, sent, app, second } = await setup("racing");
      let refreshing: Promise<void> | undefined;
      // What the refresh reads (the app's row, its processes), recorded as each read is asked for.
      const reads: string[] = [];
      const watched = { ...deps, db: recordCalls(deps.db, "db", reads), runtime: recordCalls(deps.runtime, "runtime", reads) };
      await withRouteLock(deps, app.name, async () => {
        refreshing = refreshRoute(watched, app);
        // Whatever the refresh does before it waits for the lock has run once the event loop turns: a
        // refresh that did not wait would have asked for the live release by now.
        await new Promise((r) => setImmediate(r));
        assert.deepEqual(reads, [], "the refresh reads nothing while a switch holds the route lock");
        // What a deploy's switch does under the lock: the new upstreams, then the new live generation.
        sent.push({ app: app.name, hosts: [], upstreams: ["127.0.0.1:1002"] });
        await setLiveDeployment(t.db.pool, app.id, second);
      });
      await refreshing;
      assert.ok(reads.length > 0, "the refresh read the app once the switch was done");
      assert.deepEqual(sent.map((r) => r.upstreams), [["127.0.0.1:1002"], ["127.0.0.1:1002"]], "the refresh came after the switch and kept its upstreams");
    });

    it("a refresh while a first release is starting keeps the route paused; unpausing ends it", async () => {
      const { deps, sent, app } = await setup("starting");
      await t.db.pool.query(sql.unsafe`UPDATE apps SET live_deployment_id = NULL WHERE id = ${app.id}`);
      const fresh = (await findApp(t.db.pool, app.name))!;
      await pauseRoute(deps, fresh, true);
      await refreshRoute(deps, fresh);
      await pauseRoute(deps, fresh, false);
      await refreshRoute(deps, fresh);
      assert.deepEqual(sent.map((r) => [r.upstreams, r.settings?.paused ?? false]), [[[], true], [[], true], [[], false], [[], false]]);
    });

    it("a first deploy whose process start throws lets held requests go and leaves the route unpaused", async () => {
      const { deps, sent, app } = await setup("throws");
      await t.db.pool.query(sql.unsafe`UPDATE apps SET live_deployment_id = NULL WHERE id = ${app.id}`);
      const fresh = (await findApp(t.db.pool, app.name))!;
      const slug = await mkdtemp(join(tmpdir(), "deck-slug-"));
      try {
        const user = await insertUser(t.db.pool, { email: "throws-deployer@example.com", isAdmin: false });
        const build = await insertBuild(t.db.pool, app.id, "a".repeat(40));
        await finishBuild(t.db.pool, build.id, { ok: true, buildpack: "node", slugPath: slug, procfile: { web: "node server.js" } });
        const release = await t.db.pool.transaction((tx) => insertRelease(tx, { appId: app.id, buildId: build.id, config: {}, commitSha: "a".repeat(40), description: "v1", createdBy: user.id }));
        const deployment = await insertDeployment(t.db.pool, { appId: app.id, kind: "push", createdBy: user.id });
        const failing = {
          ...deps,
          config: { ...deps.config, stopGrace: 1 },
          paths: { appLog: () => join(slug, "app.log") },
          runtime: {
            list: async () => [],
            start: async () => { throw new DeckError("process_start_failed", "throws.web.1: the container did not start: port is already allocated"); },
            stop: async () => undefined,
          },
          allocatePort: async () => 45678,
        } as unknown as DeployDeps;
        await assert.rejects(
          activateRelease(failing, { app: fresh, release, build: { ...build, slugPath: slug, procfile: { web: "node server.js" } }, deploymentId: deployment.id, runReleasePhase: false, out: () => undefined }),
          /port is already allocated/,
        );
        await refreshRoute(failing, fresh);
        assert.deepEqual(sent.map((r) => r.settings?.paused ?? false), [true, false, false], "paused for the start, unpaused when it failed, and a later refresh does not pause it again");
      } finally {
        await rm(slug, { recursive: true, force: true });
      }
    });

    it("a refresh for an app destroyed meanwhile sends nothing", async () => {
      const { deps, sent, app } = await setup("gone");
      await deleteApp(t.db.pool, app.id);
      await refreshRoute(deps, app);
      assert.deepEqual(sent, []);
    });

    it("an app's bandwidth throttle goes out in its route as bandwidthBytesPerSecond, and leaves with it", async () => {
      const { deps, sent, app } = await setup("throttled");
      assert.equal(await setAppThrottle(t.db.pool, app.id, 100_000), true);
      assert.equal(await setAppThrottle(t.db.pool, app.id, 100_000), false, "setting the same value again changes nothing");
      await refreshRoute(deps, app);
      assert.deepEqual(sent.at(-1)?.settings, { bandwidthBytesPerSecond: 100_000 });
      assert.equal(await setAppThrottle(t.db.pool, app.id, null), true);
      await refreshRoute(deps, app);
      assert.deepEqual(sent.at(-1)?.settings, {});
      assert.equal(await setAppThrottle(t.db.pool, app.id, null), false);
      await assert.rejects(setAppThrottle(t.db.pool, app.id, 0), RangeError);
    });
  });
}

describe("upstreamAddress", () => {
  it("names a process by the address it was published on and its port, an IPv6 address in brackets as routes need", () => {
    const at = (host: string) => upstreamAddress({ host, port: 40123 });
    assert.equal(upstreamAddress({ port: 40123 }), "127.0.0.1:40123", "processes started before deck recorded the address");
    assert.equal(at("127.0.0.1"), "127.0.0.1:40123");
    assert.equal(at("10.0.0.5"), "10.0.0.5:40123");
    assert.equal(at("fd00::5"), "[fd00::5]:40123");
    for (const address of [at("10.0.0.5"), at("fd00::5")]) assert.ok(parseUpstream(address), `${address} is a route upstream`);
    assert.equal(parseUpstream(at("fd00::5"))?.host, "fd00::5");
  });
});
