-- Autoscaling (ps:autoscale): per app and process type, the bounds and targets deck scales it on,
-- and the changes it made (monitor/autoscale; the rules are core/autoscale.ts).
CREATE TABLE autoscale_settings (
  app_id          bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  process_type    text NOT NULL,
  min_processes   integer NOT NULL CHECK (min_processes >= 1),
  max_processes   integer NOT NULL CHECK (max_processes <= 50 AND max_processes >= min_processes),
  -- Targets; null = not scaled on it. p95 in milliseconds, CPU in percent of one core per process,
  -- requests per second per process.
  p95_ms          integer CHECK (p95_ms > 0),
  cpu_percent     double precision CHECK (cpu_percent > 0),
  rps             double precision CHECK (rps > 0),
  -- Rounds in a row that saw a target exceeded (scale-out waits for two).
  exceeded_rounds integer NOT NULL DEFAULT 0,
  updated_by      bigint REFERENCES users(id) ON DELETE SET NULL,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (app_id, process_type),
  CHECK (p95_ms IS NOT NULL OR cpu_percent IS NOT NULL OR rps IS NOT NULL)
);

-- What deck decided and how it went: 'pending' while the scale runs (another deck server leaves the
-- type alone meanwhile), then 'done' or 'failed'. Kept 30 days.
CREATE TABLE autoscale_decisions (
  id           bigserial PRIMARY KEY,
  app_id       bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  process_type text NOT NULL,
  direction    text NOT NULL CHECK (direction IN ('out', 'in')),
  from_count   integer NOT NULL,
  to_count     integer NOT NULL,
  reason       text NOT NULL,
  status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
  error        text,
  at           timestamptz NOT NULL,
  finished_at  timestamptz
);
CREATE INDEX autoscale_decisions_app_at ON autoscale_decisions (app_id, at DESC);
CREATE INDEX autoscale_decisions_at ON autoscale_decisions (at);
CREATE INDEX autoscale_decisions_pending ON autoscale_decisions (app_id, process_type) WHERE status = 'pending';
