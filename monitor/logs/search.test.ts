/**
 * Searching real log files: an app's log with lines of several processes, deck's build and deploy
 * lines, and a router access log shared with other apps (one whose name starts with the same letters).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseSince, parseSources, type LogFilter, type LogSource } from "./log-line.ts";
import { followLogs, searchLogs, type LogFiles } from "./search.ts";
import { accessLine, appendLines, appLine, waitFor } from "./test-support.ts";

const NOW = Date.now();
const ago = (minutes: number) => NOW - minutes * 60_000;
const filter = (f: Partial<LogFilter> = {}): LogFilter => ({ sources: new Set<LogSource>(["app", "deck"]), ...f });

describe("log search on real files", () => {
  let dir: string;
  let files: LogFiles;
  let appLines: string[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "deck-logsearch-"));
    files = { app: "shop", appLog: join(dir, "shop.log"), accessLog: join(dir, "access.log") };
    appLines = [
      appLine(ago(180), "deck", "build", "-----> Node.js app detected"),
      appLine(ago(179), "deck", "deploy", "v1 is live (web=2)"),
      appLine(ago(178), "app", "web.1", "listening on 5001"),
      appLine(ago(178), "app", "web.2", "listening on 5002"),
      appLine(ago(120), "app", "web.1", "GET /cart took 12ms"),
      appLine(ago(90), "app", "worker.1", "charged order 41 (a.b(c)*)"),
      appLine(ago(45), "app", "web.2", "ERROR: payment gateway timed out"),
      appLine(ago(30), "deck", "web.1", "exited with code 1; restarting in 1 s"),
      appLine(ago(29), "app", "web.1", "listening on 5001"),
      appLine(ago(10), "app", "web.10", "Error: cart is empty"),
      appLine(ago(5), "app", "worker.1", "charged order 42"),
    ];
    appendLines(files.appLog, appLines);
    appendLines(files.accessLog, [
      accessLine(ago(100), "shop", "GET", "/cart", 200, 12.25),
      accessLine(ago(95), "shopper", "GET", "/secret-of-shopper", 200, 3),
      accessLine(ago(40), "other", "POST", "/other", 500, 8),
      accessLine(ago(20), "shop", "POST", "/checkout\u001b[31m", 502, 1503.4, "198.51.100.9"),
      accessLine(ago(15), null, "GET", "/", 404, 0.2),
    ]);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const texts = async (f: LogFilter, limit = 100) => (await searchLogs(files, { filter: f, limit })).entries.map((e) => e.line);

  it("finds a fixed text in any case, never as a pattern", async () => {
    assert.deepEqual(await texts(filter({ grep: "error" })), [appLines[6], appLines[9]]);
    assert.deepEqual(await texts(filter({ grep: "A.B(C)*" })), [appLines[5]]);
    assert.deepEqual(await texts(filter({ grep: ".*" })), []);
  });

  it("keeps one process, or every process of a type", async () => {
    assert.deepEqual(await texts(filter({ process: "web.1" })), [appLines[2], appLines[4], appLines[7], appLines[8]]);
    assert.deepEqual(await texts(filter({ process: "web" })), [appLines[2], appLines[3], appLines[4], appLines[6], appLines[7], appLines[8], appLines[9]]);
    assert.deepEqual(await texts(filter({ process: "build" })), [appLines[0]]);
  });

  it("keeps lines since a time, and by source", async () => {
    const since = parseSince("1h", NOW);
    assert.ok(since.ok);
    assert.deepEqual(await texts(filter({ sinceMs: since.value })), appLines.slice(6));
    assert.deepEqual(await texts(filter({ sources: new Set(["deck"]) })), [appLines[0], appLines[1], appLines[7]]);
    assert.deepEqual(await texts(filter({ sources: new Set(["app"]), sinceMs: ago(31) })), [appLines[8], appLines[9], appLines[10]]);
  });

  it("shows the app's own router lines, one readable line each, and never another app's", async () => {
    const router = await searchLogs(files, { filter: filter({ sources: new Set(["router"]) }), limit: 100 });
    assert.deepEqual(router.entries.map((e) => e.line), [
      `${new Date(ago(100)).toISOString()} router: GET /cart 200 12.3ms 203.0.113.7`,
      `${new Date(ago(20)).toISOString()} router: POST /checkout\\x1b[31m 502 1503ms 198.51.100.9`,
    ]);
    assert.equal(router.entries[1]!.request?.status, 502);
    for (const app of ["shopper", "other"]) {
      const theirs = await searchLogs({ ...files, app }, { filter: filter({ sources: new Set(["router"]) }), limit: 100 });
      assert.ok(theirs.entries.every((e) => e.request && !e.line.includes("/cart") && !e.line.includes("/checkout")), app);
      assert.equal(theirs.entries.length, 1, app);
    }
    const all = parseSources("all");
    assert.ok(all.ok);
    const merged = await texts(filter({ sources: all.value, sinceMs: ago(25) }));
    assert.deepEqual(merged, [`${new Date(ago(20)).toISOString()} router: POST /checkout\\x1b[31m 502 1503ms 198.51.100.9`, appLines[9], appLines[10]]);
    assert.deepEqual(await texts(filter({ sources: all.value, grep: "/secret" })), []);
  });

  it("answers the newest N matches", async () => {
    assert.deepEqual(await texts(filter({ process: "web" }), 2), [appLines[8], appLines[9]]);
  });

  it("reads at most the end of a big file, and says when older lines were not searched", async () => {
    const big = join(dir, "big.log");
    const old = appLine(ago(600), "app", "web.1", "needle from long ago");
    appendLines(big, [old, ...Array.from({ length: 20_000 }, (_, i) => appLine(ago(500) + i, "app", "web.1", `filler line ${i} ${"x".repeat(60)}`))]);
    const bigFiles = { ...files, appLog: big };
    const capped = await searchLogs(bigFiles, { filter: filter({ grep: "needle" }), limit: 10, maxScanBytes: 256 * 1024 });
    assert.deepEqual(capped.entries, []);
    assert.match(capped.unsearched ?? "", /^older lines were not searched: only the last 256 KiB of the app's log were read/);
    const whole = await searchLogs(bigFiles, { filter: filter({ grep: "needle" }), limit: 10, maxScanBytes: 16 * 1024 * 1024 });
    assert.deepEqual([whole.entries.map((e) => e.line), whole.unsearched], [[old], null]);
    // Enough matches near the end: nothing older could be among the newest N.
    const enough = await searchLogs(bigFiles, { filter: filter({ grep: "filler" }), limit: 3, maxScanBytes: 64 * 1024 });
    assert.deepEqual([enough.entries.map((e) => e.text.split(" ")[2]), enough.unsearched], [["19997", "19998", "19999"], null]);
  });

  it("follows new lines with the same filters", async () => {
    const stop = new AbortController();
    const seen: string[] = [];
    const all = parseSources("all");
    assert.ok(all.ok);
    const following = followLogs(files, filter({ sources: all.value, grep: "pay" }), (e) => void seen.push(e.line), stop.signal, 20);
    // A follower starts at the end of the file: once a line written now reaches it, it has started.
    await waitFor("the follower to start", () => {
      appendLines(files.appLog, [appLine(NOW, "app", "web.1", "pay sync")]);
      return seen.length > 0;
    });
    seen.length = 0;
    const fresh = [appLine(NOW, "app", "web.1", "PAYMENT ok"), appLine(NOW, "app", "web.1", "nothing to see")];
    appendLines(files.appLog, fresh);
    appendLines(files.accessLog, [accessLine(NOW, "shopper", "GET", "/pay", 200, 1), accessLine(NOW, "shop", "GET", "/pay", 200, 1)]);
    await waitFor("both matching lines", () => seen.filter((l) => !l.endsWith("pay sync")).length >= 2);
    stop.abort();
    await following;
    assert.deepEqual(seen.filter((l) => !l.endsWith("pay sync")).sort(), [fresh[0], `${new Date(NOW).toISOString()} router: GET /pay 200 1.0ms 203.0.113.7`].sort());
  });
});
