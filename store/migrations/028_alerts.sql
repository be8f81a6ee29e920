-- Alerts: rules per app, where each stands, what they did, silences, and rollbacks they caused
-- (monitor/alerts). Every app has the rules `down` and `crash_loop` without rows; a rule added here
-- of one of those kinds replaces the default, and a removed default is named in
-- alert_settings.defaults_removed.
CREATE TABLE alert_rules (
  id          bigserial PRIMARY KEY,
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  kind        text NOT NULL CHECK (kind IN ('down', 'crash_loop', 'http_5xx', 'p95', 'memory')),
  -- crash_loop: restarts; http_5xx and memory: percent; p95: milliseconds; down: 0.
  threshold   double precision NOT NULL,
  for_seconds integer NOT NULL CHECK (for_seconds >= 0),
  -- windowSeconds (crash_loop), minRequests (http_5xx, p95).
  extra       jsonb NOT NULL DEFAULT '{}',
  created_by  bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_rules_app ON alert_rules (app_id);

CREATE TABLE alert_settings (
  app_id           bigint PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
  -- alerts:rollback APP on: a rule firing within 10 minutes of a release going live rolls it back.
  auto_rollback    boolean NOT NULL DEFAULT false,
  defaults_removed text[] NOT NULL DEFAULT '{}'
);

-- Where each rule of an app stands (core/alerts.ts AlertState). rule_key is a rule's id, or the
-- kind of a default rule ('down', 'crash_loop').
CREATE TABLE alert_states (
  app_id           bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  rule_key         text NOT NULL,
  status           text NOT NULL CHECK (status IN ('inactive', 'pending', 'firing', 'resolved')),
  pending_since    timestamptz,
  fired_at         timestamptz,
  resolved_at      timestamptz,
  last_notified_at timestamptz,
  notified         text CHECK (notified IN ('firing', 'resolved')),
  notice_count     integer NOT NULL DEFAULT 0,
  value            double precision,
  words            text NOT NULL DEFAULT '',
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (app_id, rule_key)
);

-- History: each time a rule fired (a new incident or a repeat grouped into one) or resolved.
CREATE TABLE alert_events (
  id        bigserial PRIMARY KEY,
  app_id    bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  rule_key  text NOT NULL,
  rule      text NOT NULL,
  status    text NOT NULL CHECK (status IN ('firing', 'resolved')),
  value     double precision,
  words     text NOT NULL,
  at        timestamptz NOT NULL,
  -- false when a silence held the notice, or a repeat was grouped into the incident
  notified  boolean NOT NULL
);
CREATE INDEX alert_events_app_at ON alert_events (app_id, at DESC);

-- alerts:silence APP 30m: notices held until `until` (states still kept).
CREATE TABLE alert_silences (
  id         bigserial PRIMARY KEY,
  app_id     bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  until      timestamptz NOT NULL,
  created_by bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_silences_app_until ON alert_silences (app_id, until DESC);

-- A release an alert rolled back: once per release, whichever deck server saw it first.
CREATE TABLE alert_rollbacks (
  release_id bigint PRIMARY KEY REFERENCES releases(id) ON DELETE CASCADE,
  app_id     bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  rule_key   text NOT NULL,
  at         timestamptz NOT NULL DEFAULT now()
);
