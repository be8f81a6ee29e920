import assert from "node:assert/strict";
import { createServer, type AddressInfo, type Server } from "node:net";
import { describe, it } from "node:test";
import { findFreePort, portFreeEverywhere } from "./free-port.ts";

function listen(port: number, host: string): Promise<Server> {
  const server = createServer();
  return new Promise((resolve, reject) => server.once("error", reject).listen(port, host, () => resolve(server)));
}

describe("findFreePort", () => {
  // The kernel repeats ports for listen(0) often enough that 400 draws without the reservation
  // would almost surely (>99.9% here) contain a duplicate.
  it("hands out a port that can be bound on every address, and not the same one again while it is reserved", async () => {
    const ports: number[] = [];
    for (let i = 0; i < 400; i++) ports.push(await findFreePort());
    assert.equal(new Set(ports).size, ports.length);
    const server = await listen(ports[0], "0.0.0.0");
    await new Promise((resolve) => server.close(resolve));
  });

  it("counts a port held on another address as taken, since an app listening on 0.0.0.0 could not bind it", async () => {
    const other = await listen(0, "127.0.0.2");
    const port = (other.address() as AddressInfo).port;
    try {
      assert.equal(await portFreeEverywhere(port, "127.0.0.1"), false);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
    assert.equal(await portFreeEverywhere(port, "127.0.0.1"), true);
    // Node's listen(PORT) binds "::" where the machine has IPv6: a port held on ::1 only is taken too.
    const v6 = await listen(0, "::1").catch(() => null);
    if (v6 !== null) {
      try {
        assert.equal(await portFreeEverywhere((v6.address() as AddressInfo).port, "127.0.0.1"), false);
      } finally {
        await new Promise((resolve) => v6.close(resolve));
      }
    }
  });
});
