/**
 * Alert notices reach people through an organisation's channels: a webhook in Alertmanager's format,
 * a Slack-compatible incoming webhook, or e-mail over SMTP. `enqueueNotice` puts a notice in the
 * outbox once per channel; `NotifyWorker` (one per deck server) sends it, with retries.
 */
export { enqueueNotice } from "../../store/queries/notify.ts";
export { NotifyWorker, NOTIFY_TIMING, retryDelayMs, type NotifyTiming, type NotifyWorkerOptions } from "./worker.ts";
export { alertmanagerPayload, emailMessage, slackPayload, NOTICE_KEY_HEADER } from "./formats.ts";
export { createOutboundPolicy, parseCidr, type OutboundPolicy } from "./outbound.ts";
