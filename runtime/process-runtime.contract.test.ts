/** ProcessRuntime passes the Runtime contract: app processes under detached supervisors, found again through their state files. */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProcessRuntime } from "./process-runtime.ts";
import { describeRuntimeContract } from "./runtime.contract.ts";

describeRuntimeContract("ProcessRuntime", async () => {
  const root = mkdtempSync(join(tmpdir(), "deck-process-contract-"));
  const stateDir = join(root, "state");
  const cwd = join(root, "app");
  mkdirSync(cwd);
  let runtime = new ProcessRuntime({ stateDir });
  return {
    runtime,
    async reopen() {
      runtime = new ProcessRuntime({ stateDir });
      return runtime;
    },
    node: JSON.stringify(process.execPath),
    cwd,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    logDir: join(root, "logs"),
    // Without a sandbox (as here) a process runs in no cgroup of its own.
    limitsMemory: false,
    async close() {
      await runtime.stopAll(0);
      rmSync(root, { recursive: true, force: true });
    },
  };
});
