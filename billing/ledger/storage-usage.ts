/**
 * The storage meter: once per clock hour, each app's bytes on disk (repository, build artifacts) and
 * in Docker images, recorded as byte-hours for that hour (bytes × 1 hour), key `storage:<appId>:<hour>`.
 */
import { listMeteredApps, recordUsage, type Db, type MeteredApp, type NewUsageEntry } from "../../store/queries/index.ts";
import { listStorageDirs, measureStorage } from "./storage-size.ts";
import { findFirstUnrecorded, GAP_FILL_MS, HOUR_MS, listSlots } from "./usage-series.ts";

export interface StorageUsageOptions {
  dataDir: string;
  /** The bytes of the app's Docker images; null (or left out) when the runtime keeps none. */
  imageBytes?: (app: string) => Promise<number | null>;
  now: Date;
  /** One app could not be measured (it is measured again next run; its hours are filled then). */
  onAppError(app: MeteredApp, error: Error): void;
  /** The app was measured after it had failed. */
  onAppMeasured?(app: MeteredApp): void;
}

export const makeStorageKey = (appId: number, hourMs: number) => `storage:${appId}:${new Date(hourMs).toISOString()}`;

/** The bytes an app keeps: its files under the data dir and its images. */
export async function measureAppStorage(o: Pick<StorageUsageOptions, "dataDir" | "imageBytes">, app: string): Promise<number> {
  const [files, images] = await Promise.all([measureStorage(listStorageDirs(o.dataDir, app)), o.imageBytes?.(app) ?? null]);
  return files + (images ?? 0);
}

/**
 * Records the hours each app lacks: the current one and, after a gap (deck was down, the database
 * away), every hour since the app's newest storage entry, at most 7 days back and never before the app
 * was created. Sizes are not kept between runs, so a gap's hours are all filled with the size measured
 * now. Returns how many entries were new.
 */
export async function recordStorageUsage(db: Db, o: StorageUsageOptions): Promise<number> {
  const nowMs = o.now.getTime();
  const apps = await listMeteredApps(db);
  const slotsOf = apps.map((a) => listSlots(Math.max(Date.parse(a.createdAt), nowMs - GAP_FILL_MS), nowMs, HOUR_MS));
  const first = await findFirstUnrecorded(db, apps.map((a, i) => slotsOf[i]!.map((h) => makeStorageKey(a.id, h))));
  const entries: NewUsageEntry[] = [];
  for (const [i, app] of apps.entries()) {
    const missing = slotsOf[i]!.slice(first[i]);
    if (missing.length === 0) continue;
    let bytes: number;
    try {
      bytes = await measureAppStorage(o, app.name);
    } catch (e) {
      o.onAppError(app, e as Error);
      continue;
    }
    o.onAppMeasured?.(app);
    const createdMs = Date.parse(app.createdAt);
    for (const hour of missing) {
      // The app's first hour counts from its creation, so no entry predates the app.
      entries.push({ key: makeStorageKey(app.id, hour), orgId: app.orgId, appId: app.id, app: app.name, meter: "storage_byte_hours", quantity: bytes, at: new Date(Math.max(hour, createdMs)) });
    }
  }
  return recordUsage(db, entries);
}
