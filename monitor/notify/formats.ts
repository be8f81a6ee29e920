import { createHash } from "node:crypto";
import type { Notice } from "../../core/index.ts";

/**
 * What each kind of channel receives for a notice: pure functions from the notice to the body, so the
 * shapes are tested by equality and the senders only carry bytes.
 */

/** HTTP header every send carries, so a receiver can drop a duplicate (a crash between send and mark). */
export const NOTICE_KEY_HEADER = "X-Deck-Notice-Key";

/** Alertmanager writes a firing alert's unknown end as the zero time. */
const ZERO_TIME = "0001-01-01T00:00:00Z";

/** The rule's name without its threshold: `http_5xx > 5% for 5m` → `http_5xx`. */
export function ruleName(rule: string): string {
  return /^[A-Za-z0-9_:.-]+/.exec(rule.trim())?.[0] ?? "deck_alert";
}

/** An app that is down or crashing wakes people up; a threshold warns; a test informs. */
export function severityOf(rule: string): "critical" | "warning" | "info" {
  const name = ruleName(rule);
  if (name === "test") return "info";
  return name === "down" || name === "crash_loop" ? "critical" : "warning";
}

export interface AlertLabels {
  alertname: string;
  app: string;
  org: string;
  host: string;
  severity: string;
}

export function labelsOf(notice: Notice): AlertLabels {
  return { alertname: ruleName(notice.rule), app: notice.app, org: notice.org, host: notice.host, severity: severityOf(notice.rule) };
}

/** Alertmanager's fingerprint is a 64-bit hash of the sorted label set, as 16 hex digits. */
export function fingerprintOf(labels: AlertLabels): string {
  const hash = createHash("sha256");
  for (const [k, v] of Object.entries(labels).sort(([a], [b]) => a.localeCompare(b))) hash.update(`${k}\xff${v}\xff`);
  return hash.digest("hex").slice(0, 16);
}

export interface AlertmanagerOptions {
  /** Names the sender to the receiver (Alertmanager's receiver name). */
  receiver: string;
  /** deck's public URL (DECK_PUBLIC_URL); empty when unknown. */
  externalUrl: string;
}

/**
 * The body of Alertmanager's webhook receiver, version 4
 * (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), one alert per notice.
 */
export function alertmanagerPayload(notice: Notice, options: AlertmanagerOptions): Record<string, unknown> {
  const labels = labelsOf(notice);
  const annotations: Record<string, string> = { summary: notice.summary, value: notice.value, command: notice.command, rule: notice.rule };
  if (notice.url) annotations.url = notice.url;
  const groupLabels = { alertname: labels.alertname, app: labels.app, org: labels.org };
  return {
    version: "4",
    groupKey: `{}:{alertname=${JSON.stringify(labels.alertname)}, app=${JSON.stringify(labels.app)}, org=${JSON.stringify(labels.org)}}`,
    truncatedAlerts: 0,
    status: notice.status,
    receiver: options.receiver,
    groupLabels,
    commonLabels: labels,
    commonAnnotations: annotations,
    externalURL: options.externalUrl,
    alerts: [{
      status: notice.status,
      labels,
      annotations,
      startsAt: notice.startsAt,
      endsAt: notice.status === "resolved" && notice.endsAt ? notice.endsAt : ZERO_TIME,
      generatorURL: notice.url ?? "",
      fingerprint: fingerprintOf(labels),
    }],
  };
}

/** `FIRING: crash_loop on web (org acme, host deck-1): 4 restarts in 5 min` */
export function headline(notice: Notice): string {
  return `${notice.status === "firing" ? "FIRING" : "RESOLVED"}: ${notice.rule} on ${notice.app} (org ${notice.org}, host ${notice.host}): ${notice.value}`;
}

function lookFurther(notice: Notice): string {
  return `Look further: ${notice.command}${notice.url ? ` or ${notice.url}` : ""}`;
}

/** A Slack-compatible incoming webhook message (https://api.slack.com/messaging/webhooks): two lines of text. */
export function slackPayload(notice: Notice): { text: string } {
  return { text: `${headline(notice)}\n${lookFurther(notice)}` };
}

export interface EmailMessage {
  subject: string;
  text: string;
  /** The same for every send of one notice, so mail clients and filters can drop a duplicate. */
  messageId: string;
}

/** RFC 5322 Message-ID from the notice key: `<notice-HEX@DOMAIN>`. */
export function messageIdFor(key: string, from: string): string {
  const domain = /@([A-Za-z0-9.-]+)>?\s*$/.exec(from)?.[1] ?? "deck.invalid";
  return `<notice-${createHash("sha256").update(key).digest("hex").slice(0, 32)}@${domain}>`;
}

export function emailMessage(notice: Notice, from: string): EmailMessage {
  const lines = [
    notice.summary,
    "",
    `Status:  ${notice.status}`,
    `App:     ${notice.app}`,
    `Org:     ${notice.org}`,
    `Host:    ${notice.host}`,
    `Rule:    ${notice.rule}`,
    `Value:   ${notice.value}`,
    `Started: ${notice.startsAt}`,
    ...(notice.endsAt ? [`Ended:   ${notice.endsAt}`] : []),
    "",
    lookFurther(notice),
  ];
  return { subject: `[deck] ${headline(notice)}`.replace(/[\r\n]+/g, " "), text: `${lines.join("\n")}\n`, messageId: messageIdFor(notice.key, from) };
}
