import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isHostName, normalizeHostName } from "./index.ts";

describe("host names", () => {
  it("accepts the names domains:add and the router's certificates use", () => {
    for (const name of ["www.example.com", "shop.example", "xn--bcher-kva.example", `${"a".repeat(63)}.example`, "1shop.example.com", "a-b.c-d.example", "shop.localhost"]) {
      assert.equal(isHostName(name), true, name);
    }
    assert.equal(isHostName("*.apps.example.com", { wildcard: true }), true);
    assert.equal(isHostName("*.localhost", { wildcard: true }), true);
  });

  it("refuses what one side would take and the other refuse", () => {
    const bad = [
      "shop.example-", "-x.example", "x-.example", "x_y.example", "bücher.example", "10.0.0.1", "[::1]", "shop.example:443",
      `${"a".repeat(64)}.example`, "localhost", "", "a..b", ".example.com", "Shop.Example", "shop.example.", `${"a.".repeat(126)}example`,
      "*.shop.example", "x.*.example", "bad host!.example",
    ];
    for (const name of bad) assert.equal(isHostName(name), false, name);
    assert.equal(isHostName("*.shop.example-", { wildcard: true }), false);
    assert.equal(isHostName("*", { wildcard: true }), false);
  });

  it("reads names as users type them", () => {
    assert.equal(normalizeHostName("WWW.Shop.Example."), "www.shop.example");
  });
});
