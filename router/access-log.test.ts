/** The access log's file handling: a full disk loses no line and repeats none; a rotated file is reopened. */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rename, rm, symlink, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { AccessLog, type AccessRecord } from "./access-log.ts";
import { waitFor } from "./test-support.ts";

const record = (path: string): AccessRecord => ({
  requestId: "0f0e2b8a-3f7c-4d2a-9f55-2b1d1f0c9a11", app: "shop", client: "127.0.0.1", method: "GET", host: "shop.example.com", path,
  protocol: "HTTP/1.1", status: 200, bytesIn: 80, bytesOut: 120, durationMs: 1.5, upstream: "127.0.0.1:5001",
});

const paths = async (file: string) => (await readFile(file, "utf8")).trim().split("\n").map((l) => (JSON.parse(l) as { path: string }).path);

test("while the file cannot be written (a full disk), lines wait in memory and are written once it can, none twice", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "deck-access-full-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "access.log");
  // Every write to /dev/full fails with ENOSPC, as on a full disk.
  await symlink("/dev/full", file);
  const lines: string[] = [];
  const log = new AccessLog(file, (l) => lines.push(l));
  log.write(record("/one"));
  log.write(record("/two"));
  log.flush();
  await waitFor(() => lines.length > 0, 5_000, "the failure is reported");
  assert.match(lines[0], /^access log: cannot write .*access\.log: ENOSPC: no space left on device.*keeping lines in memory/);
  log.write(record("/three"));
  // Room again: the next try opens the file again.
  await unlink(file);
  await waitFor(() => lines.length > 1, 5_000, "the recovery is reported");
  assert.match(lines[1], /^access log: writing .*access\.log again$/);
  await log.close();
  assert.deepEqual(await paths(file), ["/one", "/two", "/three"]);
  assert.equal(lines.length, 2, "reported once each way");
});

test("reopen() after a rotation: earlier lines stay in the renamed file, later ones go to a new file under the old name", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "deck-access-rotate-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, "access.log");
  const log = new AccessLog(file);
  log.write(record("/before"));
  log.flush();
  await waitFor(async () => (await readFile(file, "utf8").catch(() => "")).includes("/before"), 5_000, "the first line is written");
  await rename(file, `${file}.1`);
  log.write(record("/rotated"));
  log.reopen();
  log.write(record("/after"));
  await log.close();
  assert.deepEqual(await paths(`${file}.1`), ["/before", "/rotated"]);
  assert.deepEqual(await paths(file), ["/after"]);
});
