/**
 * Following an app's log from a saved position, as a log drain does when deck starts again: it goes on
 * right after the saved line, also when the retention job cut the file's start meanwhile (collapse-range
 * on this machine's filesystem), and reads a replaced file, or a file whose saved line was cut away,
 * from its start.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { appendFileSync, renameSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { followLog, type LogPosition } from "./app-log.ts";

/** Line n of a log, 128 bytes with its newline: a filesystem block holds a whole number of them. */
const line = (tag: string, n: number) => {
  const head = `2026-03-01T10:00:00.000Z app[web.1]: ${tag} ${n} `;
  return head + "x".repeat(127 - head.length);
};
const write = (file: string, tag: string, from: number, to: number) => {
  appendFileSync(file, Array.from({ length: to - from }, (_, i) => `${line(tag, from + i)}\n`).join(""));
};
const range = (tag: string, from: number, to: number) => Array.from({ length: to - from }, (_, i) => line(tag, from + i));

/** Follows `file` until `count` lines arrived: `ready` with the place it started at, `done` with the lines and the position after each. */
function followFor(file: string, count: number, from?: LogPosition) {
  const lines: string[] = [];
  const positions: LogPosition[] = [];
  const stop = new AbortController();
  let started: (p: LogPosition) => void = () => {};
  const ready = new Promise<LogPosition>((resolve) => (started = resolve));
  const following = followLog(file, (l, p) => {
    lines.push(l);
    positions.push(p);
    if (lines.length >= count) stop.abort();
  }, stop.signal, { intervalMs: 5, from, onReady: started });
  const timer = setTimeout(() => stop.abort(), 10_000);
  const done = following.then(() => {
    clearTimeout(timer);
    return { lines, positions };
  });
  return { ready, done };
}

describe("following a log from a saved position", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "deck-app-log-"));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it("goes on after the saved line, with or without a trim of the file's start meanwhile", async () => {
    const file = join(dir, "web.log");
    write(file, "old", 0, 10);
    const first = followFor(file, 100);
    // The follower starts at the end: only lines written after it has its place reach it.
    assert.equal((await first.ready).offset, 10 * 128);
    write(file, "seq", 0, 100);
    const { lines, positions } = await first.done;
    assert.deepEqual(lines, range("seq", 0, 100));
    assert.equal(positions[99]!.offset, statSync(file).size);
    assert.equal(positions[99]!.ino, statSync(file).ino);

    write(file, "seq", 100, 110);
    assert.deepEqual((await followFor(file, 50, positions[59]).done).lines, range("seq", 60, 110));

    // One block cut from the start (the retention job's collapse-range): the old lines and the first seq lines go.
    const blk = statSync(file).blksize;
    execFileSync("fallocate", ["--collapse-range", "--offset", "0", "--length", String(blk), file]);
    assert.equal(statSync(file).size, 120 * 128 - blk);
    write(file, "seq", 110, 115);
    assert.deepEqual((await followFor(file, 55, positions[59]).done).lines, range("seq", 60, 115));
  });

  it("reads a file that was missing, replaced, or cut past the saved line from its start", async () => {
    const file = join(dir, "worker.log");
    const blk = statSync(dir).blksize;
    const total = (2 * blk) / 128 + 6;
    // No file yet: the follower takes it from its start once it appears.
    const first = followFor(file, total);
    await first.ready;
    write(file, "seq", 0, total);
    const { lines, positions } = await first.done;
    assert.deepEqual(lines, range("seq", 0, total));

    // Two blocks cut: the saved line (seq 5) is gone, so all that is left is new to the follower.
    execFileSync("fallocate", ["--collapse-range", "--offset", "0", "--length", String(2 * blk), file]);
    assert.deepEqual((await followFor(file, 6, positions[5]).done).lines, range("seq", total - 6, total));

    // The supervisor moved the log aside: the new file is read from its start.
    renameSync(file, `${file}.1`);
    write(file, "new", 0, 3);
    assert.deepEqual((await followFor(file, 3, positions[total - 1]).done).lines, range("new", 0, 3));
  });
});
