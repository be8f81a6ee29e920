-- HTTPS certificates, one row per host name served. Every router node reads them from here
-- (listServableCertificates), and every change is announced with NOTIFY deck_certs.
--
-- source 'acme': obtained and renewed by deck (status pending -> issued | failed: error).
-- source 'manual': uploaded with certs:add (always 'issued'; never renewed by deck).
-- The private key is sealed like config vars (store/secret-box.ts).
CREATE TABLE certificates (
  domain          text PRIMARY KEY,
  app_id          bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
  source          text NOT NULL CHECK (source IN ('acme', 'manual')),
  status          text NOT NULL CHECK (status IN ('pending', 'issued', 'failed')),
  error           text,
  cert_pem        text,
  key_sealed      text,
  serial          text,
  not_after       timestamptz,
  -- When the last ACME order for this domain started: a failed one is retried only after a pause.
  last_attempt_at timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (status <> 'issued' OR (cert_pem IS NOT NULL AND key_sealed IS NOT NULL AND not_after IS NOT NULL))
);
CREATE INDEX certificates_app ON certificates (app_id);
CREATE INDEX certificates_renewal ON certificates (not_after) WHERE source = 'acme';

-- deck's account with each ACME directory it has used; the account key is sealed.
CREATE TABLE acme_accounts (
  directory_url text PRIMARY KEY,
  key_sealed    text NOT NULL,
  account_url   text,
  created_at    timestamptz NOT NULL DEFAULT now()
);
