import { DeckError, isDeckError, isHostName, normalizeHostName } from "../core/index.ts";
import { forgetCertificate, refreshRoute, requestCertificate, type DeployDeps } from "../deploy/index.ts";
import { UniqueIntegrityConstraintViolationError } from "../store/index.ts";
import { addDomain, domainOwner, listDomains, removeDomain, type AppRow } from "../store/queries/index.ts";
import { authorizeApp, type Caller } from "./access.ts";
import { recordAction } from "./audit.ts";
import { tlsStatusesOf, tlsStatusOf, type TlsState } from "./certs.ts";

/** An app's domains: its default one (APP.DECK_DOMAIN) and the custom ones users add, with their TLS status. */

export interface DomainInfo {
  domain: string;
  default?: boolean;
  /** HTTPS state: self-signed, pending, issued, failed or manual. */
  sslStatus: TlsState;
  /** The same for people: `issued (expires 2026-05-01)`, `failed: REASON`, ... */
  tls: string;
  expiresAt: string | null;
  error: string | null;
}

export async function domainsOf(deps: DeployDeps, caller: Caller, appName: string): Promise<DomainInfo[]> {
  const app = await authorizeApp(deps.db, caller, "app:read", appName);
  const tls = await tlsStatusesOf(deps, app);
  const info = (domain: string, isDefault: boolean): DomainInfo => {
    const s = tls.get(domain) ?? tlsStatusOf(undefined);
    return { domain, ...(isDefault ? { default: true } : {}), sslStatus: s.state, tls: s.text, expiresAt: s.expiresAt, error: s.error };
  };
  return [info(`${app.name}.${deps.config.domain}`, true), ...(await listDomains(deps.db, app.id)).map((d) => info(d.domain, false))];
}

async function refuseTakenDomain(deps: DeployDeps, app: AppRow, domain: string): Promise<void> {
  const owner = await domainOwner(deps.db, domain);
  if (owner !== null) throw new DeckError("conflict", owner === app.id ? `${domain} is already a domain of ${app.name}` : `${domain} already belongs to another app`);
}

export async function addAppDomain(deps: DeployDeps, caller: Caller, appName: string, rawDomain: string): Promise<void> {
  const app = await authorizeApp(deps.db, caller, "domains:set", appName);
  const domain = normalizeHostName(rawDomain);
  if (!isHostName(domain)) throw new DeckError("validation_failed", `"${rawDomain.slice(0, 60)}" is not a domain name like www.example.com`);
  const own = deps.config.domain;
  if (domain === own) throw new DeckError("conflict", `${domain} is deck's own domain; apps get APP.${own} automatically, and a custom domain is one of your own, like www.example.com`);
  if (domain.endsWith(`.${own}`)) throw new DeckError("conflict", `${domain} is under deck's own domain ${own}; apps get APP.${own} automatically`);
  await refuseTakenDomain(deps, app, domain);
  try {
    await addDomain(deps.db, app.id, domain);
  } catch (e) {
    // Another domains:add of the same name got in between the check and the insert.
    if (!(e instanceof UniqueIntegrityConstraintViolationError)) throw e;
    await refuseTakenDomain(deps, app, domain);
    throw new DeckError("conflict", `${domain} was being added to an app at the same moment; run domains:add again`);
  }
  try {
    await refreshRoute(deps, app);
  } catch (e) {
    // The router did not take it (a host another app's route holds, the router down): no domain is
    // kept that the router does not serve.
    await removeDomain(deps.db, app.id, domain).catch((removeError: Error) => deps.log(`${app.name}: could not remove ${domain} again: ${removeError.message}`));
    // In case the router took the route after all (its answer lost on the way).
    await refreshRoute(deps, app).catch((r: Error) => deps.log(`${app.name}: could not send the route again after the router refused it: ${r.message}`));
    // The router's refusal names the app that holds the host: another tenant's, not for this caller.
    if (isDeckError(e) && e.code === "route_conflict") throw new DeckError("conflict", `${domain} is already served by another app; remove it there first`, {}, { cause: e });
    throw e;
  }
  await recordAction(deps, caller, "domains:add", app.name, { domain });
  requestCertificate(deps, app, domain);
}

export async function removeAppDomain(deps: DeployDeps, caller: Caller, appName: string, rawDomain: string): Promise<void> {
  const app = await authorizeApp(deps.db, caller, "domains:set", appName);
  const domain = normalizeHostName(rawDomain);
  if (!(await removeDomain(deps.db, app.id, domain))) throw new DeckError("not_found", `${domain.slice(0, 80)} is not a domain of ${app.name} (see domains:list ${app.name})`);
  await refreshRoute(deps, app);
  await forgetCertificate(deps, domain);
  await recordAction(deps, caller, "domains:remove", app.name, { domain });
}
