import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { X509Certificate } from "node:crypto";
import { parseCertificateBundle, tlsStatusOf } from "./certs.ts";

const dir = mkdtempSync(join(tmpdir(), "deck-certs-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "ignore"] });
const read = (f: string) => readFileSync(join(dir, f), "utf8");

// A small CA and a leaf it signed, as a user buying a certificate would get them.
openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=Test CA");
openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=www.example.com");
writeFileSync(join(dir, "ext.cnf"), "subjectAltName=DNS:www.example.com,DNS:example.com\n");
openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "20", "-extfile", "ext.cnf", "-out", "leaf.crt");
openssl("pkey", "-in", "leaf.key", "-out", "leaf-enc.key", "-aes256", "-passout", "pass:secret");

test("a bundle in any order becomes leaf-first chain plus key", () => {
  const r = parseCertificateBundle(read("ca.crt") + read("leaf.key") + read("leaf.crt"));
  assert.ok(r.ok, !r.ok ? r.message : "");
  const first = new X509Certificate(r.chain);
  assert.match(first.subject, /CN=www\.example\.com/);
  assert.equal(r.chain.match(/BEGIN CERTIFICATE/g)?.length, 2);
  assert.ok(r.leaf.checkHost("example.com"));
});

test("a bundle that cannot be served is refused with a line that says what to do", () => {
  const cases: [string, RegExp][] = [
    ["", /^no certificate found; send the certificate chain and its private key as PEM/],
    [read("leaf.crt"), /^no private key found; /],
    [read("leaf.crt") + read("ca.key"), /^the private key does not match the certificate$/],
    [read("leaf.crt") + read("leaf-enc.key"), /^the private key is encrypted; decrypt it first \(openssl pkey/],
    [read("leaf.crt") + read("leaf.key") + read("ca.key"), /^more than one private key found/],
    ["-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n" + read("leaf.key"), /^certificate 1 in the bundle cannot be read: /],
  ];
  for (const [text, expected] of cases) {
    const r = parseCertificateBundle(text);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.match(r.message, expected);
      assert.ok(!r.message.includes("\n"));
    }
  }
  const expired = parseCertificateBundle(read("leaf.crt") + read("leaf.key"), new Date(Date.now() + 40 * 24 * 3600 * 1000));
  assert.ok(!expired.ok && /^the certificate expired on \d{4}-\d{2}-\d{2}$/.test(expired.message));
});

test("the TLS status reads as users see it in domains:report", () => {
  const base = { domain: "www.shop.com", appId: 1, serial: "01", lastAttemptAt: null, updatedAt: "2026-01-01T00:00:00.000Z" };
  assert.equal(tlsStatusOf(undefined).text, "self-signed");
  assert.equal(tlsStatusOf({ ...base, source: "acme", status: "pending", error: null, notAfter: null }).text, "pending");
  assert.equal(tlsStatusOf({ ...base, source: "acme", status: "issued", error: null, notAfter: "2026-05-01T10:00:00.000Z" }).text, "issued (expires 2026-05-01)");
  assert.equal(tlsStatusOf({ ...base, source: "acme", status: "issued", error: "timeout", notAfter: "2026-05-01T10:00:00.000Z" }).text, "issued (expires 2026-05-01; renewal failed: timeout)");
  assert.equal(tlsStatusOf({ ...base, source: "acme", status: "failed", error: "connection refused", notAfter: null }).text, "failed: connection refused");
  assert.equal(tlsStatusOf({ ...base, source: "manual", status: "issued", error: null, notAfter: "2027-01-02T00:00:00.000Z" }).text, "manual (expires 2027-01-02)");
});
