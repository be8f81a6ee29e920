/**
 * `npm run fuzz:router [-- --minutes N] [-- --seed S]`: a bounded fuzzing campaign against a real
 * router in this process (router/fuzz-harness.ts), with generated inputs on every way in: the plain
 * HTTP/1 port, HTTPS/1.1, HTTP/2 through node:http2's client, and raw HTTP/2 frames. The time is
 * shared between them. Prints the inputs tried and the crashes found per path; each failing input is
 * written to router/fuzz-corpus/ (replayed by router/fuzz-corpus.test.ts in `npm test`).
 * Exits 1 when anything was found.
 */
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import fc from "fast-check";
import { FUZZ_PATHS, inputArbitrary, type FuzzPath } from "../router/fuzz-inputs.ts";
import { runInput, saveToCorpus, startFuzzRouter, type FuzzRouter } from "../router/fuzz-harness.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const corpusDir = join(root, "router", "fuzz-corpus");

const { values } = parseArgs({ options: { minutes: { type: "string", default: "4" }, seed: { type: "string" } } });
const minutes = Number(values.minutes);
if (!(minutes > 0)) {
  console.error(`--minutes must be a number above 0 (got ${JSON.stringify(values.minutes)})`);
  process.exit(2);
}
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);

let router: FuzzRouter = await startFuzzRouter();
const tried: Record<FuzzPath, number> = { http1: 0, https1: 0, h2: 0, "h2-frames": 0 };
const found: Record<FuzzPath, number> = { http1: 0, https1: 0, h2: 0, "h2-frames": 0 };
const sliceMs = (minutes * 60_000) / FUZZ_PATHS.length;
console.log(`fuzzing the router for ${minutes} minute(s), seed ${seed}: ${FUZZ_PATHS.join(", ")}`);

for (const [i, path] of FUZZ_PATHS.entries()) {
  const started = Date.now();
  await fc.check(
    fc.asyncProperty(inputArbitrary(path), async (item) => {
      tried[path]++;
      const finding = await runInput(router, item);
      if (finding === null) return true;
      found[path]++;
      const file = await saveToCorpus(corpusDir, item, finding);
      console.log(`${path}: ${finding.kind}: ${finding.detail.split("\n")[0]} → ${relative(root, file)}`);
      if (finding.kind !== "malformed_answer") {
        // The router may be left in a bad state: the next inputs get a fresh one. Closing a broken
        // router may fail too; the finding above is what counts.
        await router.close().catch(() => undefined);
        router = await startFuzzRouter();
      }
      return true;
    }),
    { seed: seed + i, numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: sliceMs, markInterruptAsFailure: false, endOnFailure: true },
  );
  console.log(`${path}: ${tried[path]} inputs in ${Math.round((Date.now() - started) / 1000)}s, ${found[path]} crash(es) found`);
}
await router.close();

const total = Object.values(found).reduce((a, b) => a + b, 0);
console.log(`\ninputs tried: ${FUZZ_PATHS.map((p) => `${p} ${tried[p]}`).join(", ")}`);
console.log(total === 0 ? "crashes found: 0" : `crashes found: ${total} (written to ${relative(root, corpusDir)}/; fix them, and keep the files as regression inputs)`);
process.exit(total === 0 ? 0 : 1);
