import assert from "node:assert/strict";
import { test } from "node:test";
import { restartDelayMs } from "./supervisor.ts";

test("a dying worker is replaced at once the first three times in a row, then after a growing delay", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 9, 10, 40].map(restartDelayMs), [0, 0, 0, 250, 500, 1000, 8000, 10_000, 10_000]);
});
