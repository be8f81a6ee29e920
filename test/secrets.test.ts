import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { databaseBackends, type DbBackend } from "./helpers/database.ts";
import { Deck, makeRepo, ROOT, run } from "./helpers/deck.ts";

/**
 * A config var's value is a secret: after `config:set` the app sees it, but it is not in the database
 * files (embedded cluster on disk, after a checkpoint), not in any table's text, not in any log, and not
 * in the answer of a command that fails.
 */

const backends = await databaseBackends();

/** A web app that answers with the length and SHA-256 of SECRET_TOKEN, never the value itself. */
const secretApp: Record<string, string> = {
  "package.json": JSON.stringify({ name: "secret-app", version: "1.0.0", private: true, scripts: { start: "node server.js" } }),
  "server.js": `const http = require("http");
const crypto = require("crypto");
const v = process.env.SECRET_TOKEN || "";
http.createServer((req, res) => res.end("len=" + v.length + " sha256=" + crypto.createHash("sha256").update(v).digest("hex") + "\\n"))
  .listen(process.env.PORT, () => console.log("secret app listening on " + process.env.PORT));
`,
  Procfile: "web: node server.js\n",
};

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/** Every file under `dir` whose bytes contain `needle`, skipping files that vanish while we walk. */
function filesContaining(dir: string, needle: string, skip: (path: string) => boolean = () => false): string[] {
  const found: string[] = [];
  const want = Buffer.from(needle);
  const walk = (d: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
      throw e;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !skip(p)) {
        try {
          if (readFileSync(p).includes(want)) found.push(p);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        }
      }
    }
  };
  walk(dir);
  return found;
}

function embeddedState(dataDir: string): { clusterDir: string; port: number; password: string } {
  return JSON.parse(readFileSync(join(dataDir, "postgres", "state.json"), "utf8"));
}

async function withClient<T>(url: string, work: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** deck's database as a superuser sees it (the embedded cluster's own superuser, or the test's URL). */
function databaseUrl(deck: Deck, backend: DbBackend): string {
  if (backend.name === "external") return backend.url;
  const s = embeddedState(deck.dataDir);
  return `postgres://postgres:${encodeURIComponent(s.password)}@127.0.0.1:${s.port}/deck`;
}

/** Each row of every table in deck's schema, as text, with the table it came from. */
async function allRowsAsText(client: pg.Client): Promise<{ table: string; text: string }[]> {
  const tables = (await client.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'")).rows.map((r) => r.t);
  const out: { table: string; text: string }[] = [];
  for (const table of tables) {
    const rows = (await client.query<{ text: string }>(`SELECT t::text AS text FROM ${client.escapeIdentifier(table)} t`)).rows;
    for (const r of rows) out.push({ table, text: r.text });
  }
  return out;
}

for (const backend of backends) {
  describe(`config var values stay secret (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let work: string;
    const value = randomBytes(16).toString("hex");
    const answers: string[] = [];
    const ssh = async (command: string) => {
      const r = await deck.ssh(command);
      answers.push(r.stdout, r.stderr);
      return r;
    };

    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-secrets-"));
      deck = await Deck.start({ backend });
    });
    after(async () => {
      await deck?.stop();
      await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    it("gives the app the value set with config:set, after an unset and rollback, and after a restart", async () => {
      const push = await deck.push(await makeRepo(join(work, "vault"), secretApp), "vault");
      answers.push(push.stderr);
      assert.equal(push.code, 0, push.stderr);
      assert.equal((await deck.get("vault")).body, `len=0 sha256=${sha256("")}\n`);

      const set = await ssh(`config:set vault SECRET_TOKEN=${value}`);
      assert.equal(set.code, 0, set.stderr);
      assert.equal((await deck.get("vault")).body, `len=32 sha256=${sha256(value)}\n`);

      // The rollback target's config comes back from its release row, so this exercises that path too.
      const releases = JSON.parse((await ssh("releases vault --json")).stdout) as { version: number; status: string }[];
      const withSecret = releases.find((r) => r.status === "live")!.version;
      assert.equal((await ssh("config:unset vault SECRET_TOKEN")).code, 0);
      assert.equal((await deck.get("vault")).body, `len=0 sha256=${sha256("")}\n`);
      const rb = await ssh(`rollback vault v${withSecret}`);
      assert.equal(rb.code, 0, rb.stderr);
      assert.equal((await deck.get("vault")).body, `len=32 sha256=${sha256(value)}\n`);

      // A restarted server opens what the previous one sealed (same key file): the next release
      // is built from the stored config vars.
      await deck.kill9();
      await deck.startServer();
      assert.equal((await ssh("config:set vault OTHER=1")).code, 0);
      assert.equal((await deck.get("vault")).body, `len=32 sha256=${sha256(value)}\n`);
    });

    it("leaves the value out of the answers of failing commands", async () => {
      const attempts = [
        `config:set vault BAD-KEY=${value}`,
        `config:set vault 9LIVES=${value}`,
        `config:set vault PORT=${value}`,
        `config:set no-such-app SECRET_TOKEN=${value}`,
        `config:set vault SECRET_TOKEN=${value} ALSO-BAD=${value}`,
      ];
      for (const command of attempts) {
        const r = await ssh(command);
        assert.notEqual(r.code, 0, `${command} should fail`);
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
        assert.ok(!(r.stdout + r.stderr).includes(value), `${command} answered with the value: ${r.stderr}`);
      }
      for (const [i, a] of answers.entries()) {
        assert.ok(!a.includes(value), `answer ${i} contains the value: ${a}`);
      }
    });

    it("keeps the value out of every table of deck's database", async () => {
      await withClient(databaseUrl(deck, backend), async (client) => {
        const rows = await allRowsAsText(client);
        const hits = rows.filter((r) => r.text.includes(value)).map((r) => `${r.table}: ${r.text.slice(0, 200)}`);
        assert.deepEqual(hits, [], "rows holding the value in clear");
        // The rows that hold it sealed exist, so the check above looked at the right place.
        assert.ok(rows.some((r) => r.table === "environments" && /SECRET_TOKEN\W+v1:/.test(r.text)), "environments row with the sealed value");
        assert.ok(rows.filter((r) => r.table === "releases" && /SECRET_TOKEN\W+v1:/.test(r.text)).length >= 2, "release rows with the sealed value");
        assert.ok(rows.some((r) => r.table === "build_logs"), "build logs were written");
      });
    });

    it("keeps the value out of the database files on disk, the logs and everything else deck wrote", async (t) => {
      if (backend.name === "embedded") {
        const { clusterDir } = embeddedState(deck.dataDir);
        // Flushes every dirty page, so the heap files hold what the tables hold (the WAL already does).
        await withClient(databaseUrl(deck, backend), (c) => c.query("CHECKPOINT"));
        assert.ok(statSync(join(clusterDir, "pg_wal")).isDirectory(), `${clusterDir} is a PostgreSQL cluster`);
        assert.deepEqual(filesContaining(clusterDir, value), [], "cluster files holding the value in clear");
        // Positive control: a value written in clear is found by the same scan.
        const marker = randomBytes(16).toString("hex");
        await withClient(databaseUrl(deck, backend), async (c) => {
          await c.query("CREATE TABLE scan_control (v text)");
          await c.query("INSERT INTO scan_control VALUES ($1)", [marker]);
          await c.query("CHECKPOINT");
        });
        assert.notDeepEqual(filesContaining(clusterDir, marker), [], "the scan finds a value stored in clear");
      } else {
        t.diagnostic("external PostgreSQL: its files are not ours to read; the table check covers it");
      }
      // The app log, the deck server log, the embedded PostgreSQL log, build caches and slugs: nothing
      // under the test's directory holds the value, except the supervisor's spec of the running process,
      // which is that process's environment.
      const procSpec = (p: string) => p.startsWith(join(deck.dataDir, "run", "procs")) && p.endsWith(".spec.json");
      assert.deepEqual(filesContaining(deck.dir, value, procSpec), [], "files holding the value in clear");
      assert.match(readFileSync(join(deck.dataDir, "logs", "vault.log"), "utf8"), /secret app listening on/, "the app log was written");
      assert.match(deck.log(), /deck is running/, "the server log was written");
    });

    it("refuses to start with a malformed DECK_MASTER_KEY, in one line naming the variable", async () => {
      const bad = `${value}-not-base64!`;
      const r = await run(join(ROOT, "bin", "deck"), ["server"], { cwd: work, env: { ...deck.env(), DECK_DATA_DIR: join(work, "other-data"), DECK_MASTER_KEY: bad }, timeoutMs: 30_000 });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, "deck: DECK_MASTER_KEY (master_key in deck.yaml) is not the base64 encoding of 32 bytes; create one with: openssl rand -base64 32\n");
      assert.ok(!r.stdout.includes(value));
    });
  });
}
