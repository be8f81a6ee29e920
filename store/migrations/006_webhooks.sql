-- Per-app git webhook settings: a GitHub or GitLab push of `branch` in `repo_url` deploys the app.
-- Verifying an HMAC needs the shared secret itself, so the secrets are encrypted (not hashed) by the
-- queries in store/queries/webhooks.ts; the URL is encrypted too, as it may carry an access token.
CREATE TABLE app_webhooks (
  app_id         bigint PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
  repo_url       text NOT NULL,          -- sealed (store/secret-box.ts), like the two secrets
  branch         text NOT NULL DEFAULT 'main',
  github_secret  text,
  gitlab_token   text,
  -- Deploys started by the webhook act as this user (and stop when they lose the right to deploy).
  configured_by  bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
