import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Notice } from "../../core/index.ts";
import { checkNotifyTarget, maskNotifyUrl } from "../../ops/notify.ts";
import { alertmanagerPayload, emailMessage, fingerprintOf, messageIdFor, ruleName, severityOf, slackPayload } from "./formats.ts";
import { createOutboundPolicy, parseCidr } from "./outbound.ts";
import { retryDelayMs } from "./worker.ts";

const FIRING: Notice = {
  key: "crash_loop:web:2026-12-07T10:00:00Z",
  status: "firing",
  orgId: 7,
  org: "acme",
  app: "web",
  host: "deck-1",
  rule: "crash_loop",
  value: "4 restarts in 5 min",
  summary: "web is crash-looping: 4 restarts in 5 min",
  startsAt: "2026-12-07T10:00:00.000Z",
  command: "ssh deck@deck-1 metrics web --since 1h",
  url: "https://deck.example.com/apps/web",
};

const RESOLVED: Notice = {
  ...FIRING, key: "http_5xx:web:resolved", status: "resolved", rule: "http_5xx > 5% for 5m", value: "0.4% of 1,200 requests",
  summary: "web answers again: 0.4% 5xx", endsAt: "2026-12-07T10:20:00.000Z", url: undefined,
};

describe("what channels receive", () => {
  it("a webhook gets Alertmanager's version 4 body: one alert naming app, org, host, rule, value and where to look", () => {
    const labels = { alertname: "crash_loop", app: "web", org: "acme", host: "deck-1", severity: "critical" };
    const annotations = {
      summary: "web is crash-looping: 4 restarts in 5 min", value: "4 restarts in 5 min", command: "ssh deck@deck-1 metrics web --since 1h",
      rule: "crash_loop", url: "https://deck.example.com/apps/web",
    };
    assert.deepEqual(alertmanagerPayload(FIRING, { receiver: "deck", externalUrl: "https://deck.example.com" }), {
      version: "4",
      groupKey: '{}:{alertname="crash_loop", app="web", org="acme"}',
      truncatedAlerts: 0,
      status: "firing",
      receiver: "deck",
      groupLabels: { alertname: "crash_loop", app: "web", org: "acme" },
      commonLabels: labels,
      commonAnnotations: annotations,
      externalURL: "https://deck.example.com",
      alerts: [{
        status: "firing", labels, annotations, startsAt: "2026-12-07T10:00:00.000Z", endsAt: "0001-01-01T00:00:00Z",
        generatorURL: "https://deck.example.com/apps/web", fingerprint: fingerprintOf(labels),
      }],
    });
  });

  it("a resolved alert carries its end, the rule's name as alertname and the whole rule as an annotation", () => {
    const body = alertmanagerPayload(RESOLVED, { receiver: "deck", externalUrl: "" }) as { status: string; alerts: Array<Record<string, unknown>> };
    assert.equal(body.status, "resolved");
    const [alert] = body.alerts;
    assert.equal(alert!.endsAt, "2026-12-07T10:20:00.000Z");
    assert.deepEqual(alert!.labels, { alertname: "http_5xx", app: "web", org: "acme", host: "deck-1", severity: "warning" });
    assert.equal((alert!.annotations as Record<string, string>).rule, "http_5xx > 5% for 5m");
    assert.equal((alert!.annotations as Record<string, string>).url, undefined);
  });

  it("the fingerprint is the label set's, whatever the order", () => {
    const a = fingerprintOf({ alertname: "down", app: "web", org: "acme", host: "h", severity: "critical" });
    const b = fingerprintOf({ severity: "critical", host: "h", org: "acme", app: "web", alertname: "down" });
    assert.equal(a, b);
    assert.match(a, /^[0-9a-f]{16}$/);
    assert.notEqual(a, fingerprintOf({ alertname: "down", app: "api", org: "acme", host: "h", severity: "critical" }));
  });

  it("Slack gets two lines: what fired where, and how to look further", () => {
    assert.deepEqual(slackPayload(FIRING), {
      text: "FIRING: crash_loop on web (org acme, host deck-1): 4 restarts in 5 min\nLook further: ssh deck@deck-1 metrics web --since 1h or https://deck.example.com/apps/web",
    });
    assert.deepEqual(slackPayload(RESOLVED), {
      text: "RESOLVED: http_5xx > 5% for 5m on web (org acme, host deck-1): 0.4% of 1,200 requests\nLook further: ssh deck@deck-1 metrics web --since 1h",
    });
  });

  it("an e-mail names everything in its subject and body, with a Message-ID made from the notice key", () => {
    const m = emailMessage(RESOLVED, "deck <alerts@deck.example.com>");
    assert.equal(m.subject, "[deck] RESOLVED: http_5xx > 5% for 5m on web (org acme, host deck-1): 0.4% of 1,200 requests");
    assert.equal(m.text, [
      "web answers again: 0.4% 5xx", "",
      "Status:  resolved", "App:     web", "Org:     acme", "Host:    deck-1", "Rule:    http_5xx > 5% for 5m",
      "Value:   0.4% of 1,200 requests", "Started: 2026-12-07T10:00:00.000Z", "Ended:   2026-12-07T10:20:00.000Z", "",
      "Look further: ssh deck@deck-1 metrics web --since 1h", "",
    ].join("\n"));
    assert.match(m.messageId, /^<notice-[0-9a-f]{32}@deck\.example\.com>$/);
    assert.equal(m.messageId, messageIdFor(RESOLVED.key, "alerts@deck.example.com"));
    assert.notEqual(m.messageId, messageIdFor(FIRING.key, "alerts@deck.example.com"));
  });

  it("rules are named and graded: down and crash loops are critical, thresholds warn, tests inform", () => {
    assert.deepEqual(["down", "crash_loop", "p95 > 800ms for 5m", "memory > 90% for 10m", "test"].map((r) => [ruleName(r), severityOf(r)]), [
      ["down", "critical"], ["crash_loop", "critical"], ["p95", "warning"], ["memory", "warning"], ["test", "info"],
    ]);
  });
});

describe("retries", () => {
  it("wait 10 s, then twice as long each time, never more than 10 minutes", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 100].map((n) => retryDelayMs(n) / 1000), [10, 20, 40, 80, 160, 320, 600, 600, 600]);
  });
});

describe("where deck sends", () => {
  const policy = createOutboundPolicy();
  it("refuses loopback, private, link-local and other non-public addresses", () => {
    for (const ip of ["127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::"]) {
      assert.match(policy.refusal(ip) ?? "", /loopback, private or link-local address.*DECK_OUTBOUND_ALLOW/, ip);
    }
    for (const ip of ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"]) assert.equal(policy.refusal(ip), null, ip);
  });
  it("allows what a platform admin allows, and nothing more", () => {
    const allowing = createOutboundPolicy(["127.0.0.1/32", "10.0.0.0/8"]);
    assert.equal(allowing.refusal("127.0.0.1"), null);
    assert.equal(allowing.refusal("10.200.0.1"), null);
    assert.notEqual(allowing.refusal("127.0.0.2"), null);
    assert.notEqual(allowing.refusal("192.168.0.1"), null);
    assert.throws(() => createOutboundPolicy(["127.0.0.1/33"]), /not an address range/);
  });
  it("reads address ranges", () => {
    assert.deepEqual(parseCidr("127.0.0.1/32"), { address: "127.0.0.1", prefix: 32, type: "ipv4" });
    assert.deepEqual(parseCidr("::1"), { address: "::1", prefix: 128, type: "ipv6" });
    for (const bad of ["", "localhost/8", "10.0.0.0/", "10.0.0.0/8/8", "10.0.0.0/x", "::1/129"]) assert.equal(parseCidr(bad), null, bad);
  });
});

describe("channel targets", () => {
  it("accepts http(s) URLs for webhooks and Slack and shows them masked", () => {
    const slack = checkNotifyTarget("slack", "https://hooks.slack.com/services/T000/B000/XXXXsecretZ9");
    assert.deepEqual(slack, { ok: true, value: { kind: "slack", target: "https://hooks.slack.com/services/T000/B000/XXXXsecretZ9", display: "https://hooks.slack.com/***etZ9" } });
    const hook = checkNotifyTarget("webhook", "http://user:pw@alerts.example.com:9093/hook?token=abc");
    assert.ok(hook.ok);
    assert.equal(hook.value.display, "http://alerts.example.com:9093/***");
    assert.equal(maskNotifyUrl(new URL("https://alerts.example.com")), "https://alerts.example.com/");
    assert.equal(maskNotifyUrl(new URL("https://alerts.example.com/x")), "https://alerts.example.com/***");
  });
  it("refuses other schemes, bad URLs and addresses with a message saying what it takes", () => {
    const cases: Array<[string, string, RegExp]> = [
      ["webhook", "ftp://example.com/x", /^a webhook URL starts with https:\/\/ or http:\/\/ \(like https:\/\/alerts\.example\.com\/deck\); ftp:\/\/ URLs are not sent to$/],
      ["slack", "file:///etc/passwd", /^a slack URL starts with https:\/\/ or http:\/\//],
      ["webhook", "not a url", /must not contain spaces/],
      ["webhook", "hooks.example.com/x", /^a webhook URL starts with/],
      ["email", "ops@example.com, boss@example.com", /is not an e-mail address/],
      ["email", "ops@example.com\r\nBcc: x@example.com", /is not an e-mail address/],
      ["pager", "x", /is not a channel kind: webhook, slack or email/],
    ];
    for (const [kind, target, message] of cases) {
      const r = checkNotifyTarget(kind, target);
      assert.equal(r.ok, false, target);
      if (!r.ok) assert.match(r.message, message);
    }
    assert.deepEqual(checkNotifyTarget("email", "ops+alerts@example.com"), { ok: true, value: { kind: "email", target: "ops+alerts@example.com", display: "ops+alerts@example.com" } });
  });
});
