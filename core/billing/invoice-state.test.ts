import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { INVOICE_ACTIONS, INVOICE_STATUSES, isInvoiceAction, isInvoiceStatus, nextInvoiceStatus, type InvoiceAction, type InvoiceStatus } from "./invoice-state.ts";

/** Every status × action, written out by hand: the allowed moves and, for the rest, what the user reads. */
const EXPECTED: Record<InvoiceStatus, Record<InvoiceAction, InvoiceStatus | RegExp>> = {
  draft: { open: "open", pay: /draft invoice is opened before it can be marked paid/, void: "void", uncollectible: /draft invoice is opened before it can be marked uncollectible/ },
  open: { open: /already open/, pay: "paid", void: "void", uncollectible: "uncollectible" },
  paid: { open: /paid invoice cannot be marked open/, pay: /already paid/, void: /paid invoice cannot be marked void; grant a credit/, uncollectible: /paid invoice cannot be marked uncollectible/ },
  void: { open: /void/, pay: /void/, void: /void/, uncollectible: /void/ },
  uncollectible: { open: /cannot be opened again/, pay: "paid", void: /cannot be voided/, uncollectible: /already marked uncollectible/ },
};

describe("invoice states", () => {
  for (const from of INVOICE_STATUSES) {
    for (const action of INVOICE_ACTIONS) {
      const expected = EXPECTED[from][action];
      it(`${from} + ${action} → ${typeof expected === "string" ? expected : "refused"}`, () => {
        const t = nextInvoiceStatus(from, action);
        if (typeof expected === "string") {
          assert.deepEqual(t, { ok: true, status: expected });
          return;
        }
        assert.equal(t.ok, false);
        if (t.ok) return;
        assert.equal(t.code, "invoice_transition_refused");
        assert.equal(t.from, from);
        assert.equal(t.action, action);
        assert.match(t.reason, expected);
        assert.doesNotMatch(t.reason, /\n/, "one line");
      });
    }
  }

  it("lets a void or paid invoice go nowhere, and every other status somewhere", () => {
    const reachable = (from: InvoiceStatus) => INVOICE_ACTIONS.filter((a) => nextInvoiceStatus(from, a).ok);
    assert.deepEqual(reachable("void"), []);
    assert.deepEqual(reachable("paid"), []);
    for (const s of ["draft", "open", "uncollectible"] as const) assert.ok(reachable(s).length > 0, s);
  });

  it("recognises statuses and actions from text (a command line, a stored row)", () => {
    assert.equal(isInvoiceStatus("uncollectible"), true);
    assert.equal(isInvoiceStatus("refunded"), false);
    assert.equal(isInvoiceAction("pay"), true);
    assert.equal(isInvoiceAction("paid"), false);
  });
});
