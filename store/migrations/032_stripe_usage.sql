-- Stripe (billing/stripe-sync), used only when STRIPE_SECRET_KEY is set: what deck has told Stripe
-- and what Stripe has told deck, beyond the customer and subscription kept in billing_accounts.

-- Per org: the plan change (subscriptions.id; 0 for the Free plan an org starts on) Stripe's
-- subscription was last set to. An org whose plan in force differs from it, or that has no Stripe
-- customer yet, is synced again each billing round: a failed sync is never lost, even across a
-- restart. `usage_from`: the org's usage from this moment on goes to Stripe's meters (when its
-- subscription was first made; usage before it is on no Stripe invoice).
CREATE TABLE stripe_org_sync (
  org_id           bigint PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
  synced_change_id bigint,
  usage_from       timestamptz,
  last_error       text,
  attempted_at     timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- How far reporting usage to Stripe has come. Every ledger entry with id ≤ through_id has been dealt
-- with. Ledger ids are not committed in id order (and ids are skipped), so the cursor only passes ids
-- that were already handed out an hour ago or more: `horizon_id` is the newest ledger id seen at
-- `horizon_at` (billing/stripe-sync/usage-report.ts).
CREATE TABLE stripe_usage_cursor (
  id         boolean PRIMARY KEY DEFAULT true CHECK (id),
  through_id bigint NOT NULL DEFAULT 0,
  horizon_id bigint NOT NULL DEFAULT 0,
  horizon_at timestamptz
);

-- Ledger entries above the cursor already dealt with, so a round that reads them again sends none
-- twice: accepted by Stripe, refused by it (never sent again), or older than Stripe takes (35 days).
-- Rows at or below the cursor are deleted.
CREATE TABLE stripe_usage_sent (
  usage_id bigint PRIMARY KEY,
  outcome  text NOT NULL CHECK (outcome IN ('accepted', 'rejected', 'too_old')),
  sent_at  timestamptz NOT NULL DEFAULT now()
);

-- Stripe's invoices as its webhooks last described them: the status and the `created` time of the
-- event that set it (an older event never overrides a newer one), and the deck invoice it collects
-- (matched by org and period end). A Stripe invoice that arrives before deck closed the period waits
-- here until the billing round links it.
CREATE TABLE stripe_invoices (
  id               text PRIMARY KEY,
  customer_id      text NOT NULL,
  org_id           bigint REFERENCES organizations(id) ON DELETE SET NULL,
  period_start     timestamptz NOT NULL,
  period_end       timestamptz NOT NULL,
  status           text NOT NULL,
  status_at        timestamptz NOT NULL,
  amount_due_cents bigint NOT NULL,
  hosted_url       text,
  deck_invoice_id  bigint REFERENCES invoices(id) ON DELETE SET NULL,
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_invoices_unlinked ON stripe_invoices (org_id, period_end) WHERE deck_invoice_id IS NULL;
