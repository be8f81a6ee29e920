import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AppQueue, Semaphore } from "./app-queue.ts";

const tick = () => new Promise((r) => setTimeout(r, 5));

describe("AppQueue", () => {
  it("runs work for one app in order, reporting positions, and other apps at once", async () => {
    const q = new AppQueue("wait");
    const events: string[] = [];
    const gate: (() => void)[] = [];
    const job = (app: string, name: string) => q.run(app, (pos) => events.push(`${name} waits #${pos}`), async () => {
      events.push(`${name} start`);
      await new Promise<void>((r) => gate.push(r));
      events.push(`${name} end`);
    });
    const a1 = job("a", "a1");
    const a2 = job("a", "a2");
    const a3 = job("a", "a3");
    const b1 = job("b", "b1");
    await tick();
    assert.ok(events.includes("a2 waits #1") && events.includes("a3 waits #2"), events.join(", "));
    assert.ok(events.includes("b1 start"), "another app does not wait");
    assert.equal(events.filter((e) => e.endsWith("start")).length, 2, "only one deploy per app runs");
    assert.equal(q.busy("a"), true);
    const all = Promise.all([a1, a2, a3, b1]);
    for (let i = 0; i < 4; i++) {
      while (!gate.length) await tick();
      gate.shift()!();
    }
    await all;
    assert.deepEqual(events.filter((e) => e.startsWith("a") && !e.includes("waits")), ["a1 start", "a1 end", "a2 start", "a2 end", "a3 start", "a3 end"]);
    assert.equal(q.busy("a"), false);
  });

  it("refuses instead of waiting in refuse mode", async () => {
    const q = new AppQueue("refuse");
    let release!: () => void;
    const first = q.run("a", () => undefined, () => new Promise<void>((r) => (release = r)));
    await tick();
    await assert.rejects(q.run("a", () => undefined, async () => undefined), /another deploy of a is in progress/);
    release();
    await first;
  });
});

describe("Semaphore", () => {
  it("never lets more than the limit run", async () => {
    const s = new Semaphore(2);
    let active = 0;
    let peak = 0;
    const positions: number[] = [];
    await Promise.all(Array.from({ length: 6 }, async () => {
      const release = await s.acquire((p) => positions.push(p));
      active++;
      peak = Math.max(peak, active);
      await tick();
      active--;
      release();
    }));
    assert.equal(peak, 2);
    assert.deepEqual(positions, [1, 2, 3, 4]);
  });
});
