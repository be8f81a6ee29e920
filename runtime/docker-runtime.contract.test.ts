/** DockerRuntime passes the Runtime contract on a real engine: one hardened container per app process, found again by label. */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBaseImage, dockerSkipReason } from "../test/helpers/base-image.ts";
import { createDockerClient } from "./docker-client.ts";
import { removeDockerFirewall } from "./docker-network.ts";
import { DockerRuntime } from "./docker-runtime.ts";
import { describeRuntimeContract } from "./runtime.contract.ts";

describeRuntimeContract("DockerRuntime", async () => {
  const client = createDockerClient();
  // Its own scope and firewall table: a real deck on this engine, or another test, is left alone.
  const scope = `test-${randomBytes(6).toString("hex")}`;
  const firewallTable = `deck_test_${randomBytes(4).toString("hex")}`;
  const root = mkdtempSync(join(tmpdir(), "deck-docker-contract-"));
  const stateDir = join(root, "state");
  const cwd = join(root, "app");
  mkdirSync(cwd);
  const base = await buildBaseImage();
  const open = () => new DockerRuntime({ client, stateDir, scope, firewallTable });
  let runtime = open();
  return {
    runtime,
    async reopen() {
      // The deck server that stops: its log followers end, its containers keep running.
      await runtime.close();
      runtime = open();
      return runtime;
    },
    node: "node",
    cwd,
    env: {},
    image: base.tag,
    logDir: join(root, "logs"),
    limitsMemory: true,
    async close() {
      await runtime.close();
      for (const c of await client.listContainers([`deck.scope=${scope}`])) await client.removeContainer(c.id);
      for (const n of await client.listNetworks([`deck.scope=${scope}`])) await client.removeNetwork(n.id);
      await removeDockerFirewall(firewallTable);
      await base.remove();
      rmSync(root, { recursive: true, force: true });
    },
  };
}, { skip: dockerSkipReason() });
