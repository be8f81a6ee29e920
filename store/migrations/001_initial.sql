-- CloudDeck initial schema. Tables follow the product spec; "projects" are called apps.

CREATE TABLE users (
  id          bigserial PRIMARY KEY,
  email       text NOT NULL UNIQUE,
  name        text,
  avatar      text,
  is_admin    boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organizations (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL,
  slug        text NOT NULL UNIQUE,
  plan        text NOT NULL DEFAULT 'free',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organization_members (
  org_id      bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role        text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  joined_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, user_id)
);

CREATE TABLE ssh_keys (
  id           bigserial PRIMARY KEY,
  user_id      bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name         text NOT NULL,
  public_key   text NOT NULL,
  fingerprint  text NOT NULL UNIQUE,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz
);

CREATE TABLE api_tokens (
  id           bigserial PRIMARY KEY,
  user_id      bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name         text NOT NULL,
  token_hash   text NOT NULL UNIQUE,
  scopes       text[] NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  last_used_at timestamptz,
  revoked_at   timestamptz
);

CREATE TABLE apps (
  id                bigserial PRIMARY KEY,
  name              text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
  org_id            bigint NOT NULL REFERENCES organizations(id),
  repo_url          text,
  framework         text,
  status            text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'deploying', 'running', 'failed', 'stopped')),
  health_check_path text NOT NULL DEFAULT '/',
  formation         jsonb NOT NULL DEFAULT '{"web": 1}',
  created_by        bigint REFERENCES users(id),
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A build turns a commit into a slug (the artifact releases run from).
CREATE TABLE builds (
  id           bigserial PRIMARY KEY,
  app_id       bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  commit_sha   text NOT NULL,
  buildpack    text,
  status       text NOT NULL CHECK (status IN ('building', 'succeeded', 'failed')),
  slug_path    text,
  size_bytes   bigint,
  procfile     jsonb,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  pruned_at    timestamptz
);

-- A release is a slug plus config; rollback and config changes make new releases.
CREATE TABLE releases (
  id           bigserial PRIMARY KEY,
  app_id       bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  version      integer NOT NULL,
  build_id     bigint NOT NULL REFERENCES builds(id),
  config       jsonb NOT NULL DEFAULT '{}',
  commit_sha   text NOT NULL,
  description  text NOT NULL,
  status       text NOT NULL CHECK (status IN ('pending', 'live', 'superseded', 'failed')),
  created_by   bigint REFERENCES users(id),
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (app_id, version)
);

CREATE TABLE deployments (
  id           bigserial PRIMARY KEY,
  app_id       bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  release_id   bigint REFERENCES releases(id),
  commit_sha   text,
  kind         text NOT NULL CHECK (kind IN ('push', 'rollback', 'config', 'scale', 'restart')),
  status       text NOT NULL CHECK (status IN ('queued', 'building', 'deploying', 'succeeded', 'failed')),
  build_time   integer,
  error        text,
  created_by   bigint REFERENCES users(id),
  created_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz
);

CREATE TABLE environments (
  id          bigserial PRIMARY KEY,
  app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  name        text NOT NULL DEFAULT 'production',
  variables   jsonb NOT NULL DEFAULT '{}',
  domains     text[] NOT NULL DEFAULT '{}',
  UNIQUE (app_id, name)
);

CREATE TABLE build_logs (
  id             bigserial PRIMARY KEY,
  deployment_id  bigint NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
  level          text NOT NULL DEFAULT 'info',
  message        text NOT NULL,
  timestamp      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX build_logs_deployment ON build_logs (deployment_id, id);

CREATE TABLE domains (
  id           bigserial PRIMARY KEY,
  app_id       bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  domain       text NOT NULL UNIQUE,
  ssl_status   text NOT NULL DEFAULT 'none',
  verified_at  timestamptz
);

CREATE TABLE audit_log (
  id          bigserial PRIMARY KEY,
  user_id     bigint REFERENCES users(id) ON DELETE SET NULL,
  action      text NOT NULL,
  target      text,
  source_ip   text,
  result      text NOT NULL,
  data        jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now()
);
