/**
 * HTTPS certificates for apps' domains, the background side: ordered over ACME (RFC 8555) with the
 * HTTP-01 challenge the router answers and renewed before they expire. PostgreSQL holds them (keys
 * sealed); the router gets the whole list whenever it changes. Users' own certificates and the TLS
 * status domains:report shows are operations (ops/certs.ts).
 *
 * Orders run in the background: domains:add answers at once and the domain shows `pending` until
 * the order ends as `issued` or `failed: REASON` (domains:report).
 */
import { X509Certificate } from "node:crypto";
import * as acme from "acme-client";
import type { DatabasePool } from "slonik";
import type { DeckConfig } from "../config/index.ts";
import type { RouterControl } from "../core/index.ts";
import {
  deleteCertificate, domainOwner, findAcmeAccount, listDomainsWithoutCertificate, listDueAcmeCertificates, listServableCertificates,
  saveAcmeAccountKey, saveAcmeAccountUrl, saveAcmeFailure, saveIssuedCertificate, startAcmeAttempt, type Db,
} from "../store/queries/index.ts";
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

/** One line from an ACME, network or crypto error, without the stack or the ACME problem URN noise. */
export function reasonOf(e: unknown): string {
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

/** After domains:add: order a certificate in the background (when deck does that for this name). */
export function requestCertificate(deps: DeployDeps, app: { id: number }, domain: string): void {
  deps.certs?.request(app, domain);
}

/** After domains:remove: the domain's certificate goes too. */
export async function forgetCertificate(deps: DeployDeps, domain: string): Promise<void> {
  if (await deleteCertificate(deps.db, domain)) await pushCertificates(deps);
}
