/**
 * The `RouterControl` contract (core/interfaces.ts): one suite that every way the deck server reaches its
 * router passes, registered by router-control.contract.test.ts against a real router process. It checks
 * each call by what a client of the router sees once the call resolves: which app answers for a host,
 * the 404 and 503 of a host without a live route, the certificate served for a name over HTTPS, the
 * answer to an ACME HTTP-01 challenge.
 */
import assert from "node:assert/strict";
import http from "node:http";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { isDeckError, type RouterControl } from "../core/index.ts";
import { send, startUpstream, waitFor, type TestUpstream } from "./test-support.ts";
import { createSelfSignedCertificate } from "./tls-server.ts";

export interface RouterControlHarness {
  /** The control under test, wired to a router that serves on the ports below. */
  control: RouterControl;
  httpPort: number;
  httpsPort: number;
  /** Stops the router and removes what the harness made. */
  close(): Promise<void>;
}

/** The certificate's subject CN the router presents over HTTPS for `servername`. */
function servedSubject(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, rejectUnauthorized: false }, () => {
      const subject = String(socket.getPeerCertificate().subject?.CN);
      socket.end();
      resolve(subject);
    });
    socket.on("error", reject);
  });
}

/** Registers the contract suite for the control `setup` makes (`skip`: why it cannot run here). */
export function describeRouterControlContract(name: string, setup: () => Promise<RouterControlHarness>, options: { skip?: string } = {}): void {
  describe(`RouterControl contract: ${name}`, { skip: options.skip ?? false }, () => {
    let h: RouterControlHarness;
    let a: TestUpstream;
    let b: TestUpstream;
    /** Answers /slow only when released, so a request stays in flight for as long as a test needs. */
    let slow: TestUpstream;
    const releases: (() => void)[] = [];

    before(async () => {
      h = await setup();
      a = await startUpstream("app a");
      b = await startUpstream("app b");
      slow = await startUpstream("slow", (req, res) => {
        if (req.url === "/slow") releases.push(() => res.end("slow done"));
        else res.end("slow");
      });
    });

    after(async () => {
      for (const release of releases) release();
      await Promise.all([a?.close(), b?.close(), slow?.close()]);
      await h?.close();
    });

    const body = async (host: string, path = "/") => {
      const r = await send({ port: h.httpPort, host, path });
      return r.status === 200 ? r.body : r.status;
    };

    it("setRoute serves the app's new upstreams for its hosts once it resolves", async () => {
      await h.control.setRoute({ app: "shop", hosts: ["shop.localhost", "www.shop.test"], upstreams: [a.address] });
      assert.equal(await body("shop.localhost"), "app a");
      assert.equal(await body("www.shop.test"), "app a");
      await h.control.setRoute({ app: "shop", hosts: ["shop.localhost"], upstreams: [b.address] });
      assert.equal(await body("shop.localhost"), "app b", "the new upstreams at once");
      assert.equal(await body("www.shop.test"), 404, "a host the route no longer names");
      await h.control.setRoute({ app: "shop", hosts: ["shop.localhost"], upstreams: [] });
      assert.equal(await body("shop.localhost"), 503, "an app without processes");
    });

    it("removeRoute takes the app's hosts away", async () => {
      await h.control.setRoute({ app: "gone", hosts: ["gone.localhost"], upstreams: [a.address] });
      assert.equal(await body("gone.localhost"), "app a");
      await h.control.removeRoute("gone");
      assert.equal(await body("gone.localhost"), 404);
    });

    it("replaceAll serves exactly the table it is given", async () => {
      await h.control.setRoute({ app: "old", hosts: ["old.localhost"], upstreams: [a.address] });
      await h.control.replaceAll([
        { app: "blog", hosts: ["blog.localhost"], upstreams: [a.address] },
        { app: "wiki", hosts: ["wiki.localhost"], upstreams: [b.address] },
      ]);
      assert.equal(await body("old.localhost"), 404, "a route the new table lacks is gone");
      assert.equal(await body("blog.localhost"), "app a");
      assert.equal(await body("wiki.localhost"), "app b");
    });

    it("refuses a host another app owns and keeps serving what it served", async () => {
      await h.control.setRoute({ app: "owner", hosts: ["owned.localhost"], upstreams: [a.address] });
      await assert.rejects(
        h.control.setRoute({ app: "thief", hosts: ["owned.localhost"], upstreams: [b.address] }),
        (e) => isDeckError(e) && e.code === "route_conflict",
      );
      assert.equal(await body("owned.localhost"), "app a");
    });

    it("inflight counts requests to an upstream while they run", async () => {
      await h.control.setRoute({ app: "busy", hosts: ["busy.localhost"], upstreams: [slow.address] });
      assert.equal(await h.control.inflight(slow.address), 0);
      const pending = new Promise<string>((resolve, reject) => {
        http.get({ host: "127.0.0.1", port: h.httpPort, path: "/slow", headers: { Host: "busy.localhost" }, agent: false }, (res) => {
          let text = "";
          res.on("data", (c) => (text += c));
          res.on("end", () => resolve(text));
        }).on("error", reject);
      });
      await waitFor(async () => (await h.control.inflight(slow.address)) === 1, 10_000, "the request to count as in flight");
      // The router counts it from the moment it forwards it, a little before the app has it.
      await waitFor(async () => releases.length === 1, 10_000, "the app to hold the request");
      releases.shift()!();
      assert.equal(await pending, "slow done");
      await waitFor(async () => (await h.control.inflight(slow.address)) === 0, 10_000, "the finished request to leave the count");
    });

    it("setCertificates serves each certificate for its hosts over HTTPS", async () => {
      const shop = await createSelfSignedCertificate("shop.example.test");
      const blog = await createSelfSignedCertificate("blog.example.test");
      await h.control.setCertificates([{ hosts: ["shop.example.test"], ...shop }, { hosts: ["*.blog.example.test", "blog.example.test"], ...blog }]);
      assert.equal(await servedSubject(h.httpsPort, "shop.example.test"), "shop.example.test");
      assert.equal(await servedSubject(h.httpsPort, "www.blog.example.test"), "blog.example.test");
      await h.control.setCertificates([{ hosts: ["blog.example.test"], ...blog }]);
      assert.notEqual(await servedSubject(h.httpsPort, "shop.example.test"), "shop.example.test", "a certificate left out is no longer served");
    });

    it("answers an ACME HTTP-01 challenge for any host while it is set", async () => {
      const path = "/.well-known/acme-challenge/tok-123_abc";
      await h.control.setAcmeChallenge("tok-123_abc", "tok-123_abc.thumbprint");
      const answered = await send({ port: h.httpPort, host: "new.example.test", path });
      assert.deepEqual([answered.status, answered.body], [200, "tok-123_abc.thumbprint"]);
      await h.control.removeAcmeChallenge("tok-123_abc");
      assert.notEqual((await send({ port: h.httpPort, host: "new.example.test", path })).status, 200);
    });

    it("says what the router serves for an app, when it can ask the router", async (t) => {
      if (h.control.view === undefined) return t.skip("this control cannot ask the router");
      const route = { app: "viewed", hosts: ["viewed.localhost"], upstreams: [a.address] };
      await h.control.setRoute(route);
      assert.deepEqual(await h.control.view("viewed"), { answering: true, route });
      assert.deepEqual(await h.control.view("never-routed"), { answering: true, route: null });
    });
  });
}
