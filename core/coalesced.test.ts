import assert from "node:assert/strict";
import { test } from "node:test";
import { coalesced } from "./coalesced.ts";

test("calls while a run is under way make exactly one more run, not one each", async () => {
  let runs = 0;
  let release: () => void = () => {};
  const run = coalesced(async () => {
    runs++;
    if (runs === 1) await new Promise<void>((r) => (release = r));
  });
  const first = run();
  const during = [run(), run(), run()];
  assert.ok(during.every((p) => p === first), "callers share the run under way");
  release();
  await first;
  assert.equal(runs, 2);
  await run();
  assert.equal(runs, 3, "a call after it ended starts a new run");
});
