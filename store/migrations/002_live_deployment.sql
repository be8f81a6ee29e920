-- The deployment whose processes serve an app now; its id names the running process generation.
ALTER TABLE apps ADD COLUMN live_deployment_id bigint REFERENCES deployments(id) ON DELETE SET NULL;
