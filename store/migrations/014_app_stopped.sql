-- ps:stop: the app's processes stay stopped (across deck restarts) and the router shows the
-- maintenance page, until ps:start or a release going live starts them again.
ALTER TABLE apps ADD COLUMN stopped boolean NOT NULL DEFAULT false;
