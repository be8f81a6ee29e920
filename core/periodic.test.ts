import assert from "node:assert/strict";
import { test } from "node:test";
import { Periodic } from "./periodic.ts";

test("a failing run is reported once per kind of trouble, its recovery once, and runs never overlap", async () => {
  const said: string[] = [];
  let fail: string | null = "database away";
  let running = 0;
  let overlapped = false;
  const p = new Periodic({
    intervalMs: 3_600_000,
    run: async () => {
      running++;
      overlapped ||= running > 1;
      await new Promise((r) => setTimeout(r, 5));
      running--;
      if (fail) throw new Error(fail);
    },
    onTrouble: (m) => said.push(`trouble: ${m}`),
    onRecovered: () => said.push("recovered"),
  });
  await Promise.all([p.tick(), p.tick()]);
  await p.tick();
  fail = "disk full";
  await p.tick();
  fail = null;
  await p.tick();
  await p.tick();
  assert.deepEqual(said, ["trouble: database away", "trouble: disk full", "recovered"]);
  assert.equal(overlapped, false);
});
