-- Per-app router settings (NULL = the server-wide default) and per-hour bandwidth metering.
ALTER TABLE apps ADD COLUMN maintenance boolean NOT NULL DEFAULT false;
ALTER TABLE apps ADD COLUMN rate_limit_rps real CHECK (rate_limit_rps IS NULL OR rate_limit_rps >= 0);
ALTER TABLE apps ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst IS NULL OR rate_limit_burst >= 1);
ALTER TABLE apps ADD COLUMN max_body_bytes bigint CHECK (max_body_bytes IS NULL OR max_body_bytes >= 0);
ALTER TABLE apps ADD COLUMN redirect_https boolean NOT NULL DEFAULT false;
ALTER TABLE apps ADD COLUMN hsts boolean NOT NULL DEFAULT false;

-- What the router counted for an app in one clock hour (UTC); the input for bandwidth billing.
CREATE TABLE bandwidth_usage (
  app_id bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  hour timestamptz NOT NULL,
  requests bigint NOT NULL DEFAULT 0,
  bytes_in bigint NOT NULL DEFAULT 0,
  bytes_out bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (app_id, hour)
);
