/** Uptime: active probes of every running app through deck's router, daily uptime and incidents. */
export { UptimeProber, UPTIME_INTERVAL_MS, UPTIME_TIMEOUT_MS, type UptimeChange, type UptimeProberOptions } from "./prober.ts";
export { probeApp, type ProbeRequest } from "./http-probe.ts";
export { CHECKS_TO_CHANGE, stepProbeState, type CheckResult } from "./probe-state.ts";
