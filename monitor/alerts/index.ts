/** Alerts: every app's rules judged against its samples and uptime, notices queued, deploy-aware rollback. */
export { AlertEvaluator, ALERT_INTERVAL_MS, type AlertEvaluatorOptions, type AlertEvent, type AlertRollback, type AlertRoundResult } from "./evaluator.ts";
