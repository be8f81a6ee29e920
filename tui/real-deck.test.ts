import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import React from "react";
import { render } from "ink-testing-library";
import { Deck } from "../test/helpers/deck.ts";
import { createApiClient } from "./api-client.ts";
import { App } from "./app.ts";
import { waitForFrame } from "./fake-api.ts";

// The dashboard against a real deck: the shapes it reads are deck's own, not a copy of them.
let deck: Deck;
before(async () => {
  deck = await Deck.start({ backend: { name: "embedded" } });
});
after(async () => {
  await deck?.stop();
});

test("a real deck's apps show in the table, and its overview renders", async (t) => {
  const url = `http://127.0.0.1:${deck.ports.api}`;
  for (const name of ["tui-shop", "tui-blog"]) {
    const res = await fetch(`${url}/api/v1/apps`, { method: "POST", headers: { authorization: `Bearer ${deck.token}`, "content-type": "application/json" }, body: JSON.stringify({ name }) });
    assert.equal(res.status, 201, await res.text());
  }
  const ui = render(React.createElement(App, { client: createApiClient({ url, token: deck.token }), color: false, start: "apps" }));
  t.after(() => ui.unmount());
  const f = await waitForFrame(ui.lastFrame, (f) => f.includes("tui-shop") && f.includes("tui-blog"), 15_000);
  assert.match(f, /2 of 2 apps/);
  assert.doesNotMatch(f, /not found|refused|answered/);
  ui.stdin.write(":o\r");
  const o = await waitForFrame(ui.lastFrame, (f) => f.includes("requests "), 15_000);
  // Either this deck serves /health (services and the build queue) or it says it does not.
  assert.ok(/health: not available \(404\)/.test(o) || /builds\s+\d+ waiting, \d+ running/.test(o), o);
});
