import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { isDeckError } from "../core/errors.ts";
import type { ProcessSpec } from "../core/interfaces.ts";
import { findFreePort } from "./free-port.ts";
import { ProcessRuntime } from "./process-runtime.ts";
import { isProcessAlive, isSameProcess } from "./shim-lib.mjs";

// An app as a user would push it: listens on $PORT, logs a line, reports what it sees.
const SERVER_JS = `
const http = require("http");
if (process.env.IGNORE_TERM) process.on("SIGTERM", () => console.log("ignoring SIGTERM"));
http.createServer((req, res) => {
  res.end(JSON.stringify({ pid: process.pid, port: process.env.PORT, greeting: process.env.GREETING, leaked: process.env.DECK_TEST_SECRET ?? null }));
}).listen(Number(process.env.PORT), "127.0.0.1", () => {
  console.log("listening on " + process.env.PORT);
  console.error("ready on stderr");
});
`;

let root: string;
let appDir: string;
let stateDir: string;
let logFile: string;
let runtime: ProcessRuntime;
/** Every shim, child and group a test learns about; killed at the end whatever happened. */
const started = new Set<number>();
let generation = 0;

function track(...pids: (number | undefined)[]): void {
  for (const pid of pids) if (pid !== undefined && pid > 1) started.add(pid);
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function get(port: number): Promise<{ pid: number; port: string; greeting?: string; leaked: string | null } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
    return (await res.json()) as { pid: number; port: string; greeting?: string; leaked: string | null };
  } catch {
    return undefined;
  }
}

/**
 * Whether our app still answers on the port. Not a bare connect(): other test files running at the same
 * time bind free ports too, and may briefly hold the one just released.
 */
async function appAnswers(port: number): Promise<boolean> {
  return (await get(port)) !== undefined;
}

async function webSpec(extraEnv: Record<string, string> = {}): Promise<ProcessSpec> {
  generation += 1;
  return {
    app: "demo",
    release: 3,
    generation,
    type: "web",
    index: 1,
    command: `"${process.execPath}" server.js`,
    cwd: appDir,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", GREETING: "hello", ...extraEnv },
    port: await findFreePort(),
    logFile,
  };
}

async function startTracked(spec: ProcessSpec, rt = runtime) {
  const info = await rt.start(spec);
  const record = await rt.inspect(info.id);
  track(info.pid, record?.shimPid);
  return { info, record: record! };
}

before(() => {
  root = mkdtempSync(join(tmpdir(), "deck-runtime-"));
  appDir = join(root, "app");
  stateDir = join(root, "state");
  logFile = join(root, "logs", "demo.log");
  runtime = new ProcessRuntime({ stateDir });
  mkdirSync(appDir, { recursive: true });
  writeFileSync(join(appDir, "server.js"), SERVER_JS);
  process.env.DECK_TEST_SECRET = "must-not-leak";
});

after(async () => {
  await runtime.stopAll(0).catch(() => undefined);
  for (const pid of started) {
    for (const target of [pid, -pid]) {
      try {
        process.kill(target, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  rmSync(root, { recursive: true, force: true });
  delete process.env.DECK_TEST_SECRET;
});

describe("ProcessRuntime", () => {
  it("runs a web process on its PORT with exactly the given env and logs its output", async () => {
    const spec = await webSpec();
    const { info, record } = await startTracked(spec);
    assert.equal(info.id, `demo.g${spec.generation}.web.1`);
    assert.equal(info.state, "running");
    assert.equal(info.port, spec.port);
    const body = await waitFor("the app to answer", () => get(spec.port!));
    assert.equal(body.pid, info.pid);
    assert.equal(body.port, String(spec.port));
    assert.equal(body.greeting, "hello");
    assert.equal(body.leaked, null, "deck's own environment must not reach the app");
    const log = await waitFor("both output lines in the log", () => {
      const text = readFileSync(logFile, "utf8");
      return text.includes("ready on stderr") ? text : undefined;
    });
    assert.match(log, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z app\\[web\\.1\\]: listening on ${spec.port}$`, "m"));
    assert.match(log, /Z app\[web\.1\]: ready on stderr$/m);
    assert.match(log, /Z deck\[web\.1\]: Starting process with command `.*server\.js`$/m);
    assert.deepEqual((await runtime.list("demo")).map((p) => p.id), [info.id]);
    assert.deepEqual(await runtime.list("other-app"), []);

    await assert.rejects(runtime.start(spec), (e) => isDeckError(e) && e.code === "process_exists");

    await runtime.stop(info.id, 5000);
    assert.equal(isProcessAlive(record.shimPid), false, "shim is gone");
    assert.equal(isProcessAlive(info.pid!), false, "app process is gone");
    assert.equal(await appAnswers(spec.port!), false, "the app no longer answers");
    assert.equal(existsSync(join(stateDir, `${info.id}.json`)), false, "state file is removed");
    assert.deepEqual(await runtime.list(), []);
    assert.match(readFileSync(logFile, "utf8"), /deck\[web\.1\]: Stopping \(SIGTERM\)$/m);
  });

  it("restarts an app process that was killed", async () => {
    const spec = await webSpec();
    const { info } = await startTracked(spec);
    await waitFor("the app to answer", () => get(spec.port!));
    process.kill(info.pid!, "SIGKILL");
    const restarted = await waitFor("a restarted process", async () => {
      const [p] = await runtime.list("demo");
      return p && p.state === "running" && p.pid !== info.pid ? p : undefined;
    });
    track(restarted.pid);
    assert.equal(restarted.restarts, 1);
    const body = await waitFor("the restarted app to answer", () => get(spec.port!));
    assert.equal(body.pid, restarted.pid);
    assert.match(readFileSync(logFile, "utf8"), /deck\[web\.1\]: Process exited with signal SIGKILL; restarting in 1s$/m);
    await runtime.stop(info.id, 5000);
    assert.equal(isProcessAlive(restarted.pid!), false);
  });

  it("backs off between restarts of a crashing process", async () => {
    const spec = { ...(await webSpec()), type: "worker", port: undefined, command: "echo crashing; exit 3" };
    const { info } = await startTracked(spec);
    await waitFor("a second restart", async () => ((await runtime.list("demo"))[0]?.restarts ?? 0) >= 2 || undefined, 8000);
    const log = readFileSync(logFile, "utf8");
    assert.match(log, /deck\[worker\.1\]: Process exited with status 3; restarting in 1s$/m);
    assert.match(log, /deck\[worker\.1\]: Process exited with status 3; restarting in 2s$/m);
    assert.match(log, /app\[worker\.1\]: crashing$/m);
    await runtime.stop(info.id, 1000);
    assert.deepEqual(await runtime.list(), []);
  });

  it("SIGKILLs a process that ignores SIGTERM once the grace period is over", async () => {
    const spec = await webSpec({ IGNORE_TERM: "1" });
    const { info } = await startTracked(spec);
    await waitFor("the app to answer", () => get(spec.port!));
    const t0 = Date.now();
    await runtime.stop(info.id, 700);
    const took = Date.now() - t0;
    assert.ok(took >= 650, `stop waited for the grace period (took ${took} ms)`);
    assert.ok(took < 2500, `stop did not wait much past the grace (took ${took} ms)`);
    assert.equal(isProcessAlive(info.pid!), false);
    assert.equal(await appAnswers(spec.port!), false, "the app no longer answers");
    const log = readFileSync(logFile, "utf8");
    assert.match(log, /app\[web\.1\]: ignoring SIGTERM$/m);
    assert.match(log, /deck\[web\.1\]: Process did not stop within 0\.7s of SIGTERM; sending SIGKILL$/m);
  });

  it("keeps processes running and supervised after their creator is SIGKILLed; a new runtime adopts them", async () => {
    const spec = await webSpec();
    const creatorScript = join(root, "creator.mts");
    const runtimeModule = fileURLToPath(new URL("./process-runtime.ts", import.meta.url));
    writeFileSync(
      creatorScript,
      `import { ProcessRuntime } from ${JSON.stringify(runtimeModule)};
const rt = new ProcessRuntime({ stateDir: ${JSON.stringify(stateDir)} });
const info = await rt.start(${JSON.stringify(spec)});
const record = await rt.inspect(info.id);
console.log(JSON.stringify({ pid: info.pid, shimPid: record.shimPid }));
setInterval(() => {}, 1000);
`,
    );
    const tsx = fileURLToPath(import.meta.resolve("tsx"));
    // A pipe on fd 30 stands for any descriptor whoever started deck leaked to it (bash's dup leaves it
    // inheritable): shims and apps must not keep it open.
    const creator = spawn("/bin/bash", ["-c", 'exec "$0" --import "$1" "$2" 30>&3 3>&-', process.execPath, tsx, creatorScript], {
      stdio: ["ignore", "pipe", "inherit", "pipe"],
    });
    track(creator.pid);
    const leakedPipe = creator.stdio[3] as NodeJS.ReadableStream;
    const leakedPipeClosed = new Promise<void>((resolve) => {
      leakedPipe.on("data", () => undefined);
      leakedPipe.once("end", resolve);
      leakedPipe.once("close", resolve);
    });
    const first = await new Promise<{ pid: number; shimPid: number }>((resolve, reject) => {
      let out = "";
      creator.stdout!.on("data", (chunk) => {
        out += chunk;
        if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]));
      });
      creator.once("exit", (code) => reject(new Error(`creator exited with ${code} before starting the app`)));
    });
    track(first.pid, first.shimPid);
    await waitFor("the app to answer", () => get(spec.port!));

    creator.kill("SIGKILL");
    await new Promise((r) => creator.once("exit", r));
    const body = await get(spec.port!);
    assert.equal(body?.pid, first.pid, "the app survived its creator");
    const closed = await Promise.race([leakedPipeClosed.then(() => true), new Promise((r) => setTimeout(() => r(false), 2000))]);
    assert.equal(closed, true, "neither shim nor app holds descriptors leaked by deck's parent");

    const adopter = new ProcessRuntime({ stateDir });
    const adopted = await adopter.adopt();
    assert.deepEqual(adopted.map((p) => [p.id, p.pid, p.state]), [[`demo.g${spec.generation}.web.1`, first.pid, "running"]]);

    // Still supervised while no deck is attached: a crash is restarted by the orphaned shim.
    process.kill(first.pid, "SIGKILL");
    const restarted = await waitFor("the orphaned shim to restart the app", async () => {
      const [p] = await adopter.list("demo");
      return p && p.state === "running" && p.pid !== first.pid ? p : undefined;
    });
    track(restarted.pid);
    await waitFor("the restarted app to answer", () => get(spec.port!));

    await adopter.stop(adopted[0].id, 5000);
    assert.equal(isProcessAlive(first.shimPid), false);
    assert.equal(isProcessAlive(restarted.pid!), false);
    assert.equal(await appAnswers(spec.port!), false, "the app no longer answers");
    assert.deepEqual(await adopter.list(), []);
  });

  it("takes the app process down with its shim when the shim is told to hang up", async () => {
    const spec = await webSpec();
    const { info, record } = await startTracked(spec);
    await waitFor("the app to answer", () => get(spec.port!));
    process.kill(record.shimPid, "SIGHUP");
    await waitFor("shim and app to exit", () => (!isProcessAlive(record.shimPid) && !isProcessAlive(info.pid!)) || undefined, 5000);
    assert.equal(await appAnswers(spec.port!), false, "the app no longer answers");
    assert.deepEqual(await runtime.list(), []);
  });

  it("stops an app process whose shim was SIGKILLed", async () => {
    const spec = await webSpec();
    const { info, record } = await startTracked(spec);
    await waitFor("the app to answer", () => get(spec.port!));
    process.kill(record.shimPid, "SIGKILL");
    await waitFor("the shim to die", () => !isProcessAlive(record.shimPid) || undefined);
    assert.equal((await get(spec.port!))?.pid, info.pid, "the app runs on, unsupervised");
    await runtime.stop(info.id, 2000);
    assert.equal(isProcessAlive(info.pid!), false);
    assert.equal(await appAnswers(spec.port!), false, "the app no longer answers");
    assert.equal(existsSync(join(stateDir, `${info.id}.json`)), false);
  });

  it("does not mistake a reused pid for a live shim or child", async () => {
    // An unrelated process that now holds the pids a stale record names.
    const unrelated = spawn("sleep", ["60"], { detached: true, stdio: "ignore" });
    track(unrelated.pid);
    const id = "demo.g999.web.1";
    const stateFile = join(stateDir, `${id}.json`);
    writeFileSync(
      stateFile,
      JSON.stringify({
        id, app: "demo", release: 1, generation: 999, type: "web", index: 1, port: 1, state: "running", restarts: 0,
        startedAt: new Date().toISOString(), shimPid: process.pid, specFile: join(stateDir, `${id}.spec.json`),
        command: "x", cwd: appDir, logFile, pid: unrelated.pid, pgid: unrelated.pid, childStartTime: 1,
      }),
    );
    assert.deepEqual(await runtime.list(), [], "a record whose shim pid belongs to another process is not running");
    assert.equal(existsSync(stateFile), false, "the stale record is cleaned up");
    assert.equal(isSameProcess(unrelated.pid!, undefined), true, "the unrelated process was left alone");
    await runtime.stop(id, 100);
    assert.equal(isProcessAlive(unrelated.pid!), true);
    unrelated.kill("SIGKILL");
  });

  it("keeps an app that prints without pause from filling the disk: its log moves aside past the limit", async () => {
    const capped = new ProcessRuntime({ stateDir: join(root, "state-capped"), maxLogBytes: 256 * 1024 });
    const noisyLog = join(root, "logs", "noisy.log");
    writeFileSync(join(appDir, "noisy.js"), 'const line = "x".repeat(1000) + "\\n"; setInterval(() => { for (let i = 0; i < 100; i++) process.stdout.write(line); }, 5);');
    const spec = { ...(await webSpec()), app: "noisy", command: `"${process.execPath}" noisy.js`, port: undefined, logFile: noisyLog };
    const info = await capped.start(spec);
    track(info.pid);
    try {
      // Well past the limit several times over: the older file appears, and neither grows past the limit by much.
      await waitFor("the log to move aside", () => existsSync(`${noisyLog}.1`), 20_000);
      await new Promise((r) => setTimeout(r, 1000));
      for (const file of [noisyLog, `${noisyLog}.1`]) {
        // Read while the app keeps printing: the current file may be between its move and its new start.
        const size = statSync(file, { throwIfNoEntry: false })?.size ?? 0;
        assert.ok(size < 256 * 1024 + 512 * 1024, `${file} is ${size} bytes`);
      }
    } finally {
      await capped.stop(info.id, 1000);
    }
  });

  it("refuses to start in a directory that does not exist", async () => {
    const spec = { ...(await webSpec()), cwd: join(root, "missing") };
    await assert.rejects(runtime.start(spec), (e) => isDeckError(e) && e.code === "process_cwd_missing");
  });
});
