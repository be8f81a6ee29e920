// Runs the type check, then every *.test.ts in the repository with node:test.
// Node 20's test runner has no glob support, so the files are listed here.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { availableParallelism } from "node:os";

const root = new URL("..", import.meta.url).pathname;
const skip = new Set(["node_modules", ".git", "data"]);
function find(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (skip.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith(".test.ts")) out.push(relative(root, p));
  }
  return out;
}
const only = process.argv.slice(2);
const files = only.length ? only : find(root).sort();
if (!only.length) {
  const tsc = spawnSync("npx", ["tsc", "--noEmit", "-p", "."], { cwd: root, stdio: "inherit" });
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);
}
const concurrency = process.env.DECK_TEST_CONCURRENCY ?? String(Math.max(2, availableParallelism()));
const r = spawnSync(process.execPath, ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, ...files], { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);
