-- The platform's own certificate for `*.DECK_DOMAIN` (certs:default:add) belongs to no app.
ALTER TABLE certificates ALTER COLUMN app_id DROP NOT NULL;
