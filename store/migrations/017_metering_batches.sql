-- Bandwidth is saved in batches the router names; a batch saved twice (its answer was lost, the
-- router handed it out again) is added once. Ids are kept 30 days.
CREATE TABLE metering_batches (
  id text PRIMARY KEY,
  saved_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX metering_batches_saved_at ON metering_batches (saved_at);

-- Usage outlives its app: a destroyed app's traffic is still billed to its organization.
ALTER TABLE bandwidth_usage ADD COLUMN app_name text;
ALTER TABLE bandwidth_usage ADD COLUMN org_id bigint;
UPDATE bandwidth_usage b SET app_name = a.name, org_id = a.org_id FROM apps a WHERE a.id = b.app_id;
ALTER TABLE bandwidth_usage ALTER COLUMN app_name SET NOT NULL;
ALTER TABLE bandwidth_usage ALTER COLUMN org_id SET NOT NULL;
ALTER TABLE bandwidth_usage DROP CONSTRAINT bandwidth_usage_pkey;
ALTER TABLE bandwidth_usage ALTER COLUMN app_id DROP NOT NULL;
ALTER TABLE bandwidth_usage ADD CONSTRAINT bandwidth_usage_app_hour UNIQUE (app_id, hour);
ALTER TABLE bandwidth_usage DROP CONSTRAINT bandwidth_usage_app_id_fkey;
ALTER TABLE bandwidth_usage ADD CONSTRAINT bandwidth_usage_app_id_fkey FOREIGN KEY (app_id) REFERENCES apps(id) ON DELETE SET NULL;
CREATE INDEX bandwidth_usage_org_hour ON bandwidth_usage (org_id, hour);
