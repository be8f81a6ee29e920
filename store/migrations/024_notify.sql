-- Where an organisation's alert notices go: a webhook (Alertmanager's JSON), a Slack-compatible
-- incoming webhook, or an e-mail address. A webhook URL is its own password (Slack's carry the token in
-- the path), so `target` is sealed like config vars (store/secret-box.ts) and users are shown
-- `target_display`, the same target with its secret parts masked.
CREATE TABLE notify_channels (
  id             bigserial PRIMARY KEY,
  org_id         bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  kind           text NOT NULL CHECK (kind IN ('webhook', 'slack', 'email')),
  target         text NOT NULL,          -- sealed
  target_display text NOT NULL,
  created_by     bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notify_channels_org ON notify_channels (org_id, id);

-- One row per notice and channel: the outbox every deck server on the database sends from. A row is
-- taken with FOR UPDATE SKIP LOCKED and held while it is sent by a lease (`lease_until`); a server that
-- dies mid-send leaves a lease that runs out, and the row is due again. A failed send is retried with
-- backoff from `next_attempt_at`; a row still failing a day after it was queued is `dead` and kept,
-- with its last error. The unique key makes a notice queued twice one delivery per channel.
CREATE TABLE notify_outbox (
  id              bigserial PRIMARY KEY,
  channel_id      bigint NOT NULL REFERENCES notify_channels(id) ON DELETE CASCADE,
  notice_key      text NOT NULL,
  payload         jsonb NOT NULL,        -- the Notice (core/monitoring.ts)
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
  -- Sends begun, the current one included.
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  lease_until     timestamptz,
  last_attempt_at timestamptz,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  sent_at         timestamptz,
  UNIQUE (channel_id, notice_key)
);
-- What the senders look for: rows waiting for their turn, and rows whose lease ran out.
CREATE INDEX notify_outbox_due ON notify_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notify_outbox_leased ON notify_outbox (lease_until) WHERE status = 'sending';
