/** Autoscaling: each autoscaled process type judged every round against its app's samples, and scaled as ps:scale does. */
export {
  AUTOSCALE_INTERVAL_MS, AutoscaleController, DECISION_RETENTION_MS, PENDING_STALE_MS,
  type AutoscaleControllerOptions, type AutoscaleEvent, type AutoscaleJudgement, type AutoscaleRoundResult, type AutoscaleScale,
} from "./controller.ts";
