/**
 * A deck server killed in the middle of a build leaves the build's scratch directory beside the app's
 * slugs; the next start removes it, and only it.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { removeBuildLeftovers } from "./leftovers.ts";
import { createPushedRepo, findProcesses, uniqueSleepSeconds } from "./test-helpers.ts";

const root = mkdtempSync(join(tmpdir(), "deck-build-leftovers-"));
const stray: number[] = [];
after(() => {
  for (const pid of stray) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  rmSync(root, { recursive: true, force: true });
});

/**
 * Runs a build of `repo` into `slugDir` in a process of its own, as the deck server does, and kills
 * that process with SIGKILL once the build prints `marker`.
 */
async function buildAndKill(request: { repoDir: string; sha: string; slugDir: string; cacheDir: string }, marker: string): Promise<void> {
  const script = join(root, "build-then-die.mts");
  const builder = fileURLToPath(new URL("./build.ts", import.meta.url));
  writeFileSync(script, `import { runBuild } from ${JSON.stringify(builder)};
await runBuild({
  app: "shop", commitSha: ${JSON.stringify(request.sha)}, repoDir: ${JSON.stringify(request.repoDir)}, gitEnv: {},
  slugDir: ${JSON.stringify(request.slugDir)}, cacheDir: ${JSON.stringify(request.cacheDir)}, env: {}, timeoutMs: 120_000,
  onLine: (line) => console.log(line),
});
`);
  const tsx = fileURLToPath(import.meta.resolve("tsx"));
  const child = spawn(process.execPath, ["--import", tsx, script], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (c) => {
      output += c;
      if (output.includes(marker)) resolve();
    });
    child.stderr.on("data", (c) => (output += c));
    child.once("exit", (code) => reject(new Error(`the build ended (${code}) before printing ${marker}: ${output}`)));
  });
  child.kill("SIGKILL");
  await new Promise((r) => child.once("close", r));
}

describe("build leftovers", () => {
  it("removes the scratch dir of a build whose deck server was killed, and keeps finished builds and the cache", async () => {
    const dataDir = join(root, "data");
    const slugs = join(dataDir, "apps", "shop", "slugs");
    const cacheDir = join(dataDir, "cache", "shop");
    const seconds = uniqueSleepSeconds();
    const repo = createPushedRepo(join(root, "repo"), {
      "package.json": JSON.stringify({ name: "shop", version: "1.0.0", scripts: { start: "node index.js", build: `echo building now && sleep ${seconds}` } }),
      "index.js": "",
    });
    // A finished build of the app, and what its cache holds.
    mkdirSync(join(slugs, "1"), { recursive: true });
    writeFileSync(join(slugs, "1", "index.js"), "");
    mkdirSync(join(cacheDir, "node_modules"), { recursive: true });

    await buildAndKill({ repoDir: repo.repoDir, sha: repo.sha, slugDir: join(slugs, "2"), cacheDir }, "building now");
    // The build's own commands are not deck's children: they may outlive it.
    stray.push(...findProcesses(["sleep", seconds]));
    const left = readdirSync(slugs).filter((name) => name.startsWith(".2.building-"));
    assert.equal(left.length, 1, `the killed build left its scratch dir: ${readdirSync(slugs)}`);
    // A sandboxed build's scratch dir sits in the cache dir, and a link of the same shape is not followed.
    const sandboxed = mkdtempSync(join(cacheDir, ".build-"));
    writeFileSync(join(sandboxed, "index.js"), "");
    const outside = mkdtempSync(join(root, "outside-"));
    symlinkSync(outside, join(slugs, ".3.building-Ab12Cd"));

    const logged: string[] = [];
    const removed = await removeBuildLeftovers({ appsDir: join(dataDir, "apps"), cacheDir: join(dataDir, "cache"), log: (line) => logged.push(line) });
    assert.deepEqual(removed.sort(), [join(slugs, left[0]), sandboxed].sort());
    assert.equal(logged.length, 2);
    assert.deepEqual(readdirSync(slugs).sort(), [".3.building-Ab12Cd", "1"], "the finished build stays");
    assert.ok(existsSync(join(cacheDir, "node_modules")), "the cache stays");
    assert.equal(existsSync(sandboxed), false);
    assert.ok(existsSync(outside), "a link is never followed");
    assert.deepEqual(await removeBuildLeftovers({ appsDir: join(dataDir, "apps"), cacheDir: join(dataDir, "cache") }), [], "nothing is left the second time");
  });

  it("finds nothing to do in a data dir without apps", async () => {
    const empty = join(root, "empty");
    assert.deepEqual(await removeBuildLeftovers({ appsDir: join(empty, "apps"), cacheDir: join(empty, "cache") }), []);
  });
});
