/**
 * `deck down` stops what a deck started under either runtime, whatever DECK_RUNTIME says when it runs
 * (an admin may have switched runtimes since), and nothing of another deck sharing the Docker engine.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ProcessSpec } from "../core/interfaces.ts";
import { createDockerClient, DockerRuntime, findFreePort, ProcessRuntime, scopeFor } from "../runtime/index.ts";
import { removeDockerFirewall } from "../runtime/docker-network.ts";
import { buildBaseImage, dockerSkipReason, type BaseImage } from "../test/helpers/base-image.ts";
import { ROOT, run } from "../test/helpers/deck.ts";

const DECK = join(ROOT, "bin", "deck");

/** A web app that answers with its name, run with `node -e "$APP_JS"` (the test base image has node). */
const APP_JS = 'require("http").createServer((q, s) => s.end(process.env.NAME)).listen(Number(process.env.PORT));';

async function get(port: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
    return await res.text();
  } catch {
    return undefined;
  }
}

async function waitForAnswer(port: number): Promise<string> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
    const body = await get(port);
    if (body !== undefined) return body;
  }
  throw new Error(`nothing answered on port ${port}`);
}

const skip = dockerSkipReason();

describe("deck down", { skip }, () => {
  const client = createDockerClient();
  // The engine's firewall table of these tests, not a real deck's.
  const firewallTable = `deck_test_${randomBytes(4).toString("hex")}`;
  const scopes: string[] = [];
  let base: BaseImage;
  let root: string;

  /** A data dir of a deck of its own; its containers are removed after the tests whatever happened. */
  function deckDir(name: string): { dataDir: string; scope: string } {
    const dataDir = join(root, name, "data");
    mkdirSync(dataDir, { recursive: true });
    scopes.push(scopeFor(dataDir));
    return { dataDir, scope: scopeFor(dataDir) };
  }

  function down(dataDir: string, runtime: "process" | "docker") {
    const env: NodeJS.ProcessEnv = { ...process.env, DECK_DATA_DIR: dataDir, DECK_RUNTIME: runtime, DECK_STOP_GRACE: "2" };
    delete env.DECK_CONFIG;
    return run(DECK, ["down"], { cwd: root, env, timeoutMs: 120_000 });
  }

  async function webSpec(name: string, dataDir: string, command: string, image?: string): Promise<ProcessSpec> {
    return {
      app: "shop", release: 1, generation: 7, type: "web", index: 1, command, cwd: root, env: { APP_JS, NAME: name, PATH: process.env.PATH ?? "/usr/bin:/bin" },
      port: await findFreePort(), logFile: join(dataDir, "logs", "shop.log"), ...(image ? { image } : {}),
    };
  }

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "deck-down-"));
    base = await buildBaseImage();
  });

  after(async () => {
    for (const scope of scopes) {
      for (const c of await client.listContainers([`deck.scope=${scope}`]).catch(() => [])) await client.removeContainer(c.id);
      for (const n of await client.listNetworks([`deck.scope=${scope}`]).catch(() => [])) await client.removeNetwork(n.id);
    }
    await removeDockerFirewall(firewallTable);
    await base?.remove();
    rmSync(root, { recursive: true, force: true });
  });

  it("stops the containers of a deck now set to DECK_RUNTIME=process, and not those of another deck on the engine", async () => {
    const mine = deckDir("mine");
    const theirs = deckDir("theirs");
    const started: { port: number }[] = [];
    for (const [name, deck] of [["mine", mine], ["theirs", theirs]] as const) {
      const runtime = new DockerRuntime({ client, stateDir: join(deck.dataDir, "run", "docker"), scope: deck.scope, firewallTable });
      const spec = await webSpec(name, deck.dataDir, 'node -e "$APP_JS"', base.tag);
      await runtime.start(spec);
      await runtime.close();
      started.push({ port: spec.port! });
    }
    const [minePort, theirsPort] = started.map((s) => s.port);
    assert.equal(await waitForAnswer(minePort), "mine");
    assert.equal(await waitForAnswer(theirsPort), "theirs");

    const r = await down(mine.dataDir, "process");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await client.listContainers([`deck.scope=${mine.scope}`]), [], "no container of this deck is left");
    assert.deepEqual(await client.listNetworks([`deck.scope=${mine.scope}`]), [], "nor its app network");
    assert.equal(await get(minePort), undefined, "its app no longer answers");
    assert.equal(await get(theirsPort), "theirs", "the other deck's app with the same name and process keeps serving");
  });

  it("stops the supervised processes of a deck now set to DECK_RUNTIME=docker", async () => {
    const deck = deckDir("switched");
    const runtime = new ProcessRuntime({ stateDir: join(deck.dataDir, "run", "procs") });
    const spec = await webSpec("switched", deck.dataDir, `"${process.execPath}" -e "$APP_JS"`);
    await runtime.start(spec);
    assert.equal(await waitForAnswer(spec.port!), "switched");

    const r = await down(deck.dataDir, "docker");
    try {
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await runtime.list(), [], "no supervised process of this deck is left");
      assert.equal(await get(spec.port!), undefined, "its app no longer answers");
    } finally {
      await runtime.stopAll(0);
    }
  });
});
