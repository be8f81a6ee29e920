-- Several machines measure the same app: each deck server its own processes and router, each router
-- node its own traffic. `source` names who wrote a 10-second row (a deck server's holder name, or
-- 'router:HOST:PORT' for a router node); readers add the rows of one period together. Rollups
-- (1-minute and hourly rows) hold every source's sum and have source ''.
ALTER TABLE metric_samples ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE metric_samples DROP CONSTRAINT metric_samples_pkey;
ALTER TABLE metric_samples ADD PRIMARY KEY (app_id, resolution, process, source, at);

-- Uptime checks come from deck's servers (location '', who take turns) and from each router node
-- (location 'HOST:PORT', through that node): each location keeps its own probe state and incidents.
ALTER TABLE uptime_probes ADD COLUMN location text NOT NULL DEFAULT '';
ALTER TABLE uptime_probes DROP CONSTRAINT uptime_probes_pkey;
ALTER TABLE uptime_probes ADD PRIMARY KEY (app_id, location);
ALTER TABLE uptime_incidents ADD COLUMN location text NOT NULL DEFAULT '';
DROP INDEX uptime_incidents_open;
CREATE UNIQUE INDEX uptime_incidents_open ON uptime_incidents (app_id, source, location) WHERE ended_at IS NULL;
