/**
 * The `Runtime` contract (core/interfaces.ts): one suite that every runtime passes, registered by each
 * runtime's `*.contract.test.ts` with a harness of its own. It checks what the deploy pipeline relies on
 * through what a user would see: the app answering on its port with its config, its output in the app
 * log, a release command's exit code, processes still running and adopted after deck restarts.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isDeckError } from "../core/errors.ts";
import type { ProcessInfo, ProcessSpec, Runtime } from "../core/interfaces.ts";
import { findFreePort } from "./free-port.ts";

/** A runtime as the deck server holds one: it also adopts what a previous deck server left running. */
export type AdoptingRuntime = Runtime & { adopt(): Promise<ProcessInfo[]> };

export interface RuntimeHarness {
  runtime: AdoptingRuntime;
  /**
   * A new instance over the same state, as a restarted deck server makes; the suite uses it from then
   * on. The harness may close the old one first (a deck server that stops).
   */
  reopen(): Promise<AdoptingRuntime>;
  /** How a command runs node here, quoted for `sh -c` (`node`, or the absolute path of this node). */
  node: string;
  /** The directory processes start in (an artifact dir; must exist). */
  cwd: string;
  /** Environment every process needs here (PATH); the suite adds its own variables. */
  env: Record<string, string>;
  /** The image processes run (container runtimes). */
  image?: string;
  /** Where the suite's app logs go. */
  logDir: string;
  /** Whether a process's `memoryBytes` is enforced here (and so reported by stats()). */
  limitsMemory: boolean;
  /** Stops whatever the suite left running and removes what the harness made. */
  close(): Promise<void>;
}

/**
 * The app every process of the suite runs (`node -e "$APP_JS"`): with a PORT it answers with its
 * greeting and an id of its own (a restarted process has another), and logs a line on /log/TEXT; it
 * prints one line when it starts either way.
 */
const APP_JS = `
const id = Math.random().toString(36).slice(2);
console.log("started with greeting " + process.env.GREETING);
if (process.env.PORT) {
  require("http").createServer((req, res) => {
    if (req.url.startsWith("/log/")) { console.log("line " + req.url.slice(5)); return res.end("logged"); }
    if (req.url === "/hold") { globalThis.held = Buffer.alloc(96 * 1024 * 1024, 1); return res.end("holding"); }
    if (req.url === "/spin") { const end = Date.now() + 1500; while (Date.now() < end); return res.end("spun"); }
    res.end(JSON.stringify({ greeting: process.env.GREETING, id }));
  }).listen(Number(process.env.PORT));
} else {
  setInterval(() => {}, 60000);
}
process.on("SIGTERM", () => process.exit(0));
`;

interface Answer { greeting: string; id: string }

async function get(port: number, path = "/"): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2000) });
    return await res.text();
  } catch {
    return undefined;
  }
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function readLog(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

/** Registers the contract suite for the runtime `setup` makes (`skip`: why it cannot run here). */
export function describeRuntimeContract(name: string, setup: () => Promise<RuntimeHarness>, options: { skip?: string } = {}): void {
  describe(`Runtime contract: ${name}`, { skip: options.skip ?? false }, () => {
    let h: RuntimeHarness;
    let runtime: AdoptingRuntime;
    let generation = 0;

    const logFile = (app: string) => join(h.logDir, `${app}.log`);
    const answer = async (port: number): Promise<Answer> => JSON.parse(await waitFor(`the app on port ${port} to answer`, () => get(port))) as Answer;

    /** A process of `app` in a new generation: a web process with a port unless `type` says otherwise. */
    async function spec(app: string, extra: Partial<ProcessSpec> = {}): Promise<ProcessSpec> {
      generation += 1;
      const web = (extra.type ?? "web") === "web";
      return {
        app, release: 3, generation, type: "web", index: 1, command: `${h.node} -e "$APP_JS"`, cwd: h.cwd,
        env: { ...h.env, APP_JS, GREETING: `hello from ${app}` }, logFile: logFile(app),
        ...(web ? { port: await findFreePort() } : {}), ...(h.image ? { image: h.image } : {}), ...extra,
      };
    }

    before(async () => {
      h = await setup();
      runtime = h.runtime;
    });

    after(async () => {
      await h?.close();
    });

    it("starts a web process that answers on its port with its env, lists it with its fields, and stops it", async () => {
      const s = await spec("alpha");
      const info = await runtime.start(s);
      assert.deepEqual(
        { id: info.id, app: info.app, release: info.release, generation: info.generation, type: info.type, index: info.index, port: info.port },
        { id: `alpha.g${s.generation}.web.1`, app: "alpha", release: 3, generation: s.generation, type: "web", index: 1, port: s.port },
      );
      assert.ok(info.state === "running" || info.state === "starting", `state ${info.state}`);
      assert.equal((await answer(s.port!)).greeting, "hello from alpha");
      const listed = await runtime.list("alpha");
      assert.deepEqual(listed.map((p) => [p.id, p.generation, p.type, p.index, p.port]), [[info.id, s.generation, "web", 1, s.port]]);

      await runtime.stop(info.id, 5000);
      assert.equal(await get(s.port!), undefined, "the app no longer answers once stop resolves");
      assert.deepEqual(await runtime.list("alpha"), []);
    });

    it("lists each process under its own generation, type and index, and one app's apart from another's", async () => {
      const web = await spec("alpha");
      const worker = await spec("alpha", { type: "worker", index: 2, generation: web.generation });
      const next = await spec("alpha");
      const other = await spec("beta");
      for (const s of [web, worker, next, other]) await runtime.start(s);
      try {
        const alpha = await runtime.list("alpha");
        assert.deepEqual(
          alpha.map((p) => [p.id, p.generation, p.type, p.index, p.port]).sort(),
          [
            [`alpha.g${web.generation}.web.1`, web.generation, "web", 1, web.port],
            [`alpha.g${web.generation}.worker.2`, web.generation, "worker", 2, undefined],
            [`alpha.g${next.generation}.web.1`, next.generation, "web", 1, next.port],
          ].sort(),
        );
        assert.deepEqual((await runtime.list("beta")).map((p) => p.id), [`beta.g${other.generation}.web.1`]);
        assert.equal((await runtime.list()).length, 4);
        // Each web process answers on its own port.
        assert.equal((await answer(web.port!)).greeting, "hello from alpha");
        assert.equal((await answer(other.port!)).greeting, "hello from beta");
      } finally {
        for (const p of await runtime.list()) await runtime.stop(p.id, 5000);
      }
      assert.deepEqual(await runtime.list(), []);
    });

    it("writes the process's output to its app log, as it prints it", async () => {
      const s = await spec("logger");
      const info = await runtime.start(s);
      try {
        await waitFor("the start-up line in the log", () => (/ app\[web\.1\]: started with greeting hello from logger$/m.test(readLog(s.logFile)) ? true : undefined));
        assert.equal(await waitFor("the app to answer", () => get(s.port!, "/log/while-running")), "logged");
        await waitFor("the request's line in the log", () => (/ app\[web\.1\]: line while-running$/m.test(readLog(s.logFile)) ? true : undefined));
      } finally {
        await runtime.stop(info.id, 5000);
      }
    });

    it("reports the CPU time and memory a running process uses, and its memory limit", async () => {
      const s = await spec("stats", { memoryBytes: 512 * 1024 * 1024 });
      const info = await runtime.start(s);
      try {
        await answer(s.port!);
        const before = (await runtime.stats([info.id]))[0];
        assert.ok(before, "the running process has stats");
        assert.equal(await get(s.port!, "/hold"), "holding");
        assert.equal(await get(s.port!, "/spin"), "spun");
        const after = await waitFor("the held memory to show", async () => {
          const st = (await runtime.stats([info.id]))[0];
          return st && (st.rssBytes ?? 0) >= 90 * 1024 * 1024 ? st : undefined;
        });
        assert.ok((after.cpuSeconds ?? 0) - (before.cpuSeconds ?? 0) >= 1, `1.5 s of spinning shows as CPU time: ${before.cpuSeconds} → ${after.cpuSeconds}`);
        assert.equal(after.memoryLimitBytes, h.limitsMemory ? 512 * 1024 * 1024 : null, "the limit in force, or none");
        assert.deepEqual(await runtime.stats(["stats.g999.web.1"]), [], "no stats of a process that does not run");
      } finally {
        await runtime.stop(info.id, 5000);
      }
    });

    it("refuses to start a process that is already running, which keeps running", async () => {
      const s = await spec("alpha");
      const info = await runtime.start(s);
      try {
        const first = await answer(s.port!);
        await assert.rejects(runtime.start(s), (e) => isDeckError(e) && e.code === "process_exists");
        assert.deepEqual(await answer(s.port!), first, "the same process still answers");
      } finally {
        await runtime.stop(info.id, 5000);
      }
    });

    it("resolves a stop of a process it does not know, and leaves the others running", async () => {
      const s = await spec("alpha");
      const info = await runtime.start(s);
      try {
        const before = await answer(s.port!);
        await runtime.stop(`alpha.g${s.generation + 1000}.web.1`, 1000);
        await runtime.stop(`nosuchapp.g${s.generation}.web.1`, 1000);
        assert.deepEqual((await runtime.list("alpha")).map((p) => p.id), [info.id]);
        assert.deepEqual(await answer(s.port!), before);
      } finally {
        await runtime.stop(info.id, 5000);
      }
    });

    it("runs a release command to completion with its output and exit code, and stops one past its timeout", async () => {
      const lines: string[] = [];
      const done = await runtime.runOnce({
        app: "alpha", release: 3, command: `${h.node} -e "console.log('migrating ' + process.env.STEP); process.exit(4)"`, cwd: h.cwd,
        env: { ...h.env, STEP: "db" }, logFile: logFile("alpha"), timeoutMs: 60_000, onLine: (l) => lines.push(l), ...(h.image ? { image: h.image } : {}),
      });
      assert.deepEqual(done, { exitCode: 4, timedOut: false });
      assert.deepEqual(lines, ["migrating db"]);
      assert.match(readLog(logFile("alpha")), / app\[release\]: migrating db$/m);

      const slow = await runtime.runOnce({
        app: "alpha", release: 3, command: `${h.node} -e "setTimeout(() => {}, 120000)"`, cwd: h.cwd, env: { ...h.env },
        logFile: logFile("alpha"), timeoutMs: 500, onLine: () => undefined, ...(h.image ? { image: h.image } : {}),
      });
      assert.equal(slow.timedOut, true);
      assert.notEqual(slow.exitCode, 0, "a command stopped at its timeout did not succeed");
    });

    it("leaves processes running for a new instance, which adopts them unrestarted and can stop them", async () => {
      const s = await spec("alpha");
      const info = await runtime.start(s);
      const before = await answer(s.port!);

      runtime = await h.reopen();
      const adopted = await runtime.adopt();
      assert.deepEqual(adopted.filter((p) => p.app === "alpha").map((p) => [p.id, p.generation, p.type, p.port]), [[info.id, s.generation, "web", s.port]]);
      assert.deepEqual(await answer(s.port!), before, "the same process answers: it was not restarted");
      await get(s.port!, "/log/after-adoption");
      await waitFor("output after adoption in the log", () => (/ app\[web\.1\]: line after-adoption$/m.test(readLog(s.logFile)) ? true : undefined));

      await runtime.stop(info.id, 5000);
      assert.equal(await get(s.port!), undefined);
      assert.deepEqual(await runtime.list("alpha"), []);
    });
  });
}
