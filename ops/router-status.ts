/**
 * What the router really does for an app, for `ps:report` and `maintenance:report`: the router is
 * asked (its control socket), and its route compared with what deck expects it to hold.
 */
import type { RouterView } from "../core/index.ts";

export type RouterStatus =
  | { state: "serving" }
  | { state: "maintenance" }
  | { state: "not_answering"; reason: string }
  | { state: "no_route" }
  /** The route points elsewhere than the live processes, or its maintenance setting differs. */
  | { state: "stale"; serving: string[]; expected: string[] }
  /** This router cannot be asked (no control socket of its own). */
  | { state: "unknown" };

export interface ExpectedRoute {
  upstreams: string[];
  maintenance: boolean;
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);

/** Pure: the status shown for `view` when deck expects `expected`. */
export function routerStatusOf(view: RouterView | undefined, expected: ExpectedRoute): RouterStatus {
  if (view === undefined) return { state: "unknown" };
  if (!view.answering) return { state: "not_answering", reason: view.reason };
  if (view.route === null) return { state: "no_route" };
  const maintenance = view.route.settings?.maintenance === true;
  if (maintenance !== expected.maintenance || (!maintenance && !sameSet(view.route.upstreams, expected.upstreams))) {
    return { state: "stale", serving: maintenance ? [] : view.route.upstreams, expected: expected.maintenance ? [] : expected.upstreams };
  }
  return maintenance ? { state: "maintenance" } : { state: "serving" };
}

/** One line for a report, after "Router:". */
export function describeRouterStatus(status: RouterStatus): string {
  switch (status.state) {
    case "serving":
      return "serving the app";
    case "maintenance":
      return "maintenance page (503)";
    case "not_answering":
      return "not answering (restarting)";
    case "no_route":
      return "not serving the app: the router has no route for it";
    case "stale":
      return `not serving the live release: it routes to ${status.serving.join(", ") || "the maintenance page"}, not ${status.expected.join(", ") || "the maintenance page"}`;
    case "unknown":
      return "not checked (no router of this server's own)";
  }
}
