import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import type { Route } from "../core/index.ts";
import { listenForNotifications } from "../store/index.ts";
import { listRouteChangesSince, q, ROUTES_CHANNEL, saveRouterNodeHeartbeat, type RouteChange } from "../store/queries/index.ts";
import { databaseBackends, openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { createRouterControl, type RouterControlClient } from "./control-client.ts";
import { createControlServer } from "./control-server.ts";
import { publishRoutes, type PublishedRouterControl } from "./route-publisher.ts";
import { mergeRouteChanges, RouteSync } from "./route-sync.ts";
import { RouteTable } from "./route-table.ts";

const route = (app: string, upstreams: string[] = ["127.0.0.1:3001"], hosts = [`${app}.localhost`]): Route => ({ app, hosts, upstreams });
const row = (version: number, r: Route | null, app = r?.app ?? "gone"): RouteChange => ({ app, route: r, version });
const asMap = (...routes: [Route, number][]) => new Map(routes.map(([r, v]) => [r.app, { route: r, version: v }]));

describe("mergeRouteChanges", () => {
  it("applies sets and removals in version order on top of the current table", () => {
    const current = asMap([route("a"), 1], [route("b"), 2]);
    const { routes, result } = mergeRouteChanges(current, [row(3, route("a", ["127.0.0.1:4000"])), row(4, null, "b"), row(5, route("c"))], false, 2);
    assert.deepEqual([...routes.keys()].sort(), ["a", "c"]);
    assert.deepEqual(result.snapshot.byApp.get("a")?.upstreams.map((u) => u.address), ["127.0.0.1:4000"]);
    assert.equal(result.version, 5);
    assert.deepEqual(result.summary, ["a", "-b", "c"]);
    assert.deepEqual(result.rejected, []);
  });

  it("keeps the version it had when nothing changed", () => {
    const { result } = mergeRouteChanges(asMap([route("a"), 7]), [], false, 7);
    assert.equal(result.version, 7);
    assert.equal(result.snapshot.byApp.size, 1);
  });

  it("a full reload keeps only the rows read, so an app removed meanwhile is gone", () => {
    const current = asMap([route("a"), 1], [route("stale"), 2]);
    const { routes, result } = mergeRouteChanges(current, [row(1, route("a")), row(9, null, "stale"), row(12, route("b"))], true, 2);
    assert.deepEqual([...routes.keys()].sort(), ["a", "b"]);
    assert.equal(result.version, 12);
  });

  it("leaves out a route that does not validate and serves the rest", () => {
    const bad = { app: "bad", hosts: [], upstreams: [] } as Route;
    const { result } = mergeRouteChanges(new Map(), [row(1, bad), row(2, route("good"))], false, 0);
    assert.deepEqual([...result.snapshot.byApp.keys()], ["good"]);
    assert.equal(result.rejected.length, 1);
    assert.equal(result.rejected[0]!.app, "bad");
  });

  it("when two apps claim one host the newer change wins", () => {
    const current = asMap([route("old", ["127.0.0.1:3001"], ["shared.test"]), 1]);
    const { result } = mergeRouteChanges(current, [row(2, route("new", ["127.0.0.1:3002"], ["shared.test"]))], false, 1);
    assert.equal(result.snapshot.byHost.get("shared.test")?.app, "new");
    assert.deepEqual(result.rejected.map((r) => r.app), ["old"]);
  });
});

const backends = await databaseBackends();

for (const backend of backends) {
  describe(`routes published through PostgreSQL (${backend.name})`, () => {
    let tdb: TestDatabase;
    let dir: string;
    let local: RouteTable;
    let closeControl: () => Promise<void>;
    let publisher: RouterControlClient & PublishedRouterControl;
    const logs: string[] = [];

    before(async () => {
      tdb = await openTestDatabase(backend);
      dir = await mkdtemp(join(tmpdir(), "deck-route-sync-"));
      local = new RouteTable();
      const socket = join(dir, "router.sock");
      const server = createControlServer({ table: local, inflight: () => 0, routesFile: join(dir, "routes.json") });
      await new Promise<void>((resolve) => server.listen(socket, resolve));
      closeControl = () => new Promise((resolve) => server.close(() => resolve()));
      publisher = publishRoutes(createRouterControl(socket), { db: tdb.db.pool, log: (l) => logs.push(l) });
    });
    after(async () => {
      await closeControl?.();
      await tdb?.cleanup();
      await rm(dir, { recursive: true, force: true });
    });

    const follower = () => {
      const table = new RouteTable();
      const sync = new RouteSync({ table, fetchSince: (v) => listRouteChangesSince(tdb.db.pool, v) });
      return { table, sync };
    };

    it("a node following the table sees every change the local router got, removals included", async () => {
      const { table, sync } = follower();
      await publisher.setRoute(route("shop"));
      await publisher.setRoute(route("blog"));
      await sync.catchUp();
      assert.deepEqual(table.routes(), local.routes());
      await publisher.setRoute(route("shop", ["127.0.0.1:3999"]));
      await publisher.removeRoute("blog");
      await sync.catchUp();
      assert.deepEqual(table.routes(), [route("shop", ["127.0.0.1:3999"])]);
      assert.equal(sync.version, publisher.publishedVersion);
    });

    it("replaceAll publishes exactly the new table, and an unchanged route keeps its version", async () => {
      const { table, sync } = follower();
      await sync.reloadAll();
      const before = sync.version;
      await publisher.replaceAll([route("shop", ["127.0.0.1:3999"]), route("docs")]);
      await sync.catchUp();
      assert.deepEqual(table.routes(), local.routes());
      const changes = await listRouteChangesSince(tdb.db.pool, before);
      assert.deepEqual(changes.map((c) => c.app), ["docs"], "only the new app changed");
    });

    it("a change the local router refuses is not published", async () => {
      const version = publisher.publishedVersion;
      await assert.rejects(publisher.setRoute(route("thief", ["127.0.0.1:3001"], ["shop.localhost"])), /already routed to app "shop"/);
      const { table, sync } = follower();
      await sync.reloadAll();
      assert.equal(table.routes().some((r) => r.app === "thief"), false);
      assert.equal(sync.version, version);
    });

    it("a follower catching up while many writers publish at once ends with the same table", async () => {
      const { table, sync } = follower();
      await sync.reloadAll();
      let writing = true;
      const reader = (async () => {
        while (writing) await sync.catchUp();
      })();
      await Promise.all(Array.from({ length: 30 }, (_, i) => publisher.setRoute(route(`app${i % 6}`, [`127.0.0.1:${5000 + i}`]))));
      writing = false;
      await reader;
      await sync.catchUp();
      assert.deepEqual(table.routes(), local.routes());
    });

    it("a route's settings reach a node as sent, a bandwidth limit included", async () => {
      const { table, sync } = follower();
      await sync.reloadAll();
      const settings = { bandwidthBytesPerSecond: 50_000, hsts: true };
      await publisher.setRoute({ ...route("tube"), settings });
      await sync.catchUp();
      assert.deepEqual(table.lookup("tube.localhost")?.settings, settings);
      assert.deepEqual(local.lookup("tube.localhost")?.settings, settings, "the local router took it too");
      await publisher.setRoute(route("tube"));
      await sync.catchUp();
      assert.deepEqual(table.lookup("tube.localhost")?.settings, {}, "and the limit lifted");
    });

    it("each change is announced on deck_routes, and a listener that loses its connection reconnects and re-reads", async () => {
      const payloads: string[] = [];
      let connects = 0;
      let connected!: () => void;
      let reconnected = new Promise<void>((r) => (connected = r));
      const listener = listenForNotifications({
        url: tdb.db.url,
        channels: [ROUTES_CHANNEL],
        onNotification: (_channel, payload) => payloads.push(payload),
        onConnected: () => {
          connects++;
          connected();
        },
      });
      try {
        await reconnected;
        await publisher.setRoute(route("news"));
        while (!payloads.includes(String(publisher.publishedVersion))) await new Promise((r) => setTimeout(r, 10));

        reconnected = new Promise<void>((r) => (connected = r));
        const admin = new pg.Client({ connectionString: tdb.db.url });
        await admin.connect();
        await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid()`, [`LISTEN "${ROUTES_CHANNEL}"`]);
        await admin.end();
        await reconnected;
        assert.equal(connects, 2);
        await publisher.removeRoute("news");
        while (!payloads.includes(String(publisher.publishedVersion))) await new Promise((r) => setTimeout(r, 10));
      } finally {
        await listener.close();
      }
    });

    it("waitForNodes returns at once without live nodes, and ignores a node gone silent", async () => {
      const deadline = Date.now() + 60_000;
      await publisher.waitForNodes(["127.0.0.1:3001"], deadline);
      await saveRouterNodeHeartbeat(tdb.db.pool, { id: "silent", label: "silent:1", routeVersion: 0, inflight: { "127.0.0.1:3001": 3 } });
      await tdb.db.pool.query(q`UPDATE router_nodes SET last_seen = now() - interval '1 minute' WHERE id = 'silent'`);
      await publisher.waitForNodes(["127.0.0.1:3001"], deadline);
      assert.ok(Date.now() < deadline);
    });

    it("waitForNodes waits until every live node serves the new version and has finished with the old upstreams", async () => {
      const old = "127.0.0.1:3999";
      await publisher.setRoute(route("shop", ["127.0.0.1:4100"]));
      const target = publisher.publishedVersion;
      await saveRouterNodeHeartbeat(tdb.db.pool, { id: "n1", label: "edge-1:80", routeVersion: target - 1, inflight: { [old]: 2 } });
      await saveRouterNodeHeartbeat(tdb.db.pool, { id: "n2", label: "edge-2:80", routeVersion: target, inflight: {} });
      let done = false;
      const waiting = publisher.waitForNodes([old], Date.now() + 60_000).then(() => (done = true));
      const stillWaiting = async () => {
        await new Promise((r) => setTimeout(r, 300));
        return !done;
      };
      assert.ok(await stillWaiting(), "a node on the old version holds the drain");
      await saveRouterNodeHeartbeat(tdb.db.pool, { id: "n1", label: "edge-1:80", routeVersion: target, inflight: { [old]: 1, "127.0.0.1:4100": 5 } });
      assert.ok(await stillWaiting(), "a node with a request in flight to the old upstream holds the drain");
      await saveRouterNodeHeartbeat(tdb.db.pool, { id: "n1", label: "edge-1:80", routeVersion: target, inflight: { "127.0.0.1:4100": 5 } });
      await waiting;
      assert.equal(done, true);
    });

    it("waitForNodes gives up at the deadline and says which node held it", async () => {
      await saveRouterNodeHeartbeat(tdb.db.pool, { id: "n3", label: "edge-3:80", routeVersion: 0, inflight: {} });
      logs.length = 0;
      await publisher.waitForNodes([], Date.now() + 200);
      assert.equal(logs.length, 1);
      assert.match(logs[0]!, /edge-3:80 serves route version 0/);
    });
  });
}
