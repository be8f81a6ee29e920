-- Log retention and log drains, per app.
--
-- logs:retention APP --size 100m --age 14d: how much of the app's log deck keeps; a null column means
-- the server default (monitor/logs/retention.ts trims the log in place, oldest lines first).
CREATE TABLE log_retention (
  app_id          bigint PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
  max_bytes       bigint CHECK (max_bytes > 0),
  max_age_seconds bigint CHECK (max_age_seconds > 0),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- drains:add APP URL: where the app's log lines are shipped as they are written (syslog over TLS or TCP,
-- or batched HTTPS POSTs). The URL is sealed (store/secret-box.ts): an HTTPS drain's URL often carries
-- the receiver's token. The counters are added to by every deck server shipping the app's lines.
CREATE TABLE log_drains (
  id                bigserial PRIMARY KEY,
  app_id            bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  url               text NOT NULL,
  kind              text NOT NULL CHECK (kind IN ('syslog', 'syslog+tls', 'https')),
  -- Which lines go: app (the app's output), deck (deploy and process lines), router (its access lines).
  sources           text[] NOT NULL,
  delivered         bigint NOT NULL DEFAULT 0,
  dropped           bigint NOT NULL DEFAULT 0,
  last_error        text,
  last_error_at     timestamptz,
  last_delivered_at timestamptz,
  created_by        bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX log_drains_app ON log_drains (app_id);
