-- Sign-in: passwords, TOTP multi-factor authentication and recovery codes.

-- argon2id PHC string; NULL for accounts that only sign in through an identity provider.
ALTER TABLE users ADD COLUMN password_hash text;
-- Base32 TOTP secret once enrolment is confirmed, and when.
ALTER TABLE users ADD COLUMN mfa_secret text;
ALTER TABLE users ADD COLUMN mfa_enabled_at timestamptz;
-- An enrolment that has shown its otpauth:// URI but has not yet seen a valid code.
ALTER TABLE users ADD COLUMN mfa_pending_secret text;
ALTER TABLE users ADD COLUMN mfa_pending_at timestamptz;
-- The last TOTP time step accepted: a code from this step or an earlier one is a replay (RFC 6238 §5.2).
ALTER TABLE users ADD COLUMN mfa_last_step bigint;

-- Sign-in matches email without regard to case; emails stay unique as typed (older rows may differ in case only).
CREATE INDEX users_email_lower ON users (lower(email));

-- Recovery codes are shown once and stored as SHA-256 hashes (each code carries 60 random bits).
CREATE TABLE recovery_codes (
  id          bigserial PRIMARY KEY,
  user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  code_hash   text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  used_at     timestamptz,
  UNIQUE (user_id, code_hash)
);

-- Personal access tokens are listed per user.
CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at);

-- Failed sign-ins are audited; reviewing them by account or address over a period reads these.
CREATE INDEX audit_log_action_time ON audit_log (action, created_at);
CREATE INDEX audit_log_source_ip_time ON audit_log (source_ip, created_at) WHERE source_ip IS NOT NULL;
