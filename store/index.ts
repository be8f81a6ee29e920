import { createSqlTag, type CommonQueryMethods } from "slonik";
import { z } from "zod";

export { openDatabase, redactUrl, EMBEDDED_DATABASE, type Database, type OpenDatabaseOptions } from "./database.ts";
export { migrate, listMigrations, MIGRATIONS_DIR, type Migration, type MigrateOptions, type MigrateResult } from "./migrate.ts";
export { startEmbeddedServer, destroyEmbeddedServer, type EmbeddedServer, type EmbeddedServerOptions } from "./embedded-server.ts";
export { embeddedDatabaseUrl } from "./embedded-url.ts";
export { listenForNotifications, type NotificationListener, type NotificationListenerOptions } from "./notification-listener.ts";
export { parseTimestamp } from "./type-parsers.ts";
export { SharedEvents, EVENTS_CHANNEL, type SharedEventsOptions } from "./shared-events.ts";
export {
  NotFoundError,
  DataIntegrityError,
  UniqueIntegrityConstraintViolationError,
  ForeignKeyIntegrityConstraintViolationError,
  CheckIntegrityConstraintViolationError,
  NotNullIntegrityConstraintViolationError,
  SchemaValidationError,
  SlonikError,
  type DatabasePool,
  type DatabaseTransactionConnection,
  type CommonQueryMethods,
  type QuerySqlToken,
  type SqlToken,
  type ValueExpression,
} from "slonik";

/**
 * The SQL tag for every query. `sql.type(schema)` checks each row against the zod schema at run time
 * (see type-parsers.ts); `sql.typeAlias("void")` is for statements that return nothing and
 * `sql.typeAlias("id")` for `RETURNING id`.
 */
export const sql = createSqlTag({
  typeAliases: {
    id: z.object({ id: z.number() }),
    void: z.object({}).strict(),
  },
});

/** What a store function takes: the pool, or the connection of a transaction it should join. */
export type Queryable = CommonQueryMethods;
