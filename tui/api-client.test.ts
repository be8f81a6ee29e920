import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { ApiError, createApiClient, TOKEN_REFUSED, type DeckEvent } from "./api-client.ts";
import { parseEventStream, type ServerEvent } from "./event-stream-parser.ts";

test("the event stream parser joins data lines, skips comments, and survives chunks cut anywhere", () => {
  const text = ": deck events\r\n\r\nevent: deploy\r\ndata: {\"app\":\"shop\",\r\ndata: \"to\":\"live\"}\r\n\r\n: keep-alive\n\nevent:alert\ndata:x\rdata: y\r\rdata: no event name\n\nevent: empty\n\n";
  const expected: ServerEvent[] = [
    { event: "deploy", data: "{\"app\":\"shop\",\n\"to\":\"live\"}" },
    { event: "alert", data: "x\ny" },
    { event: "message", data: "no event name" },
  ];
  for (let cut = 0; cut <= text.length; cut++) {
    const got: ServerEvent[] = [];
    const push = parseEventStream((e) => got.push(e));
    push(text.slice(0, cut));
    push(text.slice(cut));
    assert.deepEqual(got, expected, `cut at ${cut}`);
  }
});

async function serve(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

test("errors come back as one line: a refused token, a forbidden call, a deck that is down", async (t) => {
  const api = await serve((req, res) => {
    res.writeHead(req.url?.startsWith("/api/v1/apps") ? 401 : 403, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "forbidden", message: "only platform admins may\nsee the host", requestId: "r" } }));
  });
  t.after(() => api.close());
  const client = createApiClient({ url: api.url, token: "t" });
  await assert.rejects(client.apps(), (e: ApiError) => e.code === "unauthorized" && e.message === TOKEN_REFUSED);
  await assert.rejects(client.health(), (e: ApiError) => e.code === "forbidden" && e.message === "not allowed: only platform admins may");
  const gone = await serve(() => undefined);
  await gone.close();
  const down = createApiClient({ url: gone.url, token: "t" });
  await assert.rejects(down.apps(), (e: ApiError) => e.code === "unreachable" && e.message === `cannot reach deck at ${gone.url}: ECONNREFUSED`);
});

test("health is null on a deck without the health route, and sends the bearer token", async (t) => {
  const seen: string[] = [];
  const api = await serve((req, res) => {
    seen.push(`${req.url} ${req.headers.authorization}`);
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "not_found", message: "no route for GET /api/v1/health", requestId: "r" } }));
  });
  t.after(() => api.close());
  assert.equal(await createApiClient({ url: api.url + "/", token: "abc" }).health(), null);
  assert.deepEqual(seen, ["/api/v1/health/platform Bearer abc"]);
});

test("the event stream reconnects after the server ends it, and stops when aborted", async (t) => {
  let connections = 0;
  const api = await serve((_req, res) => {
    connections += 1;
    res.writeHead(200, { "content-type": "text/event-stream" });
    // Each connection sends one event and hangs up, as a restarting deck would.
    res.end(`event: deploy\ndata: {"app":"shop","n":${connections}}\n\n`);
  });
  t.after(() => api.close());
  const got: DeckEvent[] = [];
  const problems: string[] = [];
  const stop = new AbortController();
  const done = createApiClient({ url: api.url, token: "t" }).events((e) => {
    got.push(e);
    if (got.length === 2) stop.abort();
  }, stop.signal, (e) => problems.push(e.message));
  await done;
  assert.deepEqual(got, [
    { type: "deploy", app: "shop", data: { app: "shop", n: 1 } },
    { type: "deploy", app: "shop", data: { app: "shop", n: 2 } },
  ]);
  assert.deepEqual(problems, ["the event stream ended; reconnecting"]);
  assert.equal(connections, 2);
});
