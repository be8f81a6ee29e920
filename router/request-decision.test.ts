import assert from "node:assert/strict";
import test from "node:test";
import type { RouteSettings } from "../core/index.ts";
import { decide, type RequestFacts, type RouterPolicy } from "./request-decision.ts";

const policy: RouterPolicy = { limits: { rateLimitRps: 0, rateLimitBurst: 2000, maxBodyBytes: 1000 }, httpsPort: 8443 };
const live = [{ address: "127.0.0.1:3001", host: "127.0.0.1", port: 3001 }];

function facts(settings: RouteSettings = {}, more: Partial<RequestFacts> = {}): RequestFacts {
  return {
    entry: { app: "shop", upstreams: live, settings }, host: "shop.localhost:8080", url: "/cart?x=1", secure: false,
    client: "10.0.0.7", contentLength: -1, retryAfter: undefined, upgrade: false, closing: false, ...more,
  };
}

test("an unknown host gets 404 naming it; a request without one says so", () => {
  assert.deepEqual(decide(facts({}, { entry: undefined }), policy), {
    kind: "answer", status: 404, reason: "unknown_host", body: 'no app is configured for host "shop.localhost:8080"\n', headers: {}, closeConnection: false,
  });
  assert.deepEqual(decide(facts({}, { entry: undefined, host: undefined }), policy), {
    kind: "answer", status: 404, reason: "unknown_host", body: "no Host header in the request\n", headers: {}, closeConnection: false,
  });
});

test("redirect-https sends plain requests, handshakes included, to the HTTPS port; HTTPS requests go on", () => {
  const redirect = {
    kind: "answer", status: 308, reason: "redirect_https", body: "moved to https://shop.localhost:8443/cart?x=1\n",
    headers: { Location: "https://shop.localhost:8443/cart?x=1" }, closeConnection: false,
  };
  assert.deepEqual(decide(facts({ redirectHttps: true }), policy), redirect);
  assert.deepEqual(decide(facts({ redirectHttps: true }, { upgrade: true }), policy), redirect);
  assert.deepEqual(decide(facts({ redirectHttps: true }, { host: "[::1]:8080", url: undefined }), { ...policy, httpsPort: 443 }), {
    ...redirect, body: "moved to https://[::1]/\n", headers: { Location: "https://[::1]/" },
  });
  assert.deepEqual(decide(facts({ redirectHttps: true }, { secure: true }), policy), { kind: "forward", maxBody: 1000 });
});

test("maintenance answers 503 with Retry-After before the rate limit is asked", () => {
  assert.deepEqual(decide(facts({ maintenance: true, rateLimitRps: 5 }), policy), {
    kind: "answer", status: 503, reason: "maintenance", body: "shop is down for maintenance; please try again later\n", headers: { "Retry-After": 60 }, closeConnection: false,
  });
});

test("the rate limiter is asked with the app's rate and burst, or the server's; its answer decides", () => {
  assert.deepEqual(decide(facts({ rateLimitRps: 2.5 }), policy), { kind: "ask-rate-limiter", app: "shop", client: "10.0.0.7", rps: 2.5, burst: 5 });
  assert.deepEqual(decide(facts({ rateLimitRps: 2, rateLimitBurst: 9 }), policy), { kind: "ask-rate-limiter", app: "shop", client: "10.0.0.7", rps: 2, burst: 9 });
  const limited = { ...policy, limits: { ...policy.limits, rateLimitRps: 100, rateLimitBurst: 7 } };
  assert.deepEqual(decide(facts(), limited), { kind: "ask-rate-limiter", app: "shop", client: "10.0.0.7", rps: 100, burst: 7 });
  assert.deepEqual(decide(facts({ rateLimitRps: 0 }), limited), { kind: "forward", maxBody: 1000 });
  assert.deepEqual(decide(facts({}, { retryAfter: 0 }), limited), { kind: "forward", maxBody: 1000 });
  assert.deepEqual(decide(facts({}, { retryAfter: 3 }), limited), {
    kind: "answer", status: 429, reason: "rate_limited", body: "too many requests to shop from 10.0.0.7; retry after 3s\n", headers: { "Retry-After": 3 }, closeConnection: false,
  });
  assert.deepEqual(decide(facts({}, { retryAfter: 3, upgrade: true }), limited), {
    kind: "answer", status: 429, reason: "rate_limited", body: "too many requests to shop; retry after 3s\n", headers: { "Retry-After": 3 }, closeConnection: false,
  });
});

test("a declared body over the app's limit (or the server's) gets 413 and closes the connection", () => {
  assert.deepEqual(decide(facts({}, { contentLength: 1001 }), policy), {
    kind: "answer", status: 413, reason: "body_too_large", body: "request body of 1001 bytes is larger than the 1000 bytes shop accepts\n", headers: {}, closeConnection: true,
  });
  assert.deepEqual(decide(facts({ maxBodyBytes: 5000 }, { contentLength: 1001 }), policy), { kind: "forward", maxBody: 5000 });
  assert.deepEqual(decide(facts({ maxBodyBytes: 0 }, { contentLength: 10 ** 12 }), policy), { kind: "forward", maxBody: 0 });
});

test("an app without processes holds requests while it starts, never handshakes or a closing router's requests", () => {
  const starting = { entry: { app: "shop", upstreams: [], settings: { paused: true } } };
  const noRelease = { kind: "answer", status: 503, reason: "no_release", body: 'app "shop" has no running release\n', headers: {}, closeConnection: false };
  assert.deepEqual(decide(facts({}, starting), policy), { kind: "hold" });
  assert.deepEqual(decide(facts({}, { ...starting, upgrade: true }), policy), noRelease);
  assert.deepEqual(decide(facts({}, { ...starting, closing: true }), policy), noRelease);
  assert.deepEqual(decide(facts({}, { entry: { app: "shop", upstreams: [], settings: {} } }), policy), noRelease);
  // A body over the limit is refused before anything waits for the start.
  assert.equal(decide(facts({}, { ...starting, contentLength: 5000 }), policy).kind, "answer");
});
