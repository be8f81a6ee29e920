/**
 * The Stripe provider passes the BillingProvider contract against the fake Stripe (behaviour over
 * several calls) and against stripe-mock (every request checked against Stripe's published OpenAPI
 * spec); then every request it sent the fake is sent to stripe-mock too, so the requests only the
 * fake's state leads to (plan changes, invoice links, saved cards) are checked as well.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import http from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { startFakeStripe, type FakeStripe, type RecordedRequest } from "../../test/helpers/fake-stripe.ts";
import { describeBillingProviderContract } from "./provider.contract.ts";
import { createStripeProvider } from "./stripe-provider.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MOCK_KEY = "sk_test_123";

/** The stripe-mock binary scripts/stripe-mock.sh builds, or why it cannot run here (CI=true: a failure). */
function findStripeMock(): { bin: string } | { missing: string } {
  const found = spawnSync("bash", [join(ROOT, "scripts", "stripe-mock.sh"), "--path"], { encoding: "utf8" });
  const bin = found.stdout.trim();
  try {
    accessSync(bin, constants.X_OK);
    return { bin };
  } catch {
    const reason = `stripe-mock is not built (${bin || found.stderr.trim()}): run scripts/stripe-mock.sh`;
    if (process.env.CI === "true") throw new Error(`${reason}; required when CI=true`);
    return { missing: reason };
  }
}

interface StripeMock {
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts stripe-mock on loopback only, on ports it picks (port 0) and names in its first lines: no
 * window for another process to take a port between choosing and binding it. Its HTTPS listener is
 * given an address too, or it would take port 12112 on every interface.
 */
function startStripeMock(bin: string): Promise<StripeMock> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(bin, ["-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const timer = setTimeout(() => fail(new Error(`stripe-mock did not start within 30 s:\n${output}`)), 30_000);
    const stop = () => new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once("exit", () => done());
      child.kill("SIGTERM");
    });
    function fail(e: Error) {
      clearTimeout(timer);
      void stop();
      reject(e);
    }
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = output.match(/Listening for HTTP at address: 127\.0\.0\.1:(\d+)/);
      if (!m) return;
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      // Keep draining its request log so it never blocks on a full pipe.
      child.stdout?.resume();
      resolve({ port: Number(m[1]), stop });
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
    child.once("error", fail);
    child.once("exit", (code) => fail(new Error(`stripe-mock exited with ${code}:\n${output}`)));
  });
}

const located = findStripeMock();
const skipMock = "missing" in located ? located.missing : undefined;
if (skipMock) console.log(`# skipping the stripe-mock runs: ${skipMock}`);

let mock: Promise<StripeMock> | undefined;
const stripeMock = () => (mock ??= startStripeMock((located as { bin: string }).bin));
after(async () => {
  if (mock) await (await mock).stop();
});

/** What the fake was sent, kept for the replay to stripe-mock below. */
let sentToFake: RecordedRequest[] = [];

describeBillingProviderContract("fake Stripe", async () => {
  const fake: FakeStripe = await startFakeStripe();
  sentToFake = fake.requests;
  return {
    fake,
    connect: (options = {}) => createStripeProvider({ secretKey: options.secretKey ?? fake.secretKey, host: fake.host, port: fake.port, protocol: fake.protocol, maxNetworkRetries: options.maxNetworkRetries ?? 1 }),
    close: () => fake.close(),
  };
});

describeBillingProviderContract("stripe-mock", async () => {
  const { port } = await stripeMock();
  return {
    fake: null,
    connect: (options = {}) => createStripeProvider({ secretKey: options.secretKey ?? MOCK_KEY, host: "127.0.0.1", port, protocol: "http", maxNetworkRetries: options.maxNetworkRetries ?? 0 }),
    close: async () => {},
  };
}, { skip: skipMock });

function send(port: number, request: RecordedRequest): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1", port, method: request.method, path: request.path + (request.query ? `?${request.query}` : ""),
      headers: { Authorization: `Bearer ${MOCK_KEY}`, "Content-Type": "application/x-www-form-urlencoded", ...(request.idempotencyKey ? { "Idempotency-Key": request.idempotencyKey } : {}) },
    }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end(request.body);
  });
}

describe("requests deck sends Stripe", { skip: skipMock }, () => {
  it("are all ones Stripe's published API accepts, including those only the fake's state led to", async () => {
    const requests = sentToFake.filter((r) => r.status !== 401); // sent on purpose with a key Stripe refuses
    assert.ok(requests.length > 40, `the fake run sent ${requests.length} requests`);
    const { port } = await stripeMock();
    const refused: string[] = [];
    for (const request of requests) {
      const answer = await send(port, request);
      if (answer.status >= 400) refused.push(`${request.method} ${request.path}?${request.query} ${request.body}\n  → ${answer.status} ${answer.body.slice(0, 400)}`);
    }
    assert.deepEqual(refused, []);
    const kinds = new Set(requests.map((r) => `${r.method} ${r.path.replace(/\/(cus|sub|in|seti)_[A-Za-z0-9_]+/, "/:id")}`));
    for (const kind of ["POST /v1/subscriptions/:id", "POST /v1/invoices/:id", "GET /v1/setup_intents/:id", "POST /v1/customers/:id"]) assert.ok(kinds.has(kind), `the fake run sent ${kind}`);
  });
});
