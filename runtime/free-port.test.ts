import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { findFreePort } from "./free-port.ts";

describe("findFreePort", () => {
  // The kernel repeats ports for listen(0) often enough that 400 draws without the reservation
  // would almost surely (>99.9% here) contain a duplicate.
  it("hands out a port that can be bound, and not the same one again while it is reserved", async () => {
    const ports: number[] = [];
    for (let i = 0; i < 400; i++) ports.push(await findFreePort());
    assert.equal(new Set(ports).size, ports.length);
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(ports[0], "127.0.0.1", resolve));
    await new Promise((resolve) => server.close(resolve));
  });
});
