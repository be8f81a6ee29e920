import { decryptSecret, encryptSecret } from "../secret-box.ts";
import { q, toIso, type Db } from "./db.ts";

/**
 * Webhook secrets are sealed at rest like config vars (store/secret-box.ts): verifying an HMAC needs the
 * secret itself, so it is encrypted rather than hashed. The repository URL is sealed too, because an
 * HTTPS URL of a private repository carries its access token.
 */
const seal = (v: string | null) => (v == null ? null : encryptSecret(v));
const open = (v: unknown) => (v == null ? null : decryptSecret(String(v)));

export interface WebhookRow {
  appId: number;
  repoUrl: string;
  branch: string;
  githubSecret: string | null;
  gitlabToken: string | null;
  configuredBy: number | null;
  updatedAt: string;
}

function toWebhook(r: Record<string, unknown>): WebhookRow {
  return {
    appId: Number(r.app_id),
    repoUrl: decryptSecret(String(r.repo_url)),
    branch: String(r.branch),
    githubSecret: open(r.github_secret),
    gitlabToken: open(r.gitlab_token),
    configuredBy: r.configured_by == null ? null : Number(r.configured_by),
    updatedAt: toIso(r.updated_at),
  };
}

export async function findWebhook(db: Db, appId: number): Promise<WebhookRow | null> {
  const r = await db.maybeOne(q`SELECT * FROM app_webhooks WHERE app_id = ${appId}`);
  return r ? toWebhook(r) : null;
}

/** Inserts or replaces an app's webhook settings (the caller merges with the previous row first). */
export async function saveWebhook(db: Db, w: Omit<WebhookRow, "updatedAt">): Promise<WebhookRow> {
  return toWebhook(await db.one(q`INSERT INTO app_webhooks (app_id, repo_url, branch, github_secret, gitlab_token, configured_by)
    VALUES (${w.appId}, ${encryptSecret(w.repoUrl)}, ${w.branch}, ${seal(w.githubSecret)}, ${seal(w.gitlabToken)}, ${w.configuredBy})
    ON CONFLICT (app_id) DO UPDATE SET repo_url = EXCLUDED.repo_url, branch = EXCLUDED.branch,
      github_secret = EXCLUDED.github_secret, gitlab_token = EXCLUDED.gitlab_token,
      configured_by = EXCLUDED.configured_by, updated_at = now()
    RETURNING *`));
}

export async function deleteWebhook(db: Db, appId: number): Promise<boolean> {
  const r = await db.query(q`DELETE FROM app_webhooks WHERE app_id = ${appId}`);
  return r.rowCount > 0;
}
