-- Uptime: deck probes each running app's health check path through its router (monitor/uptime).

-- Checks and failed checks per app and UTC day, added to by every check: one small row per app and
-- day however often apps are probed. Kept 400 days.
CREATE TABLE uptime_days (
  app_id   bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  day      date NOT NULL,
  checks   integer NOT NULL DEFAULT 0,
  failures integer NOT NULL DEFAULT 0,
  PRIMARY KEY (app_id, day),
  CHECK (failures >= 0 AND failures <= checks)
);
CREATE INDEX uptime_days_day ON uptime_days (day);

-- A time an app was down: opened after consecutive failed checks (source 'probe') or from the
-- router's traffic ('traffic'); ended_at stays NULL while it lasts. At most one open per app and source.
CREATE TABLE uptime_incidents (
  id         bigserial PRIMARY KEY,
  app_id     bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  source     text NOT NULL CHECK (source IN ('probe', 'traffic')),
  started_at timestamptz NOT NULL,
  ended_at   timestamptz,
  cause      text NOT NULL,
  CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE UNIQUE INDEX uptime_incidents_open ON uptime_incidents (app_id, source) WHERE ended_at IS NULL;
CREATE INDEX uptime_incidents_app_started ON uptime_incidents (app_id, started_at DESC);

-- Where probing of each app stands, shared by the deck servers that take turns probing:
-- `round` names the round that claimed the app last (claimed_at), checked_at is when a round last
-- wrote its result. `state` is up | failing | down | recovering; `streak` counts the consecutive checks
-- that moved it there, the first of them at `since`; `cause` is the last failure's.
CREATE TABLE uptime_probes (
  app_id     bigint PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
  round      text,
  claimed_at timestamptz NOT NULL,
  checked_at timestamptz,
  state      text NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'failing', 'down', 'recovering')),
  streak     integer NOT NULL DEFAULT 0,
  since      timestamptz,
  cause      text
);
