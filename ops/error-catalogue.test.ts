import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { assertDistinctCodes, ERROR_CATALOGUE, ERROR_TABLES, lookupError, renderErrorDocs } from "./error-catalogue.ts";

test("docs/errors.md lists every error code as the catalogue declares it (npm run docs:errors rewrites it)", async () => {
  const written = await readFile(new URL("../docs/errors.md", import.meta.url), "utf8");
  assert.ok(written === renderErrorDocs(), "docs/errors.md is out of date: run `npm run docs:errors`");
  for (const code of Object.keys(ERROR_CATALOGUE)) assert.ok(written.includes(`| \`${code}\` |`), code);
});

test("a code whose message is hidden answers a 5xx, a 4xx always shows its message, and every code has a one-line hint", () => {
  for (const [code, spec] of Object.entries(ERROR_CATALOGUE)) {
    assert.ok(Number.isInteger(spec.status) && spec.status >= 400 && spec.status <= 599, `${code}: ${spec.status}`);
    if (!spec.expose) assert.ok(spec.status >= 500, `${code} hides its message, so it is deck's failure, not the client's: a 5xx, not ${spec.status}`);
    if (spec.status < 500) assert.ok(spec.expose, `${code} is the client's to fix (${spec.status}), so its message must be shown`);
    assert.match(spec.hint, /^[^\n|]{10,200}$/, code);
  }
});

test("codes are snake_case and each is declared by one part only", () => {
  for (const code of Object.keys(ERROR_CATALOGUE)) assert.match(code, /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
  const declared = Object.values(ERROR_TABLES).reduce((n, t) => n + Object.keys(t).length, 0);
  assert.equal(Object.keys(ERROR_CATALOGUE).length, declared);
  const spec = { status: 404, expose: true, hint: "check the name" };
  assert.throws(() => assertDistinctCodes({ deploy: { not_found: spec }, api: { not_found: spec } }), /^Error: error code not_found is declared by both deploy and api/);
});

test("the two meanings of a body too large have two codes: a request body (413) and the router's certificate list (507)", () => {
  assert.equal(lookupError("body_too_large")?.status, 413);
  assert.equal(lookupError("payload_too_large")?.status, 413);
  assert.equal(lookupError("certificates_too_large")?.status, 507);
  assert.equal(lookupError("made_up"), undefined);
  assert.equal(lookupError("toString"), undefined);
});
