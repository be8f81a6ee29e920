import assert from "node:assert/strict";
import http from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { databaseBackends } from "./helpers/database.ts";
import { commitFiles, Deck, makeRepo, nodeApp } from "./helpers/deck.ts";

const backends = await databaseBackends();

for (const backend of backends) {
  describe(`zero-downtime deploys (${backend.name} PostgreSQL)`, () => {
    let deck: Deck;
    let work: string;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), "deck-work-"));
      deck = await Deck.start({ backend });
    });
    after(async () => {
      await deck?.stop();
      await rm(work, { recursive: true, force: true });
      if (backend.name === "external") await backend.drop();
    });

    it("serves every request during 5 consecutive deploys, each from the old or the new release", async () => {
      const repo = await makeRepo(join(work, "zd"), nodeApp("r0", { slowStartMs: 300 }));
      assert.equal((await deck.push(repo, "zd")).code, 0);

      // Steady load: 4 clients with keep-alive plus slow requests that span the switches.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
      const seen = new Map<string, number>();
      const failures: string[] = [];
      let deployed = 0;
      let stop = false;
      const client = async (path: string) => {
        while (!stop) {
          try {
            const r = await deck.get("zd", path, { agent, timeoutMs: 20_000 });
            const version = /^(r\d)/.exec(r.body)?.[1];
            if (r.status !== 200 || !version) failures.push(`${r.status} ${r.body.slice(0, 80)}`);
            else {
              const n = Number(version.slice(1));
              // Every answer comes from the release live before or after the deploy in progress.
              if (n < deployed || n > deployed + 1) failures.push(`answer from ${version} while deploying r${deployed + 1}`);
              seen.set(version, (seen.get(version) ?? 0) + 1);
            }
          } catch (e) {
            failures.push((e as Error).message);
          }
        }
      };
      const clients = [client("/"), client("/"), client("/"), client("/slow")];
      for (let i = 1; i <= 5; i++) {
        await commitFiles(repo, nodeApp(`r${i}`, { slowStartMs: 300 }), `release ${i}`);
        const push = await deck.push(repo, "zd");
        assert.equal(push.code, 0, push.stderr);
        deployed = i;
        await new Promise((r) => setTimeout(r, 300));
      }
      stop = true;
      await Promise.all(clients);
      agent.destroy();
      const total = [...seen.values()].reduce((a, b) => a + b, 0);
      assert.deepEqual(failures, [], `${failures.length} failed of ${total + failures.length}`);
      assert.ok(total > 100, `only ${total} requests were made`);
      for (let i = 0; i <= 5; i++) assert.ok(seen.has(`r${i}`), `no answer from r${i}: ${JSON.stringify([...seen])}`);
      assert.match((await deck.get("zd")).body, /^r5 /);
    });
  });
}
