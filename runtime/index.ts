export { ProcessRuntime, processId, type ProcessRuntimeOptions, type ProcessRecord } from "./process-runtime.ts";
export { runOnce, type RunOnceSpec, type RunOnceResult } from "./run-once.ts";
export { findFreePort } from "./free-port.ts";
export { DockerRuntime, scopeFor, containerName, CONTAINER_PORT, type DockerRuntimeOptions, type DockerLimits } from "./docker-runtime.ts";
export { FALLBACK_USER, DEFAULT_PIDS_LIMIT } from "./docker-container.ts";
export {
  applyDockerFirewall, dockerFirewallStatus, removeDockerFirewall, buildNetworkBody, appNetworkName, firewallTableFor, BRIDGE_PREFIX, DEFAULT_FIREWALL_TABLE, type NetworkCreateBody,
} from "./docker-network.ts";
export { createDockerClient, type DockerClient, type DockerClientOptions } from "./docker-client.ts";
export { formatProtection, type Protection } from "./protections.ts";
export { probeSandbox, loadSandboxHost, sandboxArgv, sandboxEnv, SANDBOX_HOME, type SandboxHost, type SandboxSpec } from "./sandbox.ts";
export { createCgroup, probeCgroupControllers, detectCgroupVersion, type Cgroup, type CgroupLimits, type CgroupVersion } from "./cgroups.ts";
export { DEFAULT_APP_MEMORY, DEFAULT_APP_PIDS, type LaunchOptions } from "./launch.ts";
