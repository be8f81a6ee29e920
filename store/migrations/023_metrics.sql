-- What deck measures about each app, every 10 seconds, and rolled up per minute and per hour.
-- `process` is '' for the whole app (the router's counts and all its processes together) or a
-- process of its live release ('web.1'). A row covers `seconds` of measurements starting at `at`:
-- counts are totals over them, rss_bytes and connections the highest seen, memory_limit_bytes the
-- limit in force. `latency` counts the app's requests per latency bucket (router/metering.ts
-- LATENCY_BUCKETS, then +Inf), so that percentiles of any period come from summed histograms.
-- Kept: 10-second rows 48 hours, 1-minute rows 30 days, hourly rows 13 months.
CREATE TABLE metric_samples (
  app_id             bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  resolution         integer NOT NULL CHECK (resolution IN (10, 60, 3600)),
  process            text NOT NULL DEFAULT '',
  at                 timestamptz NOT NULL,
  seconds            real NOT NULL,
  release            integer,
  cpu_seconds        double precision,
  rss_bytes          bigint,
  memory_limit_bytes bigint,
  restarts           integer NOT NULL DEFAULT 0,
  connections        integer,
  requests           bigint NOT NULL DEFAULT 0,
  status_2xx         bigint NOT NULL DEFAULT 0,
  status_3xx         bigint NOT NULL DEFAULT 0,
  status_4xx         bigint NOT NULL DEFAULT 0,
  status_5xx         bigint NOT NULL DEFAULT 0,
  bytes_in           bigint NOT NULL DEFAULT 0,
  bytes_out          bigint NOT NULL DEFAULT 0,
  latency            integer[],
  PRIMARY KEY (app_id, resolution, process, at)
);
CREATE INDEX metric_samples_age ON metric_samples (resolution, at);
