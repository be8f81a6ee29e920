-- Accounts at OAuth2 / OpenID Connect providers (GitHub, GitLab, Google) linked to deck users.
-- (provider, subject) is the provider's stable account id: emails can change at the provider, so they
-- are kept for display and audit only and never used to look an identity up.
CREATE TABLE oauth_identities (
  provider      text NOT NULL CHECK (provider IN ('github', 'gitlab', 'google')),
  subject       text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
  user_id       bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  email         text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user ON oauth_identities (user_id);
