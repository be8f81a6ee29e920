/** Opens the database of the data dir in argv[2], writes and reads one row, closes, prints the emails. */
import { z } from "zod";
import { openDatabase, sql } from "../index.ts";

const db = await openDatabase({ dataDir: process.argv[2]! });
await db.pool.query(sql.typeAlias("void")`INSERT INTO users (email) VALUES ('user@example.com')`);
const emails = await db.pool.anyFirst(sql.type(z.object({ email: z.string() }))`SELECT email FROM users`);
await db.close();
process.stdout.write(JSON.stringify(emails) + "\n");
