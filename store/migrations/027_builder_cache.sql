-- Builder nodes keep each app's build cache under a key that changes with builds:cache:clear (and
-- that a later app of the same name never shares): the app's id and this version.
ALTER TABLE apps ADD COLUMN build_cache_version integer NOT NULL DEFAULT 0;
-- The deck server that took a push, by host name, and whether its exchange URL only answers on that
-- host (a loopback address): a builder node elsewhere must not take the build, since whatever listens
-- on that address on its own machine would get the build's secret.
ALTER TABLE build_queue ADD COLUMN origin_host text;
ALTER TABLE build_queue ADD COLUMN origin_local_only boolean NOT NULL DEFAULT false;
