/**
 * The deck server's RouterControl when router nodes may be running: every route change goes to the
 * local router (over its control socket, as without nodes) and into the `routes` table with a new
 * version and a `NOTIFY deck_routes`, in one transaction. The local router is called before the commit,
 * so a change it refuses (a host owned by another app) is never published; nodes see a change only
 * once it is committed, which is when the notification is delivered.
 */
import type { Route, RouterControl } from "../core/index.ts";
import type { DatabasePool } from "../store/index.ts";
import type { Db } from "../store/queries/index.ts";
import {
  currentRouteVersion, deleteAcmeChallenge, listLiveRouterNodes, lockRouteWrites, notifyRouteChange, saveAcmeChallenge, saveAllRoutes, saveRoute,
  type RouterNodeRow,
} from "../store/queries/index.ts";

/** A node heard from within this many seconds counts as live (it reports every second). */
export const LIVE_NODE_SECONDS = 5;
const POLL_MS = 50;

export interface RoutePublisherOptions {
  /** Each change runs in a transaction of its own. */
  db: DatabasePool;
  log?: (line: string) => void;
}

export interface PublishedRouterControl {
  /** The highest route version this process has written (0 before the first change). */
  readonly publishedVersion: number;
  waitForNodes(upstreams: string[], deadline: number): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Why a node still holds up a drain, or undefined once it does not. */
export function nodeWaitReason(node: RouterNodeRow, version: number, upstreams: readonly string[]): string | undefined {
  if (node.routeVersion < version) return `serves route version ${node.routeVersion}, not yet ${version}`;
  const busy = upstreams.filter((u) => (node.inflight[u] ?? 0) > 0);
  if (busy.length > 0) return `still has requests in flight to ${busy.join(", ")}`;
  return undefined;
}

/** Wraps `local` so that route changes are also published to router nodes; other calls go to `local`. */
export function publishRoutes<T extends RouterControl>(local: T, options: RoutePublisherOptions): T & PublishedRouterControl {
  const { db } = options;
  const log = options.log ?? (() => {});
  let published = 0;

  const publish = async (change: (tx: Db) => Promise<unknown>, applyLocally: () => Promise<void>): Promise<void> => {
    const version = await db.transaction(async (tx) => {
      await lockRouteWrites(tx);
      await change(tx);
      await applyLocally();
      const v = await currentRouteVersion(tx);
      await notifyRouteChange(tx, v);
      return v;
    });
    if (version > published) published = version;
  };

  return {
    ...local,
    get publishedVersion() {
      return published;
    },
    setRoute: (route: Route) => publish((tx) => saveRoute(tx, route.app, route), () => local.setRoute(route)),
    removeRoute: (app: string) => publish((tx) => saveRoute(tx, app, null), () => local.removeRoute(app)),
    replaceAll: (routes: Route[]) => publish((tx) => saveAllRoutes(tx, routes), () => local.replaceAll(routes)),
    // ACME answers go to every node too: the CA's check may reach any of them.
    async setAcmeChallenge(token: string, keyAuthorization: string): Promise<void> {
      await local.setAcmeChallenge(token, keyAuthorization);
      await saveAcmeChallenge(db, token, keyAuthorization);
    },
    async removeAcmeChallenge(token: string): Promise<void> {
      await local.removeAcmeChallenge(token);
      await deleteAcmeChallenge(db, token);
    },
    async waitForNodes(upstreams: string[], deadline: number): Promise<void> {
      const version = published;
      for (;;) {
        const nodes = await listLiveRouterNodes(db, LIVE_NODE_SECONDS);
        const waiting = nodes.flatMap((n) => {
          const reason = nodeWaitReason(n, version, upstreams);
          return reason === undefined ? [] : [`${n.label} ${reason}`];
        });
        if (waiting.length === 0) return;
        if (Date.now() >= deadline) {
          log(`drain deadline reached while router node(s) ${waiting.join("; ")}; stopping the old processes anyway`);
          return;
        }
        await sleep(POLL_MS);
      }
    },
  };
}
