-- Builder nodes (`deck server --role builder`) take builds from build_queue as well as the deck servers.
-- An entry now carries the job: what to build, where the deck server that took the push can be
-- reached (`origin_url`) and a secret only the two of them hold for its exchanges (source, output,
-- artifact). `builder` names the builder node running it; null while it waits or when the deck
-- server that took the push builds it itself.
ALTER TABLE build_queue ADD COLUMN job jsonb;
ALTER TABLE build_queue ADD COLUMN origin_url text;
ALTER TABLE build_queue ADD COLUMN secret text;
ALTER TABLE build_queue ADD COLUMN builder text;
-- Set by the deck server that took the push when it is cancelled (builds:cancel, the pusher gone);
-- the builder node running it stops the build.
ALTER TABLE build_queue ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

-- Every running builder node, refreshed every 2 seconds; a node silent for 15 seconds is taken for
-- stopped, and the builds it ran fail with a message that says so.
CREATE TABLE builder_nodes (
  name       text PRIMARY KEY,
  capacity   integer NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  last_seen  timestamptz NOT NULL DEFAULT now()
);
