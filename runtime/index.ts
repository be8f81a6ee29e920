export { ProcessRuntime, processId, type ProcessRuntimeOptions, type ProcessRecord } from "./process-runtime.ts";
export { runOnce, type RunOnceSpec, type RunOnceResult } from "./run-once.ts";
export { findFreePort } from "./free-port.ts";
export { DockerRuntime, scopeFor, containerName, CONTAINER_PORT, type DockerRuntimeOptions, type DockerLimits } from "./docker-runtime.ts";
export { createDockerClient, type DockerClient, type DockerClientOptions } from "./docker-client.ts";
export { formatProtection, type Protection } from "./protections.ts";
