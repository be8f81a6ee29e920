// The usage ledger's jobs: build-time sweeper, hourly storage, daily custom domains.
export { LEDGER_JOB_LOCKS, LedgerJobs, type LedgerJobName, type LedgerJobsOptions } from "./ledger-jobs.ts";
export { measureAppStorage, recordStorageUsage, makeStorageKey, type StorageUsageOptions } from "./storage-usage.ts";
export { makeDomainKey, recordDomainUsage } from "./domain-usage.ts";
export { listStorageDirs, measureStorage } from "./storage-size.ts";
