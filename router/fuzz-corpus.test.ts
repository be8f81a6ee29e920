/**
 * The router's fuzzing regression suite: every input in router/fuzz-corpus/ (inputs that once
 * crashed the router or got a malformed answer) is replayed, then a short fuzz run with a fixed seed
 * goes through each way in. `npm run fuzz:router` runs the long campaign.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { FUZZ_PATHS, inputArbitrary } from "./fuzz-inputs.ts";
import { checkH2Frames, checkHttp1Answers, loadCorpus, runInput, startFuzzRouter } from "./fuzz-harness.ts";

const corpusDir = join(dirname(fileURLToPath(import.meta.url)), "fuzz-corpus");
/** Inputs per way in: seconds of work each, not minutes. */
const SHORT_RUNS = 25;

test("the fuzzer's answer checks tell well-formed answers from malformed ones", () => {
  const ok = (text: string) => checkHttp1Answers(Buffer.from(text, "latin1"));
  assert.equal(ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\napp"), null);
  assert.equal(ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\napp\r\n0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), null);
  assert.equal(ok("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\ncut sh"), null, "an answer cut short by a closed connection");
  assert.match(ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nappjunk")!, /cut-off answer that is no response/);
  assert.match(ok("HTTP/2.0 200 OK\r\n\r\n")!, /malformed status line/);
  assert.match(ok("HTTP/1.1 200 OK\r\nBad Field\r\n\r\n")!, /malformed field line/);
  assert.match(ok("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")!, /both/);
  assert.equal(checkH2Frames(Buffer.from("\0\0\0\x04\0\0\0\0\0", "latin1")), null);
  assert.match(checkH2Frames(Buffer.from("HTTP/1.1 400 Bad Request\r\n", "latin1"))!, /first frame/);
});

test("every input of the fuzz corpus is answered well and leaves the router serving", async (t) => {
  const corpus = await loadCorpus(corpusDir);
  assert.ok(corpus.some(({ entry }) => entry.item.path === "https1" && entry.item.input.chunks.join("").includes("HTTP/2.0")), "the corpus holds the HTTP/2.0 request line over TLS");
  const router = await startFuzzRouter();
  t.after(() => router.close());
  for (const { file, entry } of corpus) {
    const finding = await runInput(router, entry.item);
    assert.equal(finding, null, `${file} (once: ${entry.found}): ${finding?.kind}: ${finding?.detail}`);
  }
});

for (const [i, path] of FUZZ_PATHS.entries()) {
  test(`a short fuzz run (fixed seed) on ${path} finds nothing`, async (t) => {
    const router = await startFuzzRouter();
    t.after(() => router.close());
    const findings: string[] = [];
    try {
      await fc.assert(
        fc.asyncProperty(inputArbitrary(path), async (item) => {
          const finding = await runInput(router, item);
          if (finding !== null) findings.push(`${finding.kind}: ${finding.detail}\n  input: ${JSON.stringify(item).slice(0, 2000)}`);
          return finding === null;
        }),
        { seed: 1400 + i, numRuns: SHORT_RUNS, endOnFailure: true },
      );
    } catch (e) {
      // A finding is reported below with its input; anything else is the harness's own failure.
      if (findings.length === 0) throw e;
    }
    assert.deepEqual(findings, []);
  });
}
