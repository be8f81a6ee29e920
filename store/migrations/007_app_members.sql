-- A role granted to a user on one app, on top of (or instead of) their organisation role.
CREATE TABLE app_members (
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role        text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  granted_by  bigint REFERENCES users(id) ON DELETE SET NULL,
  granted_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (app_id, user_id)
);
