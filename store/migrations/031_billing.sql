-- Billing (billing/, core/billing/): plans per org over time, the usage ledger, invoices, credits,
-- spend caps and the Stripe link. Amounts are whole cents (USD).

-- The plan catalogue set by a platform admin (billing:catalogue), replacing the built-in defaults
-- (core/billing DEFAULT_CATALOGUE); at most one row.
CREATE TABLE billing_catalogue (
  id         boolean PRIMARY KEY DEFAULT true CHECK (id),
  catalogue  jsonb NOT NULL,
  updated_by bigint REFERENCES users(id) ON DELETE SET NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Each org's plan history, append-only: the plan in force at a moment is the row with the latest
-- starts_at at or before it. An org without rows is on the catalogue's free plan since it was created.
-- `custom_plan` holds an Enterprise org's terms (core/billing Plan).
CREATE TABLE subscriptions (
  id          bigserial PRIMARY KEY,
  org_id      bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  plan        text NOT NULL,
  custom_plan jsonb,
  starts_at   timestamptz NOT NULL,
  created_by  bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_org ON subscriptions (org_id, starts_at, id);

-- The usage ledger, append-only. `key` makes each entry idempotent: recording the same usage twice
-- (a retried save, a job run again after a restart) adds it once. quantity is in the ledger unit of
-- its meter: build_seconds, bandwidth_bytes, storage_byte_hours, domain_days. `app` keeps the app's
-- name (an app may be destroyed and its name reused; its usage still belongs to its org).
CREATE TABLE usage_records (
  id          bigserial PRIMARY KEY,
  key         text NOT NULL UNIQUE,
  org_id      bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  app_id      bigint,
  app         text,
  meter       text NOT NULL CHECK (meter IN ('build_seconds', 'bandwidth_bytes', 'storage_byte_hours', 'domain_days')),
  quantity    bigint NOT NULL CHECK (quantity >= 0),
  at          timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_records_org_at ON usage_records (org_id, at);
CREATE INDEX usage_records_org_meter_at ON usage_records (org_id, meter, at);

-- Per org: the spend cap, what has been said about it this period, and the Stripe link.
CREATE TABLE billing_accounts (
  org_id                 bigint PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
  spend_cap_cents        bigint CHECK (spend_cap_cents IS NULL OR spend_cap_cents >= 0),
  -- e.g. {"2027-01": [80, 100]}: the thresholds already notified in each period.
  cap_notices            jsonb NOT NULL DEFAULT '{}',
  stripe_customer_id     text UNIQUE,
  stripe_subscription_id text,
  stripe_status          text,
  stripe_status_at       timestamptz,
  updated_at             timestamptz NOT NULL DEFAULT now()
);

-- Credits granted to an org, taken by the next invoices until used up.
CREATE TABLE billing_credits (
  id          bigserial PRIMARY KEY,
  org_id      bigint NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  cents       bigint NOT NULL CHECK (cents > 0),
  reason      text NOT NULL,
  created_by  bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Invoices, one per org and monthly period. Numbers are sequential across deck (DECK-2027-000042).
-- draft → open → paid | void | uncollectible. `lines` holds the rated lines (core/billing RatedInvoice)
-- as they were when the invoice opened; an invoice outlives its org (org_id set NULL, org_slug kept).
CREATE SEQUENCE invoice_number_seq;
CREATE TABLE invoices (
  id                bigserial PRIMARY KEY,
  number            text NOT NULL UNIQUE,
  org_id            bigint REFERENCES organizations(id) ON DELETE SET NULL,
  org_slug          text NOT NULL,
  org_name          text NOT NULL,
  period_start      timestamptz NOT NULL,
  period_end        timestamptz NOT NULL,
  status            text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
  currency          text NOT NULL DEFAULT 'usd',
  subtotal_cents    bigint NOT NULL,
  credit_cents      bigint NOT NULL DEFAULT 0,
  total_cents       bigint NOT NULL,
  rated             jsonb NOT NULL,
  stripe_invoice_id text UNIQUE,
  hosted_url        text,
  status_at         timestamptz NOT NULL DEFAULT now(),
  opened_at         timestamptz,
  paid_at           timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  CHECK (period_end > period_start)
);
CREATE UNIQUE INDEX invoices_org_period ON invoices (org_id, period_start) WHERE status <> 'void';
CREATE INDEX invoices_status ON invoices (status, period_end);

-- Credits an invoice took (so a credit is never used twice).
CREATE TABLE invoice_credits (
  invoice_id bigint NOT NULL REFERENCES invoices(id) ON DELETE CASCADE,
  credit_id  bigint NOT NULL REFERENCES billing_credits(id) ON DELETE CASCADE,
  cents      bigint NOT NULL CHECK (cents > 0),
  PRIMARY KEY (invoice_id, credit_id)
);

-- Stripe webhook events already handled (their ids), so a delivery repeated by Stripe changes nothing.
CREATE TABLE stripe_events (
  id          text PRIMARY KEY,
  type        text NOT NULL,
  created     timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
