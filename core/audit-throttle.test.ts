import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AuditThrottle } from "./audit-throttle.ts";

describe("the audit throttle for failures anyone can cause", () => {
  it("writes the first five of a source's minute, counts the rest, and says so on its next row", () => {
    const t = new AuditThrottle(5, 200, 60_000);
    const decisions = Array.from({ length: 12 }, (_, i) => t.take("ssh:203.0.113.9", 1000 + i));
    assert.deepEqual(decisions.map((d) => d.write), [true, true, true, true, true, false, false, false, false, false, false, false]);
    assert.deepEqual(t.take("ssh:198.51.100.1", 2000), { write: true, suppressed: 0 }, "another source has its own five");
    assert.deepEqual(t.take("ssh:203.0.113.9", 61_000), { write: true, suppressed: 7 }, "a minute later: one row, carrying the count left out");
    assert.deepEqual(t.take("ssh:203.0.113.9", 61_001), { write: true, suppressed: 0 });
  });

  it("caps every source together", () => {
    const t = new AuditThrottle(5, 10, 60_000);
    const written = Array.from({ length: 50 }, (_, i) => t.take(`git-http:2001:db8::${i}`, 5000 + i)).filter((d) => d.write).length;
    assert.equal(written, 10);
    assert.equal(t.take("git-http:2001:db8::ffff", 65_001).write, true, "the next minute starts again");
  });

  it("remembers a bounded number of sources", () => {
    const t = new AuditThrottle(1, 1_000_000, 60_000, 100);
    for (let i = 0; i < 10_000; i++) t.take(`ssh:10.0.${i >> 8}.${i & 255}`, i);
    assert.ok((t as unknown as { sources: Map<string, unknown> }).sources.size <= 100);
  });
});
