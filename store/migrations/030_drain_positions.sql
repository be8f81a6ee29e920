-- Where each drain's delivered lines end in the files it follows, so a restarted deck server goes on
-- from there: keyed by the place a shipper runs for ('HOST:DATA_DIR': each deck server ships its own
-- files), then by file ('app', 'router'), each {"ino", "offset", "anchor"} (deploy/app-log.ts).
-- A drain without a position for a place follows that place's files from their end.
ALTER TABLE log_drains ADD COLUMN positions jsonb NOT NULL DEFAULT '{}';
