-- A platform admin can suspend a user: they can no longer sign in, use tokens, push or run SSH
-- commands, while their apps keep running (unless the admin stops them). Unsuspending clears these.
ALTER TABLE users ADD COLUMN suspended_at timestamptz;
ALTER TABLE users ADD COLUMN suspended_by bigint REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE users ADD COLUMN suspend_reason text;

-- Deleting a user keeps what they created (apps, releases, deployments): the row stays, its author
-- becomes unknown, as it already does for every later table.
ALTER TABLE apps DROP CONSTRAINT IF EXISTS apps_created_by_fkey,
  ADD CONSTRAINT apps_created_by_fkey FOREIGN KEY (created_by) REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE releases DROP CONSTRAINT IF EXISTS releases_created_by_fkey,
  ADD CONSTRAINT releases_created_by_fkey FOREIGN KEY (created_by) REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE deployments DROP CONSTRAINT IF EXISTS deployments_created_by_fkey,
  ADD CONSTRAINT deployments_created_by_fkey FOREIGN KEY (created_by) REFERENCES users(id) ON DELETE SET NULL;
