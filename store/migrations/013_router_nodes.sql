-- The route table every router node serves, and the router nodes that serve it.
--
-- Each change to an app's route takes the next value of route_version, and writers take turns
-- (an advisory lock held until commit), so versions become visible in the order they were given:
-- a node that has read everything up to version N has missed nothing below it. A removed app keeps
-- its row with route NULL, so nodes learn of removals the same way.
CREATE SEQUENCE route_version;

CREATE TABLE routes (
  app text PRIMARY KEY,
  -- The Route (core/interfaces.ts) as the router serves it; NULL = removed.
  route jsonb,
  version bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX routes_version_idx ON routes (version);

-- One row per running router node (`deck server --role router`), refreshed by its heartbeat.
CREATE TABLE router_nodes (
  id text PRIMARY KEY,
  label text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),
  -- The highest route version the node serves.
  route_version bigint NOT NULL DEFAULT 0,
  -- Requests and WebSocket tunnels in flight per upstream ("127.0.0.1:PORT": n), non-zero ones only.
  inflight jsonb NOT NULL DEFAULT '{}'
);
