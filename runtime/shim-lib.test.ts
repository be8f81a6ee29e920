import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatLogLine, LineSplitter, restartDelayMs } from "./shim-lib.mjs";

describe("restartDelayMs", () => {
  it("doubles from 1 s and stops at 30 s", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 50].map(restartDelayMs), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });
});

describe("formatLogLine", () => {
  it("prefixes a line with the time, source and process name", () => {
    assert.equal(formatLogLine("app", "web.1", "hello", new Date("2026-11-25T17:00:00.123Z")), "2026-11-25T17:00:00.123Z app[web.1]: hello\n");
  });
});

describe("LineSplitter", () => {
  it("joins lines split across chunks and keeps the partial last line until flushed", () => {
    const s = new LineSplitter();
    assert.deepEqual(s.push("one\ntw"), ["one"]);
    assert.deepEqual(s.push("o\r\nthree"), ["two"]);
    assert.deepEqual(s.flush(), ["three"]);
    assert.deepEqual(s.flush(), []);
  });

  it("cuts a line that never ends so memory stays bounded", () => {
    const s = new LineSplitter();
    const lines = s.push("x".repeat(200 * 1024));
    assert.ok(lines.length >= 2);
    assert.ok(lines.every((l) => l.length <= 64 * 1024));
    assert.equal(lines.join("").length + s.flush().join("").length, 200 * 1024);
  });
});
