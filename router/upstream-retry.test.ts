import assert from "node:assert/strict";
import test from "node:test";
import { mayRetry, type FailedAttempt } from "./upstream-retry.ts";

const first: FailedAttempt = { retries: 0, answered: false, errorCode: undefined, reused: false, bytesReceived: 0, method: "GET", hasBody: false };

test("a connection that was never made is tried again once, for any method and body", () => {
  for (const code of ["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN"]) {
    assert.equal(mayRetry({ ...first, errorCode: code, method: "POST", hasBody: true }), true, code);
  }
  assert.equal(mayRetry({ ...first, errorCode: "ECONNREFUSED", retries: 1 }), false, "never a second retry");
  assert.equal(mayRetry({ ...first, errorCode: "ECONNREFUSED", answered: true }), false, "never once answered");
});

test("a reused connection closed before any answer is tried again only for a body-less idempotent request", () => {
  const closed = { ...first, reused: true, errorCode: "ECONNRESET" };
  for (const method of ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]) assert.equal(mayRetry({ ...closed, method }), true, method);
  assert.equal(mayRetry({ ...closed, method: "POST" }), false, "POST");
  assert.equal(mayRetry({ ...closed, method: "PATCH" }), false, "PATCH");
  assert.equal(mayRetry({ ...closed, hasBody: true, method: "PUT" }), false, "a body was consumed");
  assert.equal(mayRetry({ ...closed, bytesReceived: 12 }), false, "the app began to answer");
  assert.equal(mayRetry({ ...closed, reused: false }), false, "a fresh connection the app closed saw the request");
  assert.equal(mayRetry({ ...closed, retries: 1 }), false, "at most one retry");
});
