import { z } from "zod/v4";
import { DeckError, roleFor } from "../../core/index.ts";
import {
  addAppDomain, addOwnCertificate, appAudit, cancelBuilds, changeConfig, clearBuildCache, createApp, deploymentsOf, deploymentWithLog, destroyApp, domainsOf,
  findBuildOutput, grantAppAccess, listAppAccess, listBuilds, listVisibleApps, releasesOf, removeAppDomain, removeCertificate, removeDefaultCertificate,
  report, restart, revokeAppAccess, rollback, scale, setDefaultCertificate, setHealthCheck, showConfig, REVEAL_CONFIG,
} from "../../ops/index.ts";
import { MINIMUM_SCOPE } from "../auth/scopes.ts";
import { defineRoute } from "../registry.ts";
import { appName, appParams, configKey, email, offsetPage, outputLines, page, role } from "../schemas.ts";

const appSummary = z.object({ name: z.string(), status: z.string(), framework: z.string().nullable(), createdAt: z.string() });

defineRoute({
  method: "get", path: "/apps", scope: "read", tag: "apps", summary: "List the apps you can see", query: offsetPage,
  response: z.object({ items: z.array(appSummary), next: z.number().nullable() }),
  handler: async ({ deps, caller, query }) => {
    const all = await listVisibleApps(deps, caller);
    const items = all.slice(query.offset, query.offset + query.limit).map((a) => ({ name: a.name, status: a.status, framework: a.framework, createdAt: a.createdAt }));
    return { items, next: query.offset + query.limit < all.length ? query.offset + query.limit : null };
  },
});

defineRoute({
  method: "post", path: "/apps", scope: "deploy", tag: "apps", summary: "Create an app", status: 201,
  body: z.object({ name: appName }).strict(), response: appSummary,
  handler: async ({ deps, caller, body }) => {
    const a = await createApp(deps, caller, body.name);
    return { name: a.name, status: a.status, framework: a.framework, createdAt: a.createdAt };
  },
});

defineRoute({
  method: "get", path: "/apps/:app", scope: "read", tag: "apps", summary: "An app's status, release, formation, processes and your role on it", params: appParams,
  handler: async ({ deps, caller, params }) => {
    const r = await report(deps, caller, params.app);
    // The role that decides what the caller may do here (a per-app grant wins over the org role), so a
    // client can hide what it would be refused; a platform admin with neither acts as "platform-admin".
    const role = roleFor(caller.actor, { orgId: r.app.orgId, appId: r.app.id }) ?? (caller.actor.isAdmin ? "platform-admin" : null);
    return {
      name: r.app.name, status: r.app.stopped ? "stopped" : r.app.status, stopped: r.app.stopped, maintenance: r.app.router.maintenance, router: r.router.state, role,
      url: r.url, framework: r.app.framework, healthCheckPath: r.app.healthCheckPath,
      release: r.release ? { version: r.release.version, description: r.release.description, commit: r.release.commitSha } : null,
      formation: Object.fromEntries(r.formation),
      processes: r.processes.map((p) => ({ name: `${p.type}.${p.index}`, state: p.state, port: p.port ?? null, restarts: p.restarts, startedAt: p.startedAt })),
    };
  },
});

defineRoute({
  method: "patch", path: "/apps/:app", scope: "write", tag: "apps", summary: "Change app settings (health check path)", params: appParams,
  body: z.object({ healthCheckPath: z.string().max(200) }).strict(),
  handler: async ({ deps, caller, params, body }) => {
    await setHealthCheck(deps, caller, params.app, body.healthCheckPath);
  },
});

defineRoute({
  method: "delete", path: "/apps/:app", scope: "admin", tag: "apps", summary: "Destroy an app (confirm with ?confirm=APP)", params: appParams,
  query: z.object({ confirm: z.string().max(63) }).strict(),
  handler: async ({ deps, caller, params, query }) => {
    if (query.confirm !== params.app) throw new DeckError("validation_failed", `this permanently deletes ${params.app}; repeat with ?confirm=${params.app}`);
    await destroyApp(deps, caller, params.app);
  },
});

// ---------- config ----------
defineRoute({
  method: "get", path: "/apps/:app/config", scope: "read", tag: "config", summary: "Config vars (values masked unless reveal=true and you may change config)", params: appParams,
  scopeWhen: { query: "reveal", equals: "true", scope: MINIMUM_SCOPE[REVEAL_CONFIG] },
  query: z.object({ reveal: z.enum(["true", "false"]).optional() }).strict(), response: z.record(z.string(), z.string()),
  handler: async ({ deps, caller, params, query }) => {
    return showConfig(deps, caller, params.app, { reveal: query.reveal === "true" });
  },
});

defineRoute({
  method: "patch", path: "/apps/:app/config", scope: "write", tag: "config", summary: "Set and unset config vars; a live app is redeployed", params: appParams,
  body: z.object({ set: z.record(configKey, z.string().max(32 * 1024)).optional(), unset: z.array(configKey).max(100).optional() }).strict(),
  response: outputLines.extend({ release: z.number().nullable() }),
  handler: async ({ deps, caller, params, body }) => {
    const set = body.set ?? {};
    if ("PORT" in set) throw new DeckError("validation_failed", "PORT is set by deck for each web process and cannot be configured");
    if (!Object.keys(set).length && !(body.unset ?? []).length) throw new DeckError("validation_failed", "body: give `set` and/or `unset`");
    const output: string[] = [];
    let release: number | null = null;
    if (Object.keys(set).length) release = (await changeConfig(deps, caller, params.app, { set }, (l) => output.push(l))).version ?? release;
    if ((body.unset ?? []).length) release = (await changeConfig(deps, caller, params.app, { unset: body.unset }, (l) => output.push(l))).version ?? release;
    return { output, release };
  },
});


// ---------- releases and deployments ----------
defineRoute({
  method: "get", path: "/apps/:app/releases", scope: "read", tag: "releases", summary: "Release history, newest first", params: appParams, query: page,
  handler: async ({ deps, caller, params, query }) => {
    const { releases } = await releasesOf(deps, caller, params.app);
    const items = releases.filter((r) => query.before === undefined || r.version < query.before).slice(0, query.limit)
      .map((r) => ({ version: r.version, status: r.status, description: r.description, commit: r.commitSha, createdAt: r.createdAt }));
    return { items, next: items.length === query.limit ? items[items.length - 1].version : null };
  },
});

defineRoute({
  method: "post", path: "/apps/:app/rollback", scope: "write", tag: "releases", summary: "Roll back to a release (default: the one before the live one)", params: appParams,
  body: z.object({ version: z.number().int().positive().optional() }).strict(), response: outputLines.extend({ release: z.number(), target: z.number() }),
  handler: async ({ deps, caller, params, body }) => {
    const output: string[] = [];
    const r = await rollback(deps, caller, params.app, body.version === undefined ? undefined : `v${body.version}`, (l) => output.push(l));
    return { output, release: r.version, target: r.target };
  },
});

defineRoute({
  method: "get", path: "/apps/:app/deployments", scope: "read", tag: "deployments", summary: "Deployments, newest first", params: appParams, query: page,
  handler: async ({ deps, caller, params, query }) => {
    const items = await deploymentsOf(deps, caller, params.app, { limit: query.limit, before: query.before });
    return { items, next: items.length === query.limit ? (items[items.length - 1].id as number) : null };
  },
});

defineRoute({
  method: "get", path: "/apps/:app/deployments/:id", scope: "deploy", tag: "deployments", summary: "One deployment with its build log",
  params: z.object({ app: appName, id: z.coerce.number().int().positive() }).strict(),
  handler: async ({ deps, caller, params }) => {
    const { deployment: d, log } = await deploymentWithLog(deps, caller, params.app, params.id);
    return { id: d.id, kind: d.kind, status: d.status, commit: d.commitSha, buildTimeMs: d.buildTime, error: d.error, errorCode: d.errorCode, createdAt: d.createdAt, log };
  },
});

// ---------- builds ----------
const buildSummary = z.object({
  id: z.number().nullable(), status: z.string(), commit: z.string(), buildpack: z.string().nullable(), durationMs: z.number().nullable(),
  sizeBytes: z.number().nullable(), repoSizeBytes: z.number().nullable(), artifact: z.enum(["kept", "pruned"]).nullable(), startedAt: z.string(), pusher: z.string().nullable(), error: z.string().nullable(),
});

defineRoute({
  method: "get", path: "/apps/:app/builds", scope: "deploy", tag: "builds", summary: "Recent builds, newest first (pushes waiting for their turn have no id yet)", params: appParams,
  query: z.object({ limit: z.coerce.number().int().min(1).max(100).default(20) }).strict(),
  response: z.object({ items: z.array(buildSummary) }),
  handler: async ({ deps, caller, params, query }) => ({ items: await listBuilds(deps, caller, params.app, query.limit) }),
});

defineRoute({
  method: "get", path: "/apps/:app/builds/:id", scope: "deploy", tag: "builds",
  summary: "A build's output (id or `latest`); follow=true streams a build in progress as server-sent events until it ends",
  params: z.object({ app: appName, id: z.union([z.literal("latest"), z.coerce.number().int().positive()]) }).strict(),
  query: z.object({ follow: z.enum(["true", "false"]).default("false") }).strict(),
  raw: true,
  handler: async ({ ctx, deps, caller, params, query }) => {
    const target = await findBuildOutput(deps, caller, params.app, params.id === "latest" ? undefined : params.id);
    if (target.kind === "finished") {
      ctx.status = 200;
      ctx.body = { ...target.summary, running: false, lines: target.lines };
      return;
    }
    if (query.follow !== "true") {
      const lines: string[] = [];
      await target.run.follow((l) => lines.push(l), AbortSignal.abort());
      ctx.status = 200;
      ctx.body = { id: target.id, status: target.id === null ? "queued" : "running", commit: target.run.commitSha, running: true, lines };
      return;
    }
    ctx.respond = false;
    const res = ctx.res;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" });
    const abort = new AbortController();
    ctx.req.on("close", () => abort.abort());
    const ping = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
    await target.run.follow((l) => res.write(`data: ${l.replace(/\r?\n/g, " ")}\n\n`), abort.signal);
    clearInterval(ping);
    res.end("event: end\ndata: \n\n");
  },
});

defineRoute({
  method: "post", path: "/apps/:app/builds/cancel", scope: "deploy", tag: "builds", summary: "Cancel the app's running build and any push of it waiting (those pushes are rejected)",
  params: appParams,
  response: z.object({ cancelled: z.array(z.object({ id: z.number().nullable(), state: z.string() })) }),
  handler: async ({ deps, caller, params }) => ({ cancelled: await cancelBuilds(deps, caller, params.app) }),
});

defineRoute({
  method: "delete", path: "/apps/:app/builds/cache", scope: "deploy", tag: "builds", summary: "Delete the app's build cache; the next build starts cold", params: appParams,
  response: z.object({ freedBytes: z.number() }),
  handler: async ({ deps, caller, params }) => clearBuildCache(deps, caller, params.app),
});

// ---------- processes ----------
defineRoute({
  method: "patch", path: "/apps/:app/formation", scope: "write", tag: "processes", summary: "Scale process types (blue-green)", params: appParams,
  body: z.record(z.string().regex(/^[a-z][a-z0-9_-]{0,30}$/), z.number().int().min(0).max(50)),
  response: outputLines.extend({ formation: z.record(z.string(), z.number()) }),
  handler: async ({ deps, caller, params, body }) => {
    if (!Object.keys(body).length) throw new DeckError("validation_failed", "body: give at least one TYPE: COUNT, e.g. {\"web\": 2}");
    const output: string[] = [];
    const formation = await scale(deps, caller, params.app, body, (l) => output.push(l));
    return { output, formation };
  },
});

defineRoute({
  method: "post", path: "/apps/:app/restart", scope: "deploy", tag: "processes", summary: "Restart the app's processes (blue-green)", params: appParams,
  response: outputLines,
  handler: async ({ deps, caller, params }) => {
    const output: string[] = [];
    await restart(deps, caller, params.app, (l) => output.push(l));
    return { output };
  },
});

// ---------- domains ----------
const tlsStatus = z.object({
  domain: z.string(), default: z.boolean().optional(),
  sslStatus: z.enum(["self-signed", "pending", "issued", "failed", "manual"]),
  tls: z.string().describe("the status in words: issued (expires 2026-05-01), failed: REASON, ..."),
  expiresAt: z.string().nullable(), error: z.string().nullable(),
});

defineRoute({
  method: "get", path: "/apps/:app/domains", scope: "read", tag: "domains", summary: "The app's domains (its default one first)", params: appParams,
  response: z.object({ items: z.array(tlsStatus) }),
  handler: async ({ deps, caller, params }) => ({ items: await domainsOf(deps, caller, params.app) }),
});

defineRoute({
  method: "post", path: "/apps/:app/domains", scope: "write", tag: "domains", summary: "Add a custom domain", params: appParams, status: 201,
  body: z.object({ domain: z.string().max(253) }).strict(),
  handler: async ({ deps, caller, params, body }) => {
    await addAppDomain(deps, caller, params.app, body.domain);
    return { items: await domainsOf(deps, caller, params.app) };
  },
});

defineRoute({
  method: "delete", path: "/apps/:app/domains/:domain", scope: "write", tag: "domains", summary: "Remove a custom domain",
  params: z.object({ app: appName, domain: z.string().max(253) }).strict(),
  handler: async ({ deps, caller, params }) => {
    await removeAppDomain(deps, caller, params.app, params.domain);
  },
});

defineRoute({
  method: "post", path: "/apps/:app/certs", scope: "write", tag: "domains", summary: "Serve your own certificate for the app's domains it names", params: appParams, status: 201,
  body: z.object({
    cert: z.string().max(64 * 1024).describe("certificate chain, PEM, leaf first"),
    key: z.string().max(16 * 1024).describe("the certificate's private key, PEM, unencrypted"),
  }).strict(),
  response: z.object({ domains: z.array(z.string()), expiresAt: z.string(), items: z.array(tlsStatus) }),
  handler: async ({ deps, caller, params, body }) => {
    const r = await addOwnCertificate(deps, caller, params.app, `${body.cert}\n${body.key}\n`);
    return { ...r, items: await domainsOf(deps, caller, params.app) };
  },
});

defineRoute({
  method: "delete", path: "/apps/:app/certs/:domain", scope: "write", tag: "domains", summary: "Stop serving a domain's certificate (a custom domain then gets an automatic one)",
  params: z.object({ app: appName, domain: z.string().max(253) }).strict(),
  handler: async ({ deps, caller, params }) => {
    await removeCertificate(deps, caller, params.app, params.domain);
  },
});

defineRoute({
  method: "put", path: "/certs/default", scope: "admin", tag: "domains", summary: "Platform admins: a wildcard certificate for *.DECK_DOMAIN, served for every app's default name",
  body: z.object({
    cert: z.string().max(64 * 1024).describe("certificate chain for *.DECK_DOMAIN, PEM, leaf first"),
    key: z.string().max(16 * 1024).describe("the certificate's private key, PEM, unencrypted"),
  }).strict(),
  response: z.object({ domain: z.string(), expiresAt: z.string() }),
  handler: async ({ deps, caller, body }) => setDefaultCertificate(deps, caller, `${body.cert}\n${body.key}\n`),
});

defineRoute({
  method: "delete", path: "/certs/default", scope: "admin", tag: "domains", summary: "Platform admins: default names go back to the self-signed fallback",
  handler: async ({ deps, caller }) => {
    await removeDefaultCertificate(deps, caller);
  },
});

// ---------- per-app access ----------
defineRoute({
  method: "get", path: "/apps/:app/access", scope: "read", tag: "access", summary: "Roles granted on this app alone", params: appParams,
  handler: async ({ deps, caller, params }) => ({ items: await listAppAccess(deps, caller, params.app) }),
});

defineRoute({
  method: "put", path: "/apps/:app/access", scope: "admin", tag: "access", summary: "Grant a user a role on this app", params: appParams,
  body: z.object({ email, role }).strict(),
  handler: async ({ deps, caller, params, body }) => ({ items: await grantAppAccess(deps, caller, params.app, body.email, body.role) }),
});

defineRoute({
  method: "delete", path: "/apps/:app/access/:email", scope: "admin", tag: "access", summary: "Remove a user's role on this app",
  params: z.object({ app: appName, email }).strict(),
  handler: async ({ deps, caller, params }) => {
    await revokeAppAccess(deps, caller, params.app, params.email);
  },
});

// ---------- audit ----------
defineRoute({
  method: "get", path: "/apps/:app/audit", scope: "read", tag: "audit", summary: "Audit trail of one app, newest first", params: appParams, query: page,
  handler: async ({ deps, caller, params, query }) => {
    const items = await appAudit(deps, caller, params.app, query.limit, query.before);
    return { items, next: items.length === query.limit ? items[items.length - 1].id : null };
  },
});
