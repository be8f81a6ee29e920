export { ProcessRuntime, processId, type ProcessRuntimeOptions, type ProcessRecord } from "./process-runtime.ts";
export { runOnce, type RunOnceSpec, type RunOnceResult } from "./run-once.ts";
export { findFreePort } from "./free-port.ts";
