import assert from "node:assert/strict";
import { chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isDeckError } from "../core/errors.ts";
import { runOnce } from "./run-once.ts";
import { freeTestIdentity, sandboxHostOrSkip } from "./sandbox-test-helpers.ts";
import { SANDBOX_HOME } from "./sandbox.ts";
import { isProcessAlive } from "./shim-lib.mjs";

let root: string;
let logFile: string;
const grandchildren: number[] = [];

function spec(command: string, timeoutMs = 10_000) {
  const lines: { text: string; at: number }[] = [];
  return {
    lines,
    spec: {
      app: "demo",
      release: 4,
      command,
      cwd: root,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", STEP: "migrate" },
      logFile,
      timeoutMs,
      onLine: (text: string) => lines.push({ text, at: Date.now() }),
    },
  };
}

before(() => {
  root = mkdtempSync(join(tmpdir(), "deck-run-once-"));
  logFile = join(root, "logs", "demo.log");
});

after(() => {
  for (const pid of grandchildren) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  rmSync(root, { recursive: true, force: true });
});

describe("runOnce", () => {
  it("streams each line as it is printed, in order, and reports exit code 0", async () => {
    const { spec: s, lines } = spec(`echo "first $STEP"; sleep 0.5; for i in 1 2 3; do echo line$i; done; echo to-stderr >&2`);
    const result = await runOnce(s);
    const done = Date.now();
    assert.deepEqual(result, { exitCode: 0, timedOut: false });
    assert.deepEqual(lines.map((l) => l.text), ["first migrate", "line1", "line2", "line3", "to-stderr"]);
    assert.ok(done - lines[0].at >= 400, "the first line arrived while the command was still running");
    const log = readFileSync(logFile, "utf8");
    assert.match(log, /Z app\[release\]: first migrate\nZ?.*app\[release\]: line1$/m);
    assert.match(log, /Z deck\[release\]: Release command exited with status 0$/m);
  });

  it("reports a failing exit code", async () => {
    const { spec: s, lines } = spec(`echo failing; exit 3`);
    assert.deepEqual(await runOnce(s), { exitCode: 3, timedOut: false });
    assert.deepEqual(lines.map((l) => l.text), ["failing"]);
  });

  it("flushes a last line without a newline", async () => {
    const { spec: s, lines } = spec(`printf 'no newline'`);
    assert.deepEqual(await runOnce(s), { exitCode: 0, timedOut: false });
    assert.deepEqual(lines.map((l) => l.text), ["no newline"]);
  });

  it("kills the whole process group on timeout, grandchildren included", async () => {
    const { spec: s, lines } = spec(`sleep 300 & echo $!; wait`, 600);
    const t0 = Date.now();
    const result = await runOnce(s);
    const grandchild = Number(lines[0]?.text);
    grandchildren.push(grandchild);
    assert.equal(result.timedOut, true);
    assert.notEqual(result.exitCode, 0);
    assert.ok(Date.now() - t0 < 5000, "resolved soon after the timeout");
    assert.ok(grandchild > 1, "the command printed its background pid");
    assert.equal(isProcessAlive(grandchild), false, "the background sleep is gone");
    assert.match(readFileSync(logFile, "utf8"), /deck\[release\]: Release command timed out after 0\.6s; stopping \(SIGTERM\)$/m);
  });

  it("refuses a directory that does not exist", async () => {
    const { spec: s } = spec("true");
    await assert.rejects(runOnce({ ...s, cwd: join(root, "missing") }), (e) => isDeckError(e) && e.code === "process_cwd_missing");
  });
});

const { skip } = await sandboxHostOrSkip();

describe("runOnce in the sandbox", { skip }, () => {
  const identity = freeTestIdentity();
  let slug: string;
  before(() => {
    // The app's own slug, beside deck's files (the log) as in deck's data dir.
    slug = join(root, "slug");
    mkdirSync(slug);
    chownSync(slug, identity.uid, identity.gid);
  });

  it("runs the release command as the app's uid with a private home, and cannot see deck's files", async () => {
    const { spec: s, lines } = spec(`id -u; echo "$HOME"; ls ${JSON.stringify(logFile)}; touch here`);
    const result = await runOnce({ ...s, cwd: slug, sandbox: identity }, { hide: [root] });
    assert.deepEqual(result, { exitCode: 1, timedOut: false });
    const texts = lines.map((l) => l.text);
    assert.equal(texts[0], String(identity.uid));
    assert.equal(texts[1], SANDBOX_HOME);
    assert.match(texts[2], /No such file or directory/, "the app's log file (deck's data dir) is invisible");
    assert.match(texts[3], /Read-only file system/, "the slug is read-only");
  });

  it("stops everything the command started inside the sandbox on timeout", async () => {
    const { spec: s, lines } = spec(`sleep 300 & echo started; wait`, 800);
    const result = await runOnce({ ...s, cwd: slug, sandbox: identity }, { hide: [root] });
    assert.equal(result.timedOut, true);
    assert.deepEqual(lines.map((l) => l.text), ["started"]);
    const leftovers = readdirSync("/proc").filter((e) => /^\d+$/.test(e) && ownerOf(e) === identity.uid);
    assert.deepEqual(leftovers, [], "no process of the app's uid is left");
  });
});

function ownerOf(pid: string): number | undefined {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  } catch {
    return undefined;
  }
}
