import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatSize, pktLine, PushMeter, pushTooLargeLine, refusalResponse } from "./push-request.ts";

const A = "a".repeat(40);
const B = "b".repeat(40);
const request = (caps: string, pack: Buffer, extra: Buffer[] = []) => Buffer.concat([
  pktLine(`${A} ${B} refs/heads/main\0${caps}\n`), pktLine(`${A} ${B} refs/heads/dev\n`), Buffer.from("0000"), ...extra, pack,
]);

/** Splits `buf` into pkt-lines: [band or null, text] per line, "flush" for 0000. */
function readPkts(buf: Buffer): (string | [number, string])[] {
  const out: (string | [number, string])[] = [];
  let i = 0;
  while (i < buf.length) {
    const len = parseInt(buf.subarray(i, i + 4).toString(), 16);
    if (len === 0) {
      out.push("flush");
      i += 4;
      continue;
    }
    const data = buf.subarray(i + 4, i + len);
    out.push([data[0], data.subarray(1).toString()]);
    i += len;
  }
  return out;
}

describe("push request meter", () => {
  it("counts only the pack after the command list, however the bytes are split", () => {
    const pack = Buffer.concat([Buffer.from("PACK"), Buffer.alloc(996, 7)]);
    const whole = request("report-status side-band-64k agent=git/2.39", pack);
    for (const step of [1, 3, 7, 64, whole.length]) {
      const m = new PushMeter();
      for (let i = 0; i < whole.length; i += step) m.feed(whole.subarray(i, i + step));
      assert.equal(m.packBytes, 1000, `step ${step}`);
      assert.equal(m.headerBytes, whole.length - 1000);
      assert.deepEqual(m.commands, {
        capabilities: ["report-status", "side-band-64k", "agent=git/2.39"],
        updates: [{ oldSha: A, newSha: B, ref: "refs/heads/main" }, { oldSha: A, newSha: B, ref: "refs/heads/dev" }],
      });
    }
  });
  it("skips push options when the client sent them", () => {
    const m = new PushMeter();
    m.feed(request("report-status push-options", Buffer.alloc(10), [pktLine("ci.skip\n"), Buffer.from("0000")]));
    assert.equal(m.packBytes, 10);
  });
  it("has no command list until the flush, and counts everything after garbage as pack", () => {
    const m = new PushMeter();
    m.feed(pktLine(`${A} ${B} refs/heads/main\0report-status\n`));
    assert.equal(m.commands, null);
    assert.equal(m.packBytes, 0);
    const bad = new PushMeter();
    bad.feed(Buffer.from("zzzz and then some"));
    assert.equal(bad.packBytes, 18);
    assert.deepEqual(bad.commands, { updates: [], capabilities: [] });
  });
});

describe("refusing a push the way git would answer", () => {
  const commands = { updates: [{ oldSha: A, newSha: B, ref: "refs/heads/main" }], capabilities: ["report-status", "side-band-64k"] };
  it("puts deck's line on sideband 2 and the report on sideband 1", () => {
    const pkts = readPkts(refusalResponse(commands, ["deck: no"], "too big"));
    assert.deepEqual(pkts, [[2, "deck: no\n"], [1, "0013unpack too big\n001fng refs/heads/main too big\n0000"], "flush"]);
  });
  it("sends the bare report to a client without sideband", () => {
    const res = refusalResponse({ ...commands, capabilities: ["report-status"] }, ["deck: no"], "too big");
    assert.equal(res.toString(), "0013unpack too big\n001fng refs/heads/main too big\n0000");
  });
  it("names the limit in binary units and says what to do", () => {
    assert.equal(formatSize(1024 ** 3), "1 GiB");
    assert.equal(formatSize(500 * 1024 ** 2), "500 MiB");
    assert.equal(formatSize(1536), "1.5 KiB");
    assert.match(pushTooLargeLine(1024 ** 3), /^deck: push refused: the pack is larger than DECK_MAX_PUSH_SIZE \(1 GiB\); nothing was changed\. .*raise DECK_MAX_PUSH_SIZE$/);
  });
});
