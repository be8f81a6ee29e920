import { decryptSecret, encryptSecret } from "../secret-box.ts";
import { q, sql, toIso, type Db } from "./db.ts";

/**
 * HTTPS certificates (migration 012), one row per host name. Private keys are sealed like config vars.
 * Every change sends NOTIFY on CERTS_CHANNEL so router nodes reading PostgreSQL reload the list: the
 * functions here for inserts and updates, a trigger for every delete (migration 018), cascades included.
 */
export const CERTS_CHANNEL = "deck_certs";

export type CertificateSource = "acme" | "manual";
export type CertificateStatus = "pending" | "issued" | "failed";

/** A certificate row without its key (for reports). */
export interface CertificateRow {
  domain: string;
  /** null for the platform's wildcard certificate of the default domain. */
  appId: number | null;
  source: CertificateSource;
  status: CertificateStatus;
  /** Why the last ACME order failed; set on an issued row when its renewal failed. */
  error: string | null;
  serial: string | null;
  notAfter: string | null;
  lastAttemptAt: string | null;
  updatedAt: string;
}

function toCertificate(r: Record<string, unknown>): CertificateRow {
  return {
    domain: String(r.domain),
    appId: r.app_id == null ? null : Number(r.app_id),
    source: String(r.source) as CertificateSource,
    status: String(r.status) as CertificateStatus,
    error: r.error == null ? null : String(r.error),
    serial: r.serial == null ? null : String(r.serial),
    notAfter: r.not_after == null ? null : toIso(r.not_after),
    lastAttemptAt: r.last_attempt_at == null ? null : toIso(r.last_attempt_at),
    updatedAt: toIso(r.updated_at),
  };
}

const COLUMNS = sql.fragment`domain, app_id, source, status, error, serial, not_after, last_attempt_at, updated_at`;

async function announce(db: Db, domain: string): Promise<void> {
  await db.query(q`SELECT pg_notify(${CERTS_CHANNEL}, ${domain})`);
}

export async function listCertificatesOfApp(db: Db, appId: number): Promise<CertificateRow[]> {
  const rows = await db.any(q`SELECT ${COLUMNS} FROM certificates WHERE app_id = ${appId} ORDER BY domain`);
  return rows.map(toCertificate);
}

export async function findCertificate(db: Db, domain: string): Promise<CertificateRow | null> {
  const r = await db.maybeOne(q`SELECT ${COLUMNS} FROM certificates WHERE domain = ${domain}`);
  return r ? toCertificate(r) : null;
}

/**
 * Records that an ACME order for `domain` starts. A domain without a certificate becomes 'pending';
 * an issued one stays issued (and keeps being served) while it is renewed. A manual certificate is
 * never replaced: returns false then.
 */
export async function startAcmeAttempt(db: Db, domain: string, appId: number): Promise<boolean> {
  const r = await db.maybeOne(q`INSERT INTO certificates (domain, app_id, source, status, last_attempt_at)
    VALUES (${domain}, ${appId}, 'acme', 'pending', now())
    ON CONFLICT (domain) DO UPDATE SET
      app_id = EXCLUDED.app_id,
      status = CASE WHEN certificates.status = 'issued' THEN 'issued' ELSE 'pending' END,
      error = CASE WHEN certificates.status = 'issued' THEN certificates.error ELSE NULL END,
      last_attempt_at = now(), updated_at = now()
    WHERE certificates.source = 'acme'
    RETURNING domain`);
  if (r) await announce(db, domain);
  return r !== null;
}

export interface IssuedCertificate {
  domain: string;
  appId: number | null;
  source: CertificateSource;
  /** Leaf first, then the chain (PEM). */
  certPem: string;
  keyPem: string;
  serial: string;
  notAfter: Date;
}

/**
 * Stores a certificate as issued and clears any error. A manual certificate replaces anything; an ACME
 * one never replaces a manual one (an order that finishes after certs:add loses).
 */
export async function saveIssuedCertificate(db: Db, c: IssuedCertificate): Promise<void> {
  await db.query(q`INSERT INTO certificates (domain, app_id, source, status, cert_pem, key_sealed, serial, not_after)
    VALUES (${c.domain}, ${c.appId}, ${c.source}, 'issued', ${c.certPem}, ${encryptSecret(c.keyPem)}, ${c.serial}, ${c.notAfter.toISOString()})
    ON CONFLICT (domain) DO UPDATE SET app_id = EXCLUDED.app_id, source = EXCLUDED.source, status = 'issued', error = NULL,
      cert_pem = EXCLUDED.cert_pem, key_sealed = EXCLUDED.key_sealed, serial = EXCLUDED.serial,
      not_after = EXCLUDED.not_after, updated_at = now()
    WHERE certificates.source = 'acme' OR EXCLUDED.source = 'manual'`);
  await announce(db, c.domain);
}

/**
 * Records why an ACME order of app `appId` failed. A first order leaves the domain 'failed'; a failed
 * renewal keeps the certificate issued (it is still valid) with the error beside it. Manual rows and
 * rows of another app are left alone. When the row is gone (the domain was removed and added again
 * while the order ran) and the domain still belongs to the app, a 'failed' row is made, so the failure
 * shows in domains:report and the order is retried like any failed one.
 */
export async function saveAcmeFailure(db: Db, domain: string, appId: number, error: string): Promise<void> {
  await db.query(q`WITH updated AS (
      UPDATE certificates SET
        status = CASE WHEN status = 'issued' THEN 'issued' ELSE 'failed' END,
        error = ${error}, updated_at = now()
      WHERE domain = ${domain} AND source = 'acme' AND app_id = ${appId}
      RETURNING domain)
    INSERT INTO certificates (domain, app_id, source, status, error, last_attempt_at)
      SELECT d.domain, d.app_id, 'acme', 'failed', ${error}, now() FROM domains d
      WHERE d.domain = ${domain} AND d.app_id = ${appId} AND NOT EXISTS (SELECT 1 FROM updated)
    ON CONFLICT (domain) DO NOTHING`);
  await announce(db, domain);
}

/** Deletes the domain's certificate (of one source only, when given); the delete trigger announces it. */
export async function deleteCertificate(db: Db, domain: string, source?: CertificateSource): Promise<boolean> {
  const r = source === undefined
    ? await db.query(q`DELETE FROM certificates WHERE domain = ${domain}`)
    : await db.query(q`DELETE FROM certificates WHERE domain = ${domain} AND source = ${source}`);
  return r.rowCount > 0;
}

export interface DueCertificatesQuery {
  /** Issued ACME certificates expiring before this are due for renewal. */
  renewBefore: Date;
  /**
   * Failed orders last tried before this are tried again, first orders and renewals alike (pending
   * ones always are: the caller skips those under way).
   */
  retryBefore: Date;
}

/** ACME certificates to order now: expiring soon, pending, or failed and not tried lately. */
export async function listDueAcmeCertificates(db: Db, due: DueCertificatesQuery): Promise<CertificateRow[]> {
  const retryBefore = due.retryBefore.toISOString();
  const rows = await db.any(q`SELECT ${COLUMNS} FROM certificates
    WHERE source = 'acme' AND (
      (status = 'issued' AND not_after < ${due.renewBefore.toISOString()}
        AND (error IS NULL OR last_attempt_at IS NULL OR last_attempt_at < ${retryBefore}))
      OR status = 'pending'
      OR (status = 'failed' AND (last_attempt_at IS NULL OR last_attempt_at < ${retryBefore}))
    )
    ORDER BY domain`);
  return rows.map(toCertificate);
}

/**
 * Custom domains with no certificate row at all: never ordered (added while DECK_ACME was off), or
 * whose order's row went away while it ran. The caller orders those it orders for.
 */
export async function listDomainsWithoutCertificate(db: Db): Promise<{ domain: string; appId: number }[]> {
  const rows = await db.any(q`SELECT d.domain, d.app_id FROM domains d
    WHERE NOT EXISTS (SELECT 1 FROM certificates c WHERE c.domain = d.domain)
    ORDER BY d.domain`);
  return rows.map((r) => ({ domain: String(r.domain), appId: Number(r.app_id) }));
}

/** What a router serves: every issued certificate with its key, one entry per distinct chain. */
export async function listServableCertificates(db: Db): Promise<{ hosts: string[]; cert: string; key: string }[]> {
  const rows = await db.any(q`SELECT domain, cert_pem, key_sealed FROM certificates WHERE status = 'issued' ORDER BY domain`);
  const byChain = new Map<string, { hosts: string[]; cert: string; key: string }>();
  for (const r of rows) {
    const cert = String(r.cert_pem);
    const entry = byChain.get(cert);
    if (entry) entry.hosts.push(String(r.domain));
    else byChain.set(cert, { hosts: [String(r.domain)], cert, key: decryptSecret(String(r.key_sealed)) });
  }
  return [...byChain.values()];
}

// ---- ACME accounts ----
export interface AcmeAccountRow {
  directoryUrl: string;
  keyPem: string;
  accountUrl: string | null;
}

export async function findAcmeAccount(db: Db, directoryUrl: string): Promise<AcmeAccountRow | null> {
  const r = await db.maybeOne(q`SELECT directory_url, key_sealed, account_url FROM acme_accounts WHERE directory_url = ${directoryUrl}`);
  return r ? { directoryUrl: String(r.directory_url), keyPem: decryptSecret(String(r.key_sealed)), accountUrl: r.account_url == null ? null : String(r.account_url) } : null;
}

/** Stores a new account key unless another deck process stored one first; returns the one kept. */
export async function saveAcmeAccountKey(db: Db, directoryUrl: string, keyPem: string): Promise<AcmeAccountRow> {
  await db.query(q`INSERT INTO acme_accounts (directory_url, key_sealed) VALUES (${directoryUrl}, ${encryptSecret(keyPem)}) ON CONFLICT (directory_url) DO NOTHING`);
  return (await findAcmeAccount(db, directoryUrl))!;
}

export async function saveAcmeAccountUrl(db: Db, directoryUrl: string, accountUrl: string): Promise<void> {
  await db.query(q`UPDATE acme_accounts SET account_url = ${accountUrl} WHERE directory_url = ${directoryUrl}`);
}
