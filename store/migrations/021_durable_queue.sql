-- The line of work per app (pushes, config changes, scaling, restarts, ps:stop …), kept in the
-- database so that every deck server on it shares one line and a restart forgets nothing about it.
-- An entry runs when it is the oldest live entry of its app; it is deleted when its work is over.
-- `holder` is the deck server waiting on or running the entry; it refreshes `heartbeat_at`, and an
-- entry whose holder stopped refreshing is dropped by the next server that looks.
CREATE TABLE app_queue (
  id            bigserial PRIMARY KEY,
  app_id        bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  kind          text NOT NULL,
  holder        text NOT NULL,
  deployment_id bigint REFERENCES deployments(id) ON DELETE SET NULL,
  running       boolean NOT NULL DEFAULT false,
  enqueued_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX app_queue_app ON app_queue (app_id, id);
CREATE INDEX app_queue_holder ON app_queue (holder);

-- A deployment moves through explicit states (deploy/deploy-state.ts holds the diagram).
ALTER TABLE deployments DROP CONSTRAINT IF EXISTS deployments_status_check;
UPDATE deployments SET status = 'interrupted', finished_at = coalesce(finished_at, now())
 WHERE status IN ('queued', 'building', 'deploying');
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check CHECK (status IN (
  'queued', 'building', 'releasing', 'starting', 'checking', 'switching', 'draining',
  'succeeded', 'failed', 'cancelled', 'interrupted'));
-- The typed failure (a DeckError code such as build_failed or health_check_failed) beside the message.
ALTER TABLE deployments ADD COLUMN error_code text;
ALTER TABLE deployments ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- The push deployment that made a build (older builds are matched to theirs by app, commit and time).
ALTER TABLE builds ADD COLUMN deployment_id bigint REFERENCES deployments(id) ON DELETE SET NULL;

-- Builds waiting for and holding one of the DECK_BUILD_CONCURRENCY slots, across every deck server on
-- the database; like app_queue, an entry whose holder stopped refreshing it is dropped.
CREATE TABLE build_queue (
  id            bigserial PRIMARY KEY,
  deployment_id bigint REFERENCES deployments(id) ON DELETE CASCADE,
  holder        text NOT NULL,
  running       boolean NOT NULL DEFAULT false,
  enqueued_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

-- What a push that waits in line needs to be deployed after a restart: the branch it updates and the
-- value it updates it from (its commit is kept under refs/deck/queued/ID in the app's repository).
ALTER TABLE deployments ADD COLUMN request jsonb;
