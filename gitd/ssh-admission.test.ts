import assert from "node:assert/strict";
import net from "node:net";
import { after, describe, it } from "node:test";
import { PreAuthGate, TOO_MANY_LINE } from "./ssh-admission.ts";

/** A TCP client that records what the server sent until the server closed the connection. */
function connect(port: number, localAddress = "127.0.0.1") {
  const socket = net.connect({ port, host: "127.0.0.1", localAddress });
  let received = "";
  socket.on("data", (c) => (received += c));
  socket.on("error", () => undefined);
  const closed = new Promise<string>((resolve) => socket.on("close", () => resolve(received)));
  const opened = new Promise<void>((resolve) => socket.on("connect", () => resolve()));
  return { socket, closed, opened, get received() { return received; } };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 10));
}

describe("SSH connections before authentication", { timeout: 30_000 }, () => {
  const logs: string[] = [];
  const gate = new PreAuthGate({ authTimeoutMs: 1000, maxPerAddress: 2, maxTotal: 3 }, (l) => logs.push(l));
  const admitted: net.Socket[] = [];
  // Stands in for ssh2: greets every admitted connection like an SSH server does.
  const server = net.createServer((s) => {
    if (!gate.admit(s)) return;
    admitted.push(s);
    s.write("SSH-2.0-deck\r\n");
  });
  const ready = new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)));
  after(() => {
    for (const s of admitted) s.destroy();
    server.close();
  });

  it("closes an idle connection after the authentication timeout", async () => {
    const c = connect(await ready);
    assert.equal(await c.closed, "SSH-2.0-deck\r\n");
    // The server's side of the socket is released as it closes.
    await until(() => gate.unauthenticated === 0);
  });

  it("closes a client's connection over its cap at once, logs it once, and lets it in again when one authenticates", async () => {
    const port = await ready;
    const a = connect(port);
    const b = connect(port);
    await Promise.all([a.opened, b.opened]);
    await until(() => gate.unauthenticated === 2);
    const third = connect(port);
    const fourth = connect(port);
    assert.equal(await third.closed, TOO_MANY_LINE);
    assert.equal(await fourth.closed, TOO_MANY_LINE);
    assert.equal(logs.filter((l) => l.includes("DECK_SSH_MAX_UNAUTHENTICATED_PER_IP")).length, 1, logs.join("\n"));
    assert.match(logs[0], /^ssh: 127\.0\.0\.1 holds 2 connections that have not authenticated/);
    // The server side of `a` authenticates: it no longer counts and is not closed by the timeout.
    const first = admitted.find((s) => s.remotePort === a.socket.localPort)!;
    gate.authenticated(first.remoteAddress, first.remotePort);
    const fifth = connect(port);
    await fifth.opened;
    await until(() => fifth.received !== "");
    assert.equal(fifth.received, "SSH-2.0-deck\r\n");
    await Promise.all([b.closed, fifth.closed]);
    assert.equal(a.socket.destroyed, false, "an authenticated connection stays open past the timeout");
    a.socket.destroy();
  });

  it("caps unauthenticated connections from all clients together", async () => {
    const port = await ready;
    // 127.0.0.2 and 127.0.0.3 are other client addresses on loopback.
    const clients = [connect(port), connect(port, "127.0.0.2"), connect(port, "127.0.0.2")];
    await until(() => gate.unauthenticated === 3);
    const over = connect(port, "127.0.0.3");
    assert.equal(await over.closed, TOO_MANY_LINE);
    assert.ok(logs.some((l) => /^ssh: 3 connections are waiting to authenticate \(DECK_SSH_MAX_UNAUTHENTICATED\)/.test(l)), logs.join("\n"));
    await Promise.all(clients.map((c) => c.closed));
  });
});
