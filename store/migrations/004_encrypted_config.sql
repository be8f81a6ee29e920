-- Config var values are encrypted at rest. `environments.variables` and `releases.config` stay jsonb maps
-- of KEY -> value, with the keys in clear (so they can be listed) and each value a sealed string
-- (AES-256-GCM, see store/secret-box.ts).
--
-- SQL cannot encrypt, so rows written before this migration keep their plaintext and are marked
-- 'plain'; getConfigVars/saveConfigVars seal an app's environment and all its releases the first time
-- its config is read or written. New rows default to 'sealed': a writer that skipped encryption then
-- fails loudly on read instead of leaving a secret in clear. (Sealing replaces the row; the old tuple
-- stays on disk until VACUUM reclaims it.)
ALTER TABLE environments
  ADD COLUMN variables_format text NOT NULL DEFAULT 'plain' CHECK (variables_format IN ('plain', 'sealed'));
ALTER TABLE environments ALTER COLUMN variables_format SET DEFAULT 'sealed';

ALTER TABLE releases
  ADD COLUMN config_format text NOT NULL DEFAULT 'plain' CHECK (config_format IN ('plain', 'sealed'));
ALTER TABLE releases ALTER COLUMN config_format SET DEFAULT 'sealed';
-- An empty map has nothing to seal.
UPDATE releases SET config_format = 'sealed' WHERE config = '{}'::jsonb;
