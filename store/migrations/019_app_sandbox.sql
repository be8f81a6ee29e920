-- Each app's own unprivileged uid (its gid is the same number): builds, release commands and
-- processes of the app run under it. Stored, so a later change of DECK_SANDBOX_UID_BASE does not move
-- existing apps; apps that exist before this migration get the default base (200000) + their id.
ALTER TABLE apps ADD COLUMN sandbox_uid bigint UNIQUE CHECK (sandbox_uid BETWEEN 1000 AND 4294967294);
UPDATE apps SET sandbox_uid = 200000 + id;
ALTER TABLE apps ALTER COLUMN sandbox_uid SET NOT NULL;
