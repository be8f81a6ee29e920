import { test } from "node:test";
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { execCommand, execPipeline } from "./exec.ts";
import { findProcesses, uniqueSleepSeconds } from "./test-helpers.ts";

const base = { cwd: tmpdir(), env: { PATH: process.env.PATH } };

function killAll(argv: string[]): void {
  for (const pid of findProcesses(argv)) process.kill(pid, "SIGKILL");
}

test("stdout and stderr arrive line by line while the command runs", async () => {
  const seen: { line: string; at: number }[] = [];
  const started = Date.now();
  const r = await execCommand(["sh", "-c", "echo one; echo two >&2; sleep 0.6; printf 'three\\r\\nfour'"], {
    ...base,
    onLine: (line) => seen.push({ line, at: Date.now() - started }),
  });
  assert.equal(r.exitCode, 0);
  assert.deepEqual(seen.map((s) => s.line).sort(), ["four", "one", "three", "two"]);
  const one = seen.find((s) => s.line === "one")!;
  const three = seen.find((s) => s.line === "three")!;
  assert.ok(three.at - one.at >= 400, `"one" arrived ${three.at - one.at} ms before "three": not streamed`);
  assert.deepEqual(r.stderrTail, ["two"]);
});

test("a non-zero exit and a missing program are reported, not thrown", async () => {
  assert.equal((await execCommand(["sh", "-c", "exit 3"], base)).exitCode, 3);
  const missing = await execCommand(["deck-no-such-program"], base);
  assert.equal(missing.spawnError?.code, "ENOENT");
});

test("abort stops the whole process group, including grandchildren", async (t) => {
  const sleep = ["sleep", uniqueSleepSeconds()];
  t.after(() => killAll(sleep));
  const controller = new AbortController();
  const started = Date.now();
  const running = execCommand(["sh", "-c", `${sleep.join(" ")} & ${sleep.join(" ")}; echo never`], {
    ...base,
    signal: controller.signal,
    killGraceMs: 1000,
  });
  await waitFor(() => findProcesses(sleep).length === 2);
  controller.abort();
  const r = await running;
  assert.equal(r.aborted, true);
  assert.ok(Date.now() - started < 5000);
  assert.deepEqual(findProcesses(sleep), []);
});

test("a process that ignores SIGTERM is killed after the grace period", async (t) => {
  const sleep = ["sleep", uniqueSleepSeconds()];
  t.after(() => killAll(sleep));
  const controller = new AbortController();
  const running = execCommand(["sh", "-c", `trap '' TERM; ${sleep.join(" ")}`], { ...base, signal: controller.signal, killGraceMs: 300 });
  await waitFor(() => findProcesses(sleep).length === 1);
  controller.abort();
  const r = await running;
  assert.equal(r.aborted, true);
  assert.deepEqual(findProcesses(sleep), []);
});

test("what a finished command left running in the background is stopped", async (t) => {
  const sleep = ["sleep", uniqueSleepSeconds()];
  t.after(() => killAll(sleep));
  const r = await execCommand(["sh", "-c", `${sleep.join(" ")} >/dev/null 2>&1 & echo started`], base);
  assert.equal(r.exitCode, 0);
  await waitFor(() => findProcesses(sleep).length === 0);
});

test("a pipeline feeds the first command's stdout to the second", async () => {
  const lines: string[] = [];
  const [a, b] = await execPipeline(["printf", "x\\ny\\n"], ["wc", "-l"], { ...base, onLine: (l) => lines.push(l.trim()) });
  assert.equal(a.exitCode, 0);
  assert.equal(b.exitCode, 0);
  assert.deepEqual(lines, ["2"]);
});

async function waitFor(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 25));
  }
}
