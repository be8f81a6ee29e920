-- ACME HTTP-01 answers while an order is under way, so every router node can answer the CA's check
-- (the deck server that ordered the certificate may not be the node the domain's DNS points at).
CREATE TABLE acme_challenges (
  token text PRIMARY KEY,
  key_authorization text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
