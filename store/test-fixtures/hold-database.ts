/**
 * Opens the database of the data dir in argv[2], writes one marker row, prints "ready" and waits to be
 * killed: stands in for a deck server that dies with SIGKILL.
 */
import { openDatabase, sql } from "../index.ts";

const db = await openDatabase({ dataDir: process.argv[2]! });
await db.pool.query(sql.typeAlias("void")`INSERT INTO users (email) VALUES (${process.argv[3]!})`);
process.stdout.write("ready\n");
setInterval(() => {}, 60_000);
