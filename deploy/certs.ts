/**
 * HTTPS certificates for apps' domains: obtained over ACME (RFC 8555) with the HTTP-01 challenge the
 * router answers, renewed before they expire, or uploaded by the user (certs:add). PostgreSQL holds
 * them (keys sealed); the router gets the whole list whenever it changes.
 *
 * Orders run in the background: domains:add answers at once and the domain shows `pending` until
 * the order ends as `issued` or `failed: REASON` (domains:report).
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import tls from "node:tls";
import * as acme from "acme-client";
import type { DatabasePool } from "slonik";
import type { DeckConfig } from "../config/index.ts";
import { DeckError, isHostName, normalizeHostName, type RouterControl } from "../core/index.ts";
import {
  audit, deleteCertificate, domainOwner, findAcmeAccount, findCertificate, listCertificatesOfApp, listDomains, listDomainsWithoutCertificate, listDueAcmeCertificates, listServableCertificates,
  saveAcmeAccountKey, saveAcmeAccountUrl, saveAcmeFailure, saveIssuedCertificate, startAcmeAttempt, type AppRow, type CertificateRow, type Db,
} from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";
import type { DeployDeps } from "./deps.ts";

/** How often the renewal check runs; failed orders are tried again after FAILED_RETRY_MS. */
export const RENEWAL_CHECK_MS = 60 * 60 * 1000;
const FAILED_RETRY_MS = 6 * 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
/** The most one order may take in all: a CA that stops answering midway fails it, and the check goes on. */
export const ORDER_TIMEOUT_MS = 10 * 60 * 1000;
/** The most one HTTP request to the CA may wait for an answer (acme-client sets no limit of its own). */
export const ACME_REQUEST_TIMEOUT_MS = 30 * 1000;

/** Names no public CA will certify (RFC 6761, RFC 2606, RFC 6762): they keep the self-signed fallback. */
const PRIVATE_SUFFIXES = [".localhost", ".test", ".invalid", ".example", ".local", ".internal"];

/** A certificate and its key as a CA issued them. */
export interface ObtainedCertificate {
  certPem: string;
  keyPem: string;
  serial: string;
  notAfter: Date;
}

/** Where certificates come from: one order for one domain (an ACME CA; a fake in tests). */
export interface CertificateIssuer {
  obtain(domain: string): Promise<ObtainedCertificate>;
}

export interface CertManagerDeps {
  db: DatabasePool;
  config: DeckConfig;
  router: RouterControl;
  log(line: string): void;
  /** Default: the ACME CA at DECK_ACME_DIRECTORY (AcmeIssuer). */
  issuer?: CertificateIssuer;
  /** Default ORDER_TIMEOUT_MS. */
  orderTimeoutMs?: number;
}

/** Whether deck orders a certificate for `domain` by itself. */
export function acmeEligible(config: DeckConfig, domain: string): boolean {
  if (config.acme !== "on") return false;
  if (domain === config.domain || domain.endsWith(`.${config.domain}`)) return false;
  return !PRIVATE_SUFFIXES.some((s) => domain.endsWith(s)) && domain !== "localhost";
}

/** Sends every issued certificate to the router. */
export async function pushCertificates(deps: { db: Db; router: RouterControl }): Promise<void> {
  await deps.router.setCertificates(await listServableCertificates(deps.db));
}

/** One line from an ACME or network error, without the stack or the ACME problem URN noise. */
function reasonOf(e: unknown): string {
  const text = (e as Error)?.message ?? String(e);
  return text.replace(/\s+/g, " ").replace(/urn:ietf:params:acme:error:/g, "").trim().slice(0, 300) || "unknown error";
}

/** `work`, or an error once `ms` pass first (the work itself is not stopped: its result is ignored). */
async function withDeadline<T>(work: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(timedOut()), ms)));
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
    // Work that lost the race to the deadline may still fail: the caller has its answer (the
    // timeout), so that later failure is not a rejection anyone is left to handle.
    work.catch(() => undefined);
  }
}

function duration(ms: number): string {
  if (ms >= 60_000) return `${Math.round(ms / 60_000)} minutes`;
  return ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`;
}

/**
 * Runs ACME orders in the background, one at a time per domain, and the periodic renewal check.
 * Created once by the deck server (DeployDeps.certs).
 */
export class CertManager {
  private readonly running = new Map<string, Promise<void>>();
  /** Orders asked for while the domain's order ran (it moved to another app, or was removed and added again): made once it ends. */
  private readonly requested = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<string[]> | undefined;
  private stopping = false;
  private readonly issuer: CertificateIssuer;
  private readonly orderTimeoutMs: number;

  constructor(private readonly deps: CertManagerDeps) {
    this.issuer = deps.issuer ?? new AcmeIssuer(deps);
    this.orderTimeoutMs = deps.orderTimeoutMs ?? ORDER_TIMEOUT_MS;
  }

  /** Pushes the stored certificates to the router, then checks for due orders now and every hour. */
  async start(): Promise<void> {
    await pushCertificates(this.deps).catch((e: Error) => this.deps.log(`certificates: cannot send them to the router: ${e.message}`));
    const check = () => void this.checkDue().catch((e: Error) => this.deps.log(`certificates: renewal check failed: ${e.message}`));
    check();
    this.timer = setInterval(check, RENEWAL_CHECK_MS);
    this.timer.unref();
  }

  /**
   * Stops the timer and gives orders under way until the deadline to end as issued or failed; one
   * cut short stays pending and is ordered again at the next start.
   */
  async stop(deadlineMs = 10_000): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise((r) => (timer = setTimeout(r, deadlineMs)))]);
    clearTimeout(timer);
  }

  /** Resolves when no order is running. */
  async idle(): Promise<void> {
    while (this.running.size > 0 || this.checking) {
      await Promise.allSettled([...this.running.values(), this.checking]);
    }
  }

  /**
   * Starts an order for `domain` in the background unless deck leaves it to the fallback. While one
   * runs, the request is kept and made when it ends: that order may be for the app the domain just
   * left, or end as the domain is being added again.
   */
  request(app: { id: number }, domain: string): void {
    if (this.stopping || !acmeEligible(this.deps.config, domain)) return;
    if (this.running.has(domain)) return void this.requested.set(domain, app.id);
    const order = this.order(app.id, domain)
      .catch((e: Error) => {
        this.deps.log(`certificates: ordering one for ${domain} failed: ${e.message}`);
        return false;
      })
      .then((kept) => {
        this.running.delete(domain);
        const again = this.requested.get(domain);
        this.requested.delete(domain);
        // Asked again by the app that now holds a fresh certificate: nothing more to order.
        if (again !== undefined && !(kept && again === app.id)) this.request({ id: again }, domain);
      });
    this.running.set(domain, order);
  }

  /**
   * Orders what is due: certificates expiring within `renewDays` (default DECK_ACME_RENEW_DAYS),
   * domains still pending or with no certificate at all, and failed ones (first orders and renewals)
   * not tried for FAILED_RETRY_MS. One order at a time, each ended by ORDER_TIMEOUT_MS at the latest.
   * Returns the domains ordered.
   */
  async checkDue(now = new Date(), renewDays = this.deps.config.acmeRenewDays): Promise<string[]> {
    if (this.checking) return this.checking;
    const run = (async () => {
      const { db, config } = this.deps;
      const rows = await listDueAcmeCertificates(db, { renewBefore: new Date(now.getTime() + renewDays * DAY_MS), retryBefore: new Date(now.getTime() - FAILED_RETRY_MS) });
      // ACME rows always belong to an app (only the manual wildcard of the default domain has none).
      const due = [...rows.flatMap((c) => (c.appId === null ? [] : [{ domain: c.domain, appId: c.appId }])), ...(await listDomainsWithoutCertificate(db))];
      const ordered: string[] = [];
      for (const c of due) {
        // A pending row counts only when no order for it runs here (a crash left it pending).
        if (this.stopping || this.running.has(c.domain) || !acmeEligible(config, c.domain)) continue;
        ordered.push(c.domain);
        this.request({ id: c.appId }, c.domain);
        // One at a time: a renewal batch must not hammer the CA.
        await this.running.get(c.domain);
      }
      return ordered;
    })();
    this.checking = run;
    try {
      return await run;
    } finally {
      this.checking = undefined;
    }
  }

  /** One order; true when it kept a certificate for the app. */
  private async order(appId: number, domain: string): Promise<boolean> {
    const { db, log } = this.deps;
    if (!(await startAcmeAttempt(db, domain, appId))) return false;
    log(`certificates: ordering one for ${domain} from ${this.deps.config.acmeDirectory}`);
    try {
      const timedOut = () => new Error(`the order did not finish within ${duration(this.orderTimeoutMs)} (timed out)`);
      const issued = await withDeadline(this.issuer.obtain(domain), this.orderTimeoutMs, timedOut);
      if ((await domainOwner(db, domain)) !== appId) {
        log(`certificates: ${domain} left its app while its certificate was being ordered; not kept`);
        await deleteCertificate(db, domain, "acme");
        return false;
      }
      await saveIssuedCertificate(db, { domain, appId, source: "acme", ...issued });
      log(`certificates: ${domain} issued, serial ${issued.serial}, expires ${issued.notAfter.toISOString().slice(0, 10)}`);
    } catch (e) {
      const reason = reasonOf(e);
      log(`certificates: ordering one for ${domain} failed: ${reason}`);
      await saveAcmeFailure(db, domain, appId, reason).catch((s: Error) => log(`certificates: cannot record that ${domain} failed: ${s.message}`));
      return false;
    }
    await pushCertificates(this.deps).catch((e: Error) => log(`certificates: cannot send them to the router: ${e.message}`));
    return true;
  }
}

/**
 * acme-client sends every request through one axios instance, with no timeout of its own: a CA that
 * accepts connections and never answers would hold an order forever. Sets one (for the whole process).
 */
function limitAcmeRequests(timeoutMs: number): void {
  acme.axios.defaults.timeout = timeoutMs;
  const responses = acme.axios.interceptors.response;
  if (responses.handlers?.some((h) => h?.rejected === explainTimeout)) return;
  // acme-client's own error handler reads the response of a failed request, and one that timed out has
  // none ("Cannot read properties of undefined"): this one runs first and makes the timeout a plain
  // error, which acme-client's handler passes on as it is.
  responses.handlers = [{ fulfilled: (r) => r, rejected: explainTimeout, synchronous: false, runWhen: null }, ...(responses.handlers ?? [])];
}

function explainTimeout(error: unknown): never {
  const e = error as { code?: string; message?: string; response?: unknown; config?: { url?: string; timeout?: number } } | null;
  if (e?.code === "ECONNABORTED" && e.response === undefined && e.config?.timeout && /^timeout/.test(e.message ?? "")) {
    throw new Error(`no answer from ${String(e.config.url).slice(0, 200)} within ${duration(e.config.timeout)} (request timed out)`, { cause: error });
  }
  throw error;
}

export interface AcmeIssuerOptions extends Pick<CertManagerDeps, "db" | "config" | "router"> {
  /** Default ACME_REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
}

/** Orders from the ACME CA at DECK_ACME_DIRECTORY (RFC 8555) with the HTTP-01 challenge the router answers. */
export class AcmeIssuer implements CertificateIssuer {
  constructor(private readonly options: AcmeIssuerOptions) {
    limitAcmeRequests(options.requestTimeoutMs ?? ACME_REQUEST_TIMEOUT_MS);
  }

  /** One ACME order with an HTTP-01 challenge per authorization, answered by the router. */
  async obtain(domain: string): Promise<ObtainedCertificate> {
    const { router, config } = this.options;
    const client = await this.client();
    const [key, csr] = await acme.crypto.createCsr({ commonName: domain, altNames: [domain] }, await acme.crypto.createPrivateEcdsaKey());
    const certPem = await client.auto({
      csr,
      email: config.acmeEmail,
      termsOfServiceAgreed: true,
      challengePriority: ["http-01"],
      // The CA checks; a self-check from here would go through the same router and prove nothing more.
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => router.setAcmeChallenge(challenge.token, keyAuthorization),
      challengeRemoveFn: async (_authz, challenge) => router.removeAcmeChallenge(challenge.token),
    });
    const accountUrl = client.getAccountUrl();
    await saveAcmeAccountUrl(this.options.db, config.acmeDirectory, accountUrl);
    const leaf = new X509Certificate(certPem);
    return { certPem, keyPem: key.toString(), serial: leaf.serialNumber, notAfter: new Date(leaf.validTo) };
  }

  /** A client for the configured directory with deck's account key (made once, stored sealed). */
  private async client(): Promise<acme.Client> {
    const { db, config } = this.options;
    let account = await findAcmeAccount(db, config.acmeDirectory);
    if (!account) account = await saveAcmeAccountKey(db, config.acmeDirectory, (await acme.crypto.createPrivateEcdsaKey()).toString());
    return new acme.Client({
      directoryUrl: config.acmeDirectory,
      accountKey: account.keyPem,
      accountUrl: account.accountUrl ?? undefined,
      // Poll from 1 s doubling up to 30 s: about 2.5 minutes before an order counts as stuck.
      backoffMin: 1000,
      backoffMax: 30_000,
      backoffAttempts: 10,
    });
  }
}

// ---------- your own certificates ----------

export type CertificateBundle =
  | { ok: true; chain: string; key: string; leaf: X509Certificate }
  | { ok: false; message: string };

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
const PEM_KEY = /-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[\s\S]*?-----END \1-----/g;
const USAGE = "send the certificate chain and its private key as PEM: cat cert.pem key.pem | ssh deck@HOST certs:add APP";

/** Splits a PEM bundle into a chain (leaf first) and a key, and checks that they belong together. */
export function parseCertificateBundle(text: string, now = new Date()): CertificateBundle {
  const certs = text.match(PEM_CERT) ?? [];
  const keys = [...text.matchAll(PEM_KEY)];
  if (certs.length === 0) return { ok: false, message: `no certificate found; ${USAGE}` };
  if (keys.length === 0) return { ok: false, message: `no private key found; ${USAGE}` };
  if (keys.length > 1) return { ok: false, message: "more than one private key found; send only the certificate's own key" };
  if (keys[0]![1] === "ENCRYPTED PRIVATE KEY") return { ok: false, message: "the private key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem)" };
  let key: KeyObject;
  try {
    key = createPrivateKey(keys[0]![0]);
  } catch (e) {
    return { ok: false, message: `the private key cannot be read: ${reasonOf(e)}` };
  }
  const parsed: X509Certificate[] = [];
  for (const [i, pem] of certs.entries()) {
    try {
      parsed.push(new X509Certificate(pem));
    } catch (e) {
      return { ok: false, message: `certificate ${i + 1} in the bundle cannot be read: ${reasonOf(e)}` };
    }
  }
  const leafIndex = parsed.findIndex((c) => c.checkPrivateKey(key));
  if (leafIndex === -1) return { ok: false, message: "the private key does not match the certificate" };
  const leaf = parsed[leafIndex]!;
  if (new Date(leaf.validTo) <= now) return { ok: false, message: `the certificate expired on ${new Date(leaf.validTo).toISOString().slice(0, 10)}` };
  if (new Date(leaf.validFrom) > now) return { ok: false, message: `the certificate is not valid before ${new Date(leaf.validFrom).toISOString().slice(0, 10)}` };
  const chain = [certs[leafIndex]!, ...certs.filter((_, i) => i !== leafIndex)].map((c) => `${c}\n`).join("");
  const keyPem = key.export({ type: "pkcs8", format: "pem" }).toString();
  try {
    tls.createSecureContext({ cert: chain, key: keyPem });
  } catch (e) {
    return { ok: false, message: `the certificate cannot be served: ${reasonOf(e)}` };
  }
  return { ok: true, chain, key: keyPem, leaf };
}

/** The DNS names a certificate covers (subjectAltName, else the common name), for messages. */
function certifiedNames(leaf: X509Certificate): string[] {
  const san = leaf.subjectAltName?.split(/,\s*/).filter((n) => n.startsWith("DNS:")).map((n) => n.slice(4)) ?? [];
  if (san.length > 0) return san;
  const cn = /CN=([^\n,]+)/.exec(leaf.subject)?.[1];
  return cn ? [cn] : [];
}

async function allDomainsOf(deps: DeployDeps, app: AppRow): Promise<string[]> {
  return [`${app.name}.${deps.config.domain}`, ...(await listDomains(deps.db, app.id)).map((d) => d.domain)];
}

function record(deps: DeployDeps, caller: Caller, action: string, target: string, data: Record<string, unknown>): Promise<void> {
  return audit(deps.db, { userId: caller.user.id, action, target, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, ...data } });
}

/** `certs:add APP`: stores the user's certificate for every domain of the app it names, and serves it. */
export async function addOwnCertificate(deps: DeployDeps, caller: Caller, appName: string, bundle: string): Promise<{ domains: string[]; expiresAt: string }> {
  const app = await authorizeApp(deps.db, caller, "domains:set", appName);
  const parsed = parseCertificateBundle(bundle);
  if (!parsed.ok) throw new DeckError("invalid_certificate", parsed.message);
  const { leaf } = parsed;
  const covered = (await allDomainsOf(deps, app)).filter((d) => leaf.checkHost(d) !== undefined);
  // The router serves host names only (the check domains:add makes): a row it would leave out is never saved.
  const domains = covered.filter((d) => isHostName(d));
  const unservable = covered.find((d) => !isHostName(d));
  if (domains.length === 0 && unservable !== undefined) {
    throw new DeckError("invalid_certificate", `${unservable.slice(0, 80)} is not a host name the router can serve a certificate for; remove it (domains:remove ${app.name} ${unservable.slice(0, 80)}) and add a valid domain`);
  }
  if (domains.length === 0) {
    const names = certifiedNames(leaf).slice(0, 5).join(", ") || "no DNS name";
    throw new DeckError("invalid_certificate", `the certificate is for ${names}, which is not a domain of ${app.name}; add the domain first (domains:add ${app.name} DOMAIN)`);
  }
  const notAfter = new Date(leaf.validTo);
  // The router gets the list before the rows are committed: a certificate it cannot take (a list over
  // its limit, no router answering) is not kept, so domains:report never shows one that is not served.
  await deps.db.transaction(async (tx) => {
    for (const domain of domains) {
      await saveIssuedCertificate(tx, { domain, appId: app.id, source: "manual", certPem: parsed.chain, keyPem: parsed.key, serial: leaf.serialNumber, notAfter });
    }
    await pushCertificates({ db: tx, router: deps.router });
  });
  await record(deps, caller, "certs:add", app.name, { domains, serial: leaf.serialNumber, expiresAt: notAfter.toISOString() });
  return { domains, expiresAt: notAfter.toISOString() };
}

/** `certs:remove APP DOMAIN`: drops the domain's certificate; a custom domain then gets an automatic one again. */
export async function removeCertificate(deps: DeployDeps, caller: Caller, appName: string, rawDomain: string): Promise<void> {
  const app = await authorizeApp(deps.db, caller, "domains:set", appName);
  const domain = normalizeHostName(rawDomain);
  const mine = (await listCertificatesOfApp(deps.db, app.id)).find((c) => c.domain === domain);
  if (!mine) throw new DeckError("not_found", `${domain.slice(0, 80)} has no certificate in ${app.name} (see domains:report ${app.name})`);
  await deleteCertificate(deps.db, domain);
  await pushCertificates(deps);
  await record(deps, caller, "certs:remove", app.name, { domain, source: mine.source });
  if (domain !== `${app.name}.${deps.config.domain}`) deps.certs?.request(app, domain);
}

/** After domains:add: order a certificate in the background (when deck does that for this name). */
export function requestCertificate(deps: DeployDeps, app: { id: number }, domain: string): void {
  deps.certs?.request(app, domain);
}

/** After domains:remove: the domain's certificate goes too. */
export async function forgetCertificate(deps: DeployDeps, domain: string): Promise<void> {
  if (await deleteCertificate(deps.db, domain)) await pushCertificates(deps);
}

// ---------- status ----------

export type TlsState = "self-signed" | "pending" | "issued" | "failed" | "manual";

export interface TlsStatus {
  state: TlsState;
  /** One line for people: `issued (expires 2026-05-01)`, `failed: REASON`, ... */
  text: string;
  expiresAt: string | null;
  error: string | null;
}

export function tlsStatusOf(row: CertificateRow | undefined): TlsStatus {
  if (!row) return { state: "self-signed", text: "self-signed", expiresAt: null, error: null };
  const expires = row.notAfter?.slice(0, 10);
  if (row.source === "manual") return { state: "manual", text: `manual (expires ${expires})`, expiresAt: row.notAfter, error: null };
  if (row.status === "issued") {
    const text = row.error ? `issued (expires ${expires}; renewal failed: ${row.error})` : `issued (expires ${expires})`;
    return { state: "issued", text, expiresAt: row.notAfter, error: row.error };
  }
  if (row.status === "failed") return { state: "failed", text: `failed: ${row.error ?? "unknown error"}`, expiresAt: null, error: row.error };
  return { state: "pending", text: "pending", expiresAt: null, error: null };
}

/** TLS status of each of the app's domains, by domain; the default domain may be covered by the platform's wildcard. */
export async function tlsStatusesOf(deps: DeployDeps, app: { id: number; name: string }): Promise<Map<string, TlsStatus>> {
  const rows = await listCertificatesOfApp(deps.db, app.id);
  const statuses = new Map(rows.map((r) => [r.domain, tlsStatusOf(r)]));
  const wildcard = await findCertificate(deps.db, `*.${deps.config.domain}`);
  if (wildcard) {
    const own = `${app.name}.${deps.config.domain}`;
    if (!statuses.has(own)) {
      statuses.set(own, { state: "manual", text: `wildcard *.${deps.config.domain} (expires ${wildcard.notAfter?.slice(0, 10)})`, expiresAt: wildcard.notAfter, error: null });
    }
  }
  return statuses;
}

// ---------- the default domain's wildcard certificate ----------

/**
 * `certs:default:add`: a platform admin's certificate for `*.DECK_DOMAIN`, served for every app's
 * default name (APP.DECK_DOMAIN) that has no certificate of its own.
 */
export async function setDefaultCertificate(deps: DeployDeps, caller: Caller, bundle: string): Promise<{ domain: string; expiresAt: string }> {
  if (!caller.actor.isAdmin) throw new DeckError("forbidden", "only platform admins may set the default domain's certificate (permission: admin)");
  const parsed = parseCertificateBundle(bundle);
  if (!parsed.ok) throw new DeckError("invalid_certificate", parsed.message);
  const { leaf } = parsed;
  const domain = `*.${deps.config.domain}`;
  if (!certifiedNames(leaf).map((n) => n.toLowerCase()).includes(domain)) {
    const names = certifiedNames(leaf).slice(0, 5).join(", ") || "no DNS name";
    throw new DeckError("invalid_certificate", `the certificate is for ${names}; the default domain needs one for ${domain} (DECK_DOMAIN is ${deps.config.domain})`);
  }
  const notAfter = new Date(leaf.validTo);
  await saveIssuedCertificate(deps.db, { domain, appId: null, source: "manual", certPem: parsed.chain, keyPem: parsed.key, serial: leaf.serialNumber, notAfter });
  await pushCertificates(deps);
  await audit(deps.db, { userId: caller.user.id, action: "certs:default:add", target: domain, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via, serial: leaf.serialNumber, expiresAt: notAfter.toISOString() } });
  return { domain, expiresAt: notAfter.toISOString() };
}

/** `certs:default:remove`: default names go back to the self-signed fallback. */
export async function removeDefaultCertificate(deps: DeployDeps, caller: Caller): Promise<void> {
  if (!caller.actor.isAdmin) throw new DeckError("forbidden", "only platform admins may remove the default domain's certificate (permission: admin)");
  const domain = `*.${deps.config.domain}`;
  if (!(await deleteCertificate(deps.db, domain))) throw new DeckError("not_found", `no certificate is set for ${domain} (certs:default:add sets one)`);
  await pushCertificates(deps);
  await audit(deps.db, { userId: caller.user.id, action: "certs:default:remove", target: domain, sourceIp: caller.sourceIp, result: "ok", data: { via: caller.via } });
}
