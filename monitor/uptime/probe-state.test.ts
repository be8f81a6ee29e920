import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { UptimeProbeState } from "../../store/queries/uptime.ts";
import { stepProbeState, UP, type CheckResult } from "./probe-state.ts";

const ok: CheckResult = { ok: true, status: 200 };
const fail = (cause: string): CheckResult => ({ ok: false, cause });

/** Runs checks at t1, t2, … from `start`; returns the states and the incident changes. */
function run(checks: CheckResult[], start: UptimeProbeState = UP) {
  let s = start;
  const incidents: unknown[] = [];
  const states: string[] = [];
  checks.forEach((c, i) => {
    const step = stepProbeState(s, c, `t${i + 1}`);
    if (step.next) s = step.next;
    if (step.incident) incidents.push(step.incident);
    states.push(s.state);
  });
  return { states, incidents, last: s };
}

describe("when an app counts as down or up", () => {
  it("stays up on good checks without writing anything", () => {
    assert.deepEqual(stepProbeState(UP, ok, "t1"), { next: null, incident: null });
  });

  it("opens an incident at the first of two failed checks, with the latest cause", () => {
    const r = run([ok, fail("timed out after 5 s"), fail("HTTP 502")]);
    assert.deepEqual(r.states, ["up", "failing", "down"]);
    assert.deepEqual(r.incidents, [{ kind: "open", startedAt: "t2", cause: "HTTP 502" }]);
  });

  it("forgets a single failed check", () => {
    const r = run([fail("HTTP 502"), ok, fail("HTTP 502"), ok]);
    assert.deepEqual(r.states, ["failing", "up", "failing", "up"]);
    assert.deepEqual(r.incidents, []);
  });

  it("ends the incident at the first of two good checks, and one good check between failures does not", () => {
    const r = run([fail("connection refused"), fail("connection refused"), ok, fail("HTTP 500"), ok, ok, ok]);
    assert.deepEqual(r.states, ["failing", "down", "recovering", "down", "recovering", "up", "up"]);
    assert.deepEqual(r.incidents, [{ kind: "open", startedAt: "t1", cause: "connection refused" }, { kind: "close", endedAt: "t5" }]);
  });

  it("keeps the incident's cause while down, whatever later checks fail with", () => {
    const r = run([fail("HTTP 502"), fail("HTTP 502"), fail("timed out after 5 s"), ok]);
    assert.equal(r.last.state, "recovering");
    assert.equal(r.last.cause, "HTTP 502");
  });
});
