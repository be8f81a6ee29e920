-- The size of the app's git repository measured once the push that made the build had finished, so
-- builds:list shows how a repository grows next to the size of each build's artifact.
ALTER TABLE builds ADD COLUMN repo_size_bytes bigint;
