import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ErrorCode } from "../../core/index.ts";
import {
  finishBuild, insertBuild, insertDeployment, insertRelease, setReleaseStatus, sql, updateDeployment, type AppRow, type Db,
} from "../../store/queries/index.ts";
import type { DatabasePool } from "slonik";

export const SHA = (n: number) => String(n).repeat(40).slice(0, 40);

export interface RecordedPush { build: "ok" | "failed"; error?: string; code?: ErrorCode; release?: "live" | "superseded" | "failed" }

/** A push as the database records it: its deployment, its build (a slug on disk when it succeeded), maybe a release. */
export async function recordPush(db: DatabasePool & Db, dir: string, userId: number, app: AppRow, n: number, outcome: RecordedPush): Promise<{ buildId: number; slug: string }> {
  const d = await insertDeployment(db, { appId: app.id, kind: "push", commitSha: SHA(n), createdBy: userId });
  const b = await insertBuild(db, app.id, SHA(n), outcome.code ? d.id : null);
  const slug = join(dir, app.name, String(b.id));
  if (outcome.build === "ok") {
    await mkdir(slug, { recursive: true });
    await writeFile(join(slug, "app.js"), "x".repeat(1000 * n));
    await finishBuild(db, b.id, { ok: true, buildpack: "node", slugPath: slug, sizeBytes: 1000 * n, procfile: { web: "node app.js" } });
  } else {
    await finishBuild(db, b.id, { ok: false });
  }
  if (outcome.code) await db.query(sql.unsafe`UPDATE deployments SET status = 'failed', error = ${outcome.error ?? "failed"}, error_code = ${outcome.code}, finished_at = now() WHERE id = ${d.id}`);
  else if (outcome.error) await updateDeployment(db, d.id, { status: "failed", error: outcome.error, finished: true });
  else await updateDeployment(db, d.id, { status: "succeeded", finished: true });
  if (outcome.release) {
    const r = await db.transaction((tx) => insertRelease(tx, { appId: app.id, buildId: b.id, config: {}, commitSha: SHA(n), description: `v${n}`, createdBy: userId }));
    await setReleaseStatus(db, r.id, outcome.release);
  }
  return { buildId: b.id, slug };
}
