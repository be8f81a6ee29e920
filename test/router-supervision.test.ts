/**
 * The router comes back by itself: its supervisor replaces a killed worker, and the deck server starts
 * a new router when the supervisor is gone. While it does not answer, reports say so and changes are
 * refused with nothing changed.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createRouterControl, routerPaths, type RouterHealth } from "../router/index.ts";
import { ProcessRuntime } from "../runtime/index.ts";
import { commitFiles, Deck, makeRepo, nodeApp, ROOT, run } from "./helpers/deck.ts";

/** Running, and not an exited child its (stopped) parent has not reaped yet. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  let last: unknown;
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

describe("a router that dies", () => {
  let deck: Deck;
  let work: string;
  const apiHealth = async () => (await fetch(`http://127.0.0.1:${deck.ports.api}/api/v1/health`)).json();
  const health = () => createRouterControl(routerPaths(deck.dataDir).socket, { retryMs: 0, timeoutMs: 2_000 }).health();
  const routerLog = () => readFileSync(join(deck.dataDir, "logs", "router.log"), "utf8");
  const serves = (app: string, body: RegExp) => until(`${app} to answer ${body}`, async () => {
    const r = await deck.get(app, "/", { timeoutMs: 5_000 });
    return r.status === 200 && body.test(r.body) ? r : undefined;
  });

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-work-"));
    deck = await Deck.start({ backend: { name: "embedded" } });
  });
  after(async () => {
    await deck?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("is replaced at once when its worker is killed, and started again by the deck server when its supervisor is", async () => {
    const repo = await makeRepo(join(work, "steady"), nodeApp("s1"));
    assert.equal((await deck.push(repo, "steady")).code, 0);
    const first = await health();
    assert.ok(first.worker !== undefined && first.worker !== first.pid);
    await until("the standby worker", async () => (/standby worker \d+ is ready/.test(routerLog()) ? true : undefined));

    process.kill(first.worker, "SIGKILL");
    await serves("steady", /^s1 /);
    const second = await health();
    assert.equal(second.pid, first.pid, "the same supervisor");
    assert.notEqual(second.worker, first.worker, "a new worker serves");
    assert.match((await deck.ssh("ps:report steady")).stdout, /^Router: +serving the app$/m);

    process.kill(first.pid, "SIGKILL");
    const third = await until("a new router", async () => {
      const h = await health().catch(() => undefined);
      return h !== undefined && h.pid !== first.pid ? h : undefined;
    });
    assert.ok(!alive(first.pid));
    await serves("steady", /^s1 /);
    assert.match(deck.log(), /router: not running; starting it/);
    assert.equal(JSON.parse((await deck.ssh("ps:report steady --json")).stdout).router, "serving");
    assert.ok(third.worker !== undefined);
  });

  it("says it is not answering, and refuses config changes, scaling, maintenance and pushes with nothing changed", async () => {
    const repo = await makeRepo(join(work, "held"), nodeApp("h1"));
    assert.equal((await deck.push(repo, "held")).code, 0);
    assert.equal((await deck.ssh("config:set held GREETING=before")).code, 0);
    await serves("held", /^h1 before/);
    assert.deepEqual(await apiHealth(), { ok: true, router: "answering" });
    const runtime = new ProcessRuntime({ stateDir: join(deck.dataDir, "run", "procs") });
    const processesBefore = (await runtime.list("held")).map((p) => p.id).sort();
    const releasesBefore = (await deck.ssh("releases held --json")).stdout;

    // The supervisor is frozen, so the killed worker stays dead until it is let go again.
    const router: RouterHealth = await health();
    process.kill(router.pid, "SIGSTOP");
    try {
      process.kill(router.worker!, "SIGKILL");
      await until("the worker to die", async () => (alive(router.worker!) ? undefined : true));

      const report = await deck.ssh("ps:report held");
      assert.equal(report.code, 0, report.stderr);
      assert.match(report.stdout, /^Router: +not answering \(restarting\)$/m);
      assert.equal(JSON.parse((await deck.ssh("ps:report held --json")).stdout).router, "not_answering");
      assert.match((await deck.ssh("maintenance:report held")).stdout, /^Router: +not answering \(restarting\)$/m);
      assert.deepEqual(await apiHealth(), { ok: true, router: "not answering" });

      const set = await deck.ssh("config:set held GREETING=after");
      assert.notEqual(set.code, 0);
      const refusal = set.stderr.trim().split("\n").pop()!;
      assert.match(refusal, /the router is not answering .*was not deployed and the previous release keeps serving; config unchanged$/);
      assert.equal((await deck.ssh("config:get held GREETING")).stdout.trim(), "before");

      const scale = await deck.ssh("ps:scale held web=2");
      assert.notEqual(scale.code, 0);
      assert.match(scale.stderr, /the router is not answering .*formation unchanged/);

      const maintenance = await deck.ssh("maintenance:on held");
      assert.notEqual(maintenance.code, 0);
      assert.match(maintenance.stderr, /the router is not answering .*maintenance mode unchanged/);
      assert.equal(JSON.parse((await deck.ssh("maintenance:report held --json")).stdout).maintenance, false);

      await commitFiles(repo, nodeApp("h2"), "while the router is down");
      const push = await deck.push(repo, "held");
      assert.notEqual(push.code, 0, "the push is rejected");
      assert.match(push.stderr, /the router is not answering/);

      assert.deepEqual((await runtime.list("held")).map((p) => p.id).sort(), processesBefore, "no process of the refused changes is left running");
    } finally {
      process.kill(router.pid, "SIGCONT");
    }
    await serves("held", /^h1 before/);
    const releases = JSON.parse((await deck.ssh("releases held --json")).stdout) as { version: number; status: string }[];
    const earlier = JSON.parse(releasesBefore) as { version: number; status: string }[];
    assert.equal(releases.find((r) => r.status === "live")?.version, earlier.find((r) => r.status === "live")?.version, "the live release is the one before");
    assert.equal(JSON.parse((await deck.ssh("ps:report held --json")).stdout).formation.web, 1);

    // Once it answers again, the same change goes through.
    const again = await deck.ssh("config:set held GREETING=after");
    assert.equal(again.code, 0, again.stderr);
    await serves("held", /^h1 after/);
  });

  it("`deck down` stops the deck server, the router and the apps", async () => {
    const router = await health();
    const apps = await new ProcessRuntime({ stateDir: join(deck.dataDir, "run", "procs") }).list();
    assert.ok(apps.length > 0);
    const down = await run(join(ROOT, "bin", "deck"), ["down"], { env: deck.env(), cwd: deck.dir });
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /stopped the deck server, the router and all app processes/);
    assert.ok(!alive(router.pid) && !alive(router.worker!), "the router's processes are gone");
    await until("the deck server to exit", async () => (deck.server === null || deck.server.exitCode !== null || deck.server.signalCode !== null ? true : undefined), 5_000);
    for (const p of apps) if (p.pid) assert.ok(!alive(p.pid), `${p.id} stopped`);
    await assert.rejects(deck.get("steady", "/", { timeoutMs: 2_000 }));
  });
});
