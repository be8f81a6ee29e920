/**
 * Log search, retention and drains: what `logs APP --grep …`, `logs:retention` and `drains:*` rest on.
 * The deck server runs a LogRetention and a DrainShipper (start/stop); ops/logs.ts and
 * ops/log-search.ts are the operations users reach over SSH and the API.
 */
export {
  LOG_SOURCES, matcher, parseAppLogLine, parseDuration, parseGrep, parseProcess, parseRouterLine, parseSince, parseSources,
  type LogEntry, type LogFilter, type LogSource, type Parsed, type RouterRequest,
} from "./log-line.ts";
export { DEFAULT_MAX_SCAN_BYTES, followLogs, routerAccessLog, searchLogs, type LogFiles, type SearchOptions, type SearchResult } from "./search.ts";
export { trimLog, TrimError, type TrimPlan, type TrimResult } from "./log-trim.ts";
export { LogRetention, LOG_RETENTION_DEFAULTS, RETENTION_BOUNDS, SUPERVISOR_MAX_LOG_BYTES, type LogRetentionOptions, type RetentionPolicy } from "./retention.ts";
export { maskDrainUrl, parseDrainUrl, type DrainTarget } from "./drain-url.ts";
export { jsonLine, octetFrame, syslogMessage } from "./drain-format.ts";
export { DrainShipper, type DrainShipperOptions } from "./drain-shipper.ts";
