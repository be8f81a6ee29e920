import { q, type Db } from "./db.ts";

/** Router nodes reload the challenge answers when this is announced. */
export const CHALLENGES_CHANNEL = "deck_challenges";

export async function saveAcmeChallenge(db: Db, token: string, keyAuthorization: string): Promise<void> {
  await db.query(q`INSERT INTO acme_challenges (token, key_authorization) VALUES (${token}, ${keyAuthorization})
    ON CONFLICT (token) DO UPDATE SET key_authorization = EXCLUDED.key_authorization, created_at = now()`);
  await db.query(q`SELECT pg_notify(${CHALLENGES_CHANNEL}, '')`);
}

export async function deleteAcmeChallenge(db: Db, token: string): Promise<void> {
  await db.query(q`DELETE FROM acme_challenges WHERE token = ${token}`);
  // Orders abandoned by a stopped server leave nothing older than a day behind.
  await db.query(q`DELETE FROM acme_challenges WHERE created_at < now() - interval '1 day'`);
  await db.query(q`SELECT pg_notify(${CHALLENGES_CHANNEL}, '')`);
}

export async function listAcmeChallenges(db: Db): Promise<{ token: string; keyAuthorization: string }[]> {
  const rows = await db.any(q`SELECT token, key_authorization FROM acme_challenges`);
  return rows.map((r) => ({ token: String(r.token), keyAuthorization: String(r.key_authorization) }));
}
