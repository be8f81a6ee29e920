/**
 * HTTPS certificates as users see them: their own certificates (certs:add, certs:remove), the default
 * domain's wildcard (certs:default:*), and each domain's TLS status (domains:report). Ordering and
 * renewing over ACME runs in the background (deploy/cert-manager.ts).
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import tls from "node:tls";
import { DeckError, isHostName, normalizeHostName } from "../core/index.ts";
import { pushCertificates, reasonOf, type DeployDeps } from "../deploy/index.ts";
import {
  audit, deleteCertificate, findCertificate, listCertificatesOfApp, listDomains, saveIssuedCertificate, type AppRow, type CertificateRow,
} from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";
import { recordAction } from "./audit.ts";

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
  await recordAction(deps, caller, "certs:add", app.name, { domains, serial: leaf.serialNumber, expiresAt: notAfter.toISOString() });
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
  await recordAction(deps, caller, "certs:remove", app.name, { domain, source: mine.source });
  if (domain !== `${app.name}.${deps.config.domain}`) deps.certs?.request(app, domain);
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
