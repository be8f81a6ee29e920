import { defineErrors } from "../core/index.ts";

/** Codes raised by the database layer: PostgreSQL (embedded or external), migrations, sealed secrets. */
export const STORE_ERRORS = defineErrors({
  database_unreachable: { status: 503, expose: false, hint: "PostgreSQL does not answer: check that it runs and that DATABASE_URL points at it" },
  embedded_cluster_missing: { status: 500, expose: false, hint: "restore the embedded database's directory, or remove its state file to start with an empty database" },
  embedded_init_failed: { status: 500, expose: false, hint: "creating the embedded PostgreSQL failed: check free disk space and the data dir's permissions, then start deck again" },
  embedded_postgres_missing: { status: 500, expose: false, hint: "there is no embedded PostgreSQL for this platform: set DATABASE_URL to use an external server" },
  embedded_start_failed: { status: 500, expose: false, hint: "read the embedded PostgreSQL log named in the deck server log, fix what it reports and start deck again" },
  embedded_start_locked: { status: 503, expose: false, hint: "another deck process is starting the embedded database: wait for it, or stop it" },
  embedded_state_invalid: { status: 500, expose: false, hint: "restore the embedded database's state file, or remove it together with the embedded database" },
  embedded_state_missing: { status: 500, expose: false, hint: "restore the embedded database's state file (it holds the database password)" },
  migration_failed: { status: 500, expose: false, hint: "the failed migration was rolled back: fix what the deck server log reports and start deck again" },
  postgres_user_failed: { status: 500, expose: false, hint: "PostgreSQL refuses to run as root: create the OS user postgres, run deck as another user, or set DATABASE_URL" },
  sandbox_uids_exhausted: { status: 503, expose: true, hint: "deck has used every uid of its sandbox range (DECK_SANDBOX_UID_BASE); a platform admin must act before more apps can be created" },
  schema_too_new: { status: 500, expose: false, hint: "the database was migrated by a newer deck: upgrade deck before using this database" },
  secret_corrupt: { status: 500, expose: false, hint: "a stored config value cannot be decrypted: a platform admin restores the database from a backup or sets the value again" },
  secret_key_mismatch: { status: 500, expose: false, hint: "config values were sealed with another master key: set DECK_MASTER_KEY (or restore keys/master.key) to that key" },
});

declare module "../core/errors.ts" {
  interface ErrorCodes extends Record<keyof typeof STORE_ERRORS, true> {}
}
