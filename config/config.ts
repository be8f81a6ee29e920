import { existsSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { isRateLimitRps, RATE_LIMIT_ALLOWED } from "../core/index.ts";

/**
 * Every setting deck reads. Each has an environment variable (which wins) and a key in the optional
 * `deck.yaml` (path from DECK_CONFIG, else ./deck.yaml when it exists).
 */
const port = z.coerce.number().int().min(1).max(65535);
/**
 * Durations become Node timers, which hold at most 2^31-1 ms (24.8 days) and fire at once beyond it;
 * a day is already far past any sensible timeout or interval.
 */
const MAX_SECONDS = 86_400;
const secondsAllowed = `a number of seconds above 0 and at most ${MAX_SECONDS} (one day)`;
const seconds = z.coerce.number().positive(secondsAllowed).max(MAX_SECONDS, secondsAllowed);
const pauseAllowed = `a number of seconds from 0 to ${MAX_SECONDS} (one day)`;

const SIZE_UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
/** A byte size: 536870912, 512m, 512MB, 1.5g, 2GiB (binary units, case-insensitive). */
export function parseByteSize(raw: string | number): number | null {
  if (typeof raw === "number") return Number.isFinite(raw) && raw > 0 ? Math.floor(raw) : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(raw);
  return m ? Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]) : null;
}
const byteSize = (min: number) => z.union([z.string(), z.number()]).transform((v, ctx) => {
  const bytes = parseByteSize(v);
  if (bytes === null || bytes < min) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `a size of at least ${min / 1024 ** 2}m, like 512m or 2g` });
    return z.NEVER;
  }
  return bytes;
});

/** A byte size where 0 means "no limit". */
const limitSize = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const bytes = v === 0 || v === "0" ? 0 : parseByteSize(v);
  if (bytes === null) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: "a size like 100m, 512k or 1g (0 = no limit)" });
    return z.NEVER;
  }
  return bytes;
});
const onOff = z.enum(["on", "off"]);

/** 0.0.0.0 or :: (in any spelling): "every address", not one a router could connect to. */
function isWildcardAddress(ip: string): boolean {
  if (isIP(ip) === 4) return ip.split(".").every((part) => Number(part) === 0);
  try {
    return new URL(`http://[${ip}]/`).hostname === "[::]";
  } catch {
    return false;
  }
}

/**
 * Each app runs under its own uid (= gid), DECK_SANDBOX_UID_BASE + its app id, stored with the app so
 * a later change of the base does not move existing apps. One deck uses this many uids from the base.
 */
export const SANDBOX_UID_RANGE = 100_000;
/** uid_t is 32 bits and (uid_t)-1 means "no change" to setuid(2): the range must end below it. */
const MAX_SANDBOX_UID_BASE = 2 ** 32 - 2 - SANDBOX_UID_RANGE;

export const SETTINGS = {
  dataDir: { env: "DECK_DATA_DIR", yaml: "data_dir", schema: z.string().min(1), default: "./data", help: "directory for repositories, builds, logs and the embedded database" },
  host: { env: "DECK_HOST", yaml: "host", schema: z.string().min(1), default: "127.0.0.1", help: "address the SSH, API and router ports bind to" },
  upstreamHost: {
    env: "DECK_UPSTREAM_HOST", yaml: "upstream_host",
    schema: z.string().refine((v) => isIP(v) !== 0 && !isWildcardAddress(v), "an IPv4 or IPv6 address of this machine, without a port (not 0.0.0.0 or ::, which would publish apps on every address)"),
    default: "127.0.0.1",
    help: "address app processes are published on and routers reach them at; set it to this machine's private address when router nodes run on other machines",
  },
  sshPort: { env: "DECK_SSH_PORT", yaml: "ssh_port", schema: port, default: 2222, help: "SSH port for git push and commands" },
  sshAuthTimeout: { env: "DECK_SSH_AUTH_TIMEOUT", yaml: "ssh_auth_timeout", schema: seconds, default: 20, help: "SSH: seconds a connection has to authenticate before it is closed" },
  sshMaxUnauthenticatedPerIp: { env: "DECK_SSH_MAX_UNAUTHENTICATED_PER_IP", yaml: "ssh_max_unauthenticated_per_ip", schema: z.coerce.number().int().min(1), default: 10, help: "SSH: connections one client IP may hold open before authenticating; more are closed at once" },
  sshMaxUnauthenticated: { env: "DECK_SSH_MAX_UNAUTHENTICATED", yaml: "ssh_max_unauthenticated", schema: z.coerce.number().int().min(1), default: 100, help: "SSH: connections from all clients together that may be open before authenticating; more are closed at once" },
  maxPushSize: { env: "DECK_MAX_PUSH_SIZE", yaml: "max_push_size", schema: limitSize, default: "1g", help: "largest pack a git push may send, over SSH and HTTP (like 500m or 2g; 0 = no limit); a larger push is refused and the repository stays as it was" },
  apiPort: { env: "DECK_API_PORT", yaml: "api_port", schema: port, default: 3000, help: "REST API (/api/v1) and smart HTTP git (/git)" },
  httpPort: { env: "DECK_HTTP_PORT", yaml: "http_port", schema: port, default: 8080, help: "router HTTP port apps are served on" },
  httpsPort: { env: "DECK_HTTPS_PORT", yaml: "https_port", schema: port, default: 8443, help: "router HTTPS port apps are served on (TLS with SNI; HTTP/2 or HTTP/1.1 by ALPN)" },
  domain: {
    env: "DECK_DOMAIN", yaml: "domain",
    // Compared with domains users add, which are lowercased without the root's dot: so is this.
    schema: z.string().regex(/^[a-z0-9-]+(\.[a-z0-9-]+)*\.?$/i, "a DNS name like localhost or apps.example.com").transform((v) => v.toLowerCase().replace(/\.$/, "")),
    default: "localhost", help: "app NAME is served at NAME.DOMAIN",
  },
  acme: { env: "DECK_ACME", yaml: "acme", schema: z.enum(["on", "off"]), default: "on", help: "obtain certificates automatically (ACME HTTP-01) for custom domains added with domains:add; default domains and .localhost/.test names get the self-signed fallback" },
  acmeDirectory: { env: "DECK_ACME_DIRECTORY", yaml: "acme_directory", schema: z.string().regex(/^https?:\/\/[^\s/]+[^\s]*$/, "an ACME directory URL"), default: "https://acme-v02.api.letsencrypt.org/directory", help: "ACME directory certificates are ordered from (default: Let's Encrypt production)" },
  acmeEmail: { env: "DECK_ACME_EMAIL", yaml: "acme_email", schema: z.string().regex(/^[^\s@]+@[^\s@]+$/, "an email address").optional(), default: undefined, help: "contact address of deck's ACME account (expiry warnings from the CA); unset = none" },
  acmeRenewDays: { env: "DECK_ACME_RENEW_DAYS", yaml: "acme_renew_days", schema: z.coerce.number().int().min(1).max(36500), default: 30, help: "renew an automatic certificate when it expires within this many days (checked at start and every hour; failed orders are retried every 6 hours)" },
  databaseUrl: { env: "DATABASE_URL", yaml: "database_url", schema: z.string().regex(/^postgres(ql)?:\/\//, "a postgres:// URL").optional(), default: undefined, help: "external PostgreSQL; unset = embedded server under the data dir" },
  rateLimitRps: { env: "DECK_RATE_LIMIT", yaml: "rate_limit", schema: z.coerce.number().refine(isRateLimitRps, RATE_LIMIT_ALLOWED), default: 1000, help: "router: requests per second one client IP may make to one app (token bucket refill; 0 = no limit; per app: router:set APP rate-limit N)" },
  rateLimitBurst: { env: "DECK_RATE_BURST", yaml: "rate_burst", schema: z.coerce.number().int().min(1), default: 2000, help: "router: requests one client IP may make at once before the rate limit applies (bucket size)" },
  maxBodyBytes: { env: "DECK_MAX_BODY_SIZE", yaml: "max_body_size", schema: limitSize, default: "100m", help: "router: largest request body (413 above it; 0 = no limit; per app: router:set APP max-body-size SIZE)" },
  headerTimeout: { env: "DECK_HEADER_TIMEOUT", yaml: "header_timeout", schema: seconds, default: 30, help: "router: seconds a client has to send a request's headers (slow clients are cut off)" },
  idleTimeout: { env: "DECK_IDLE_TIMEOUT", yaml: "idle_timeout", schema: seconds, default: 120, help: "router: seconds a connection may stay silent (no bytes either way) before it is closed" },
  bodyTimeout: {
    env: "DECK_BODY_TIMEOUT", yaml: "body_timeout", schema: z.coerce.number().min(0, pauseAllowed).max(MAX_SECONDS, pauseAllowed), default: 60,
    help: "router: seconds a client has to send a whole request body once its headers are in (408 past it, and the app's request is ended; 0 = no limit)",
  },
  maxConnectionsPerIp: { env: "DECK_MAX_CONNECTIONS_PER_IP", yaml: "max_connections_per_ip", schema: z.coerce.number().int().min(0), default: 512, help: "router: open connections one client IP may hold (0 = no limit)" },
  pauseTimeout: { env: "DECK_PAUSE_TIMEOUT", yaml: "pause_timeout", schema: z.coerce.number().min(0, pauseAllowed).max(MAX_SECONDS, pauseAllowed), default: 30, help: "router: seconds a request waits for an app that is starting (no live process yet) before it gets 503" },
  metricsPort: {
    env: "DECK_METRICS_PORT", yaml: "metrics_port", schema: z.coerce.number().int().min(0).max(65535), default: 0,
    help: "router nodes (`--role router`): serve Prometheus `GET /metrics` on this port at DECK_METRICS_HOST, without authentication (0 = off; the deck server has /metrics on its API port)",
  },
  metricsHost: {
    env: "DECK_METRICS_HOST", yaml: "metrics_host", schema: z.string().min(1), default: "127.0.0.1",
    help: "router nodes: address the metrics port binds to; an address only Prometheus reaches (the metrics name every app and its traffic)",
  },
  accessLog: { env: "DECK_ACCESS_LOG", yaml: "access_log", schema: onOff, default: "on", help: "router: one JSON line per request in logs/access.log (on or off)" },
  meteringInterval: { env: "DECK_METERING_INTERVAL", yaml: "metering_interval", schema: seconds, default: 60, help: "seconds between saving the router's per-app request and bandwidth counts to the database" },
  metricsInterval: { env: "DECK_METRICS_INTERVAL", yaml: "metrics_interval", schema: seconds, default: 10, help: "seconds between samples of each app's CPU, memory, restarts and traffic (metrics APP); kept 48 h, then as 1-minute rollups for 30 days and hourly ones for 13 months" },
  uptimeInterval: { env: "DECK_UPTIME_INTERVAL", yaml: "uptime_interval", schema: seconds, default: 30, help: "seconds between checks of each running app's health check path through the router (uptime APP); deck servers sharing a database take turns, so each app is checked once per interval" },
  autoscaleInterval: { env: "DECK_AUTOSCALE_INTERVAL", yaml: "autoscale_interval", schema: seconds, default: 15, help: "seconds between autoscaling rounds (ps:autoscale): each round judges every autoscaled process type against the app's last minute of metrics; deck servers sharing a database take turns, so each round runs on one of them" },
  billingInterval: { env: "DECK_BILLING_INTERVAL", yaml: "billing_interval", schema: seconds, default: 300, help: "seconds between billing rounds: recording storage and domain usage in the ledger, closing last month's invoices (an hour after it ended), spend-cap notices and reporting usage to Stripe" },
  freeThrottle: { env: "DECK_FREE_THROTTLE", yaml: "free_throttle", schema: byteSize(1024), default: "256k", help: "bytes per second each app of a plan without a fee (Free) may send once its organisation used the month's bandwidth allowance (256k, 1m); lifted when the month ends or the org upgrades" },
  stripeSecretKey: { env: "STRIPE_SECRET_KEY", yaml: "stripe_secret_key", schema: z.string().regex(/^(sk|rk)_\S+$/, "a Stripe secret key (sk_live_…, sk_test_…)").optional(), default: undefined, help: "Stripe secret key: customers, subscriptions with the plan prices, usage on Billing Meters and payment of invoices go through Stripe; unset = deck invoices by itself and a platform admin marks invoices paid" },
  stripeWebhookSecret: { env: "STRIPE_WEBHOOK_SECRET", yaml: "stripe_webhook_secret", schema: z.string().regex(/^whsec_\S+$/, "a Stripe webhook signing secret (whsec_…)").optional(), default: undefined, help: "signing secret of the Stripe webhook endpoint POST /api/v1/billing/stripe/webhook; unset = webhooks are refused" },
  stripeApiUrl: { env: "DECK_STRIPE_API_URL", yaml: "stripe_api_url", schema: z.string().regex(/^https?:\/\/[^/\s]+\/?$/, "a base URL such as http://127.0.0.1:12111").optional(), default: undefined, help: "where deck's Stripe client sends requests instead of api.stripe.com (a Stripe-compatible test server such as stripe-mock); unset = Stripe itself" },
  smtpUrl: { env: "DECK_SMTP_URL", yaml: "smtp_url", schema: z.string().regex(/^smtps?:\/\/\S+$/, "an smtp:// or smtps:// URL such as smtp://user:password@mail.example.com:587").optional(), default: undefined, help: "SMTP server alert e-mails go through (smtp:// upgrades with STARTTLS when offered, smtps:// is TLS from the start; user:password@ to log in); unset = e-mail channels cannot deliver and notify:test says so" },
  smtpFrom: { env: "DECK_SMTP_FROM", yaml: "smtp_from", schema: z.string().regex(/^[^\s@]+@[^\s@]+$/, "an email address").optional(), default: undefined, help: "sender address of alert e-mails; unset = deck@HOSTNAME" },
  outboundAllow: {
    env: "DECK_OUTBOUND_ALLOW", yaml: "outbound_allow",
    schema: z.string().transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean)).refine((list) => list.every((c) => {
      const [ip = "", bits, extra] = c.split("/");
      const family = isIP(ip);
      return family !== 0 && extra === undefined && (bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)));
    }), "comma-separated address ranges like 127.0.0.1/32,10.0.0.0/8"),
    default: "",
    help: "loopback, private or link-local address ranges deck may still send to on a tenant's behalf (notification webhooks, log drains), e.g. 127.0.0.1/32 for a receiver on this machine; unset = none",
  },
  redisUrl: { env: "REDIS_URL", yaml: "redis_url", schema: z.string().regex(/^rediss?:\/\//, "a redis:// URL").optional(), default: undefined, help: "Redis shared by several router nodes: per-client rate limits draw from one budget across them (unset = each router counts alone)" },
  runtime: { env: "DECK_RUNTIME", yaml: "runtime", schema: z.enum(["process", "docker"]), default: "process", help: "how releases run: process (supervised processes) or docker (one container per process; Dockerfile apps need it)" },
  baseImage: { env: "DECK_BASE_IMAGE", yaml: "base_image", schema: z.string().regex(/^[a-z0-9][a-z0-9._\/:@-]*$/i, "an image reference such as clouddeck/base:latest"), default: "clouddeck/base:latest", help: "docker runtime: image buildpack apps are packaged onto (must hold what they run, e.g. node)" },
  appMemory: { env: "DECK_APP_MEMORY", yaml: "app_memory", schema: byteSize(6 * 1024 ** 2), default: "512m", help: "memory limit of each app process (512m, 1g); resource:limit sets it per app" },
  appCpus: { env: "DECK_APP_CPUS", yaml: "app_cpus", schema: z.coerce.number().positive().max(1024), default: 1, help: "CPUs each app process may use (0.5 = half a core); resource:limit sets it per app" },
  sandboxUidBase: {
    env: "DECK_SANDBOX_UID_BASE", yaml: "sandbox_uid_base",
    schema: z.coerce.number().int().min(1000, "a uid of at least 1000 (below are the system's own users)").max(MAX_SANDBOX_UID_BASE, `a uid of at most ${MAX_SANDBOX_UID_BASE}`),
    default: 200_000,
    help: `process runtime: app N runs as uid/gid BASE+N, no /etc/passwd entry needed; deck uses ${SANDBOX_UID_RANGE} uids from BASE, which no other user or /etc/subuid range of this machine may use`,
  },
  buildTimeout: { env: "DECK_BUILD_TIMEOUT", yaml: "build_timeout", schema: seconds, default: 900, help: "seconds a build may take before it is stopped" },
  keepReleases: { env: "DECK_KEEP_RELEASES", yaml: "keep_releases", schema: z.coerce.number().int().min(2).max(100), default: 5, help: "built artifacts kept per app for rollback" },
  healthTimeout: { env: "DECK_HEALTH_TIMEOUT", yaml: "health_timeout", schema: seconds, default: 60, help: "seconds a new release has to answer its health check" },
  drainTimeout: { env: "DECK_DRAIN_TIMEOUT", yaml: "drain_timeout", schema: seconds, default: 30, help: "seconds in-flight requests get to finish on the old release" },
  stopGrace: { env: "DECK_STOP_GRACE", yaml: "stop_grace", schema: seconds, default: 10, help: "seconds between SIGTERM and SIGKILL when stopping a process" },
  releaseTimeout: { env: "DECK_RELEASE_TIMEOUT", yaml: "release_timeout", schema: seconds, default: 300, help: "seconds the Procfile release command may take" },
  deployQueue: { env: "DECK_DEPLOY_QUEUE", yaml: "deploy_queue", schema: z.enum(["wait", "refuse"]), default: "wait", help: "a push while the app is deploying waits in line or is refused" },
  masterKey: { env: "DECK_MASTER_KEY", yaml: "master_key", schema: z.string().optional(), default: undefined, help: "base64 of 32 bytes that encrypts config vars at rest (checked at start, never echoed); unset = a key generated once into DATA_DIR/keys/master.key" },
  buildMemory: { env: "DECK_BUILD_MEMORY", yaml: "build_memory", schema: byteSize(32 * 1024 ** 2), default: "2g", help: "memory one build may use (512m, 2g); a build over it is stopped and its push rejected" },
  buildCpus: { env: "DECK_BUILD_CPUS", yaml: "build_cpus", schema: z.coerce.number().min(0.01).max(1024), default: 1, help: "CPU cores one build may use (0.5, 2)" },
  buildConcurrency: { env: "DECK_BUILD_CONCURRENCY", yaml: "build_concurrency", schema: z.coerce.number().int().min(0).max(256), default: availableParallelism(), help: "builds running at once: on the deck servers sharing the database together, or on this builder node (`--role builder`); 0 on a deck server = every build goes to builder nodes" },
  nodeUrl: { env: "DECK_NODE_URL", yaml: "node_url", schema: z.string().regex(/^https?:\/\/[^\s/]+[^\s]*$/, "an http(s) URL such as http://10.0.0.5:3000").optional(), default: undefined, help: "URL at which builder nodes reach this deck server's API port for the builds they take; unset = http://HOST:API_PORT" },
  publicUrl: { env: "DECK_PUBLIC_URL", yaml: "public_url", schema: z.string().regex(/^https?:\/\/[^\s/]+[^\s]*$/, "an http(s) URL such as https://deck.example.com").optional(), default: undefined, help: "external base URL of the API, used to build OAuth redirect URIs; unset = http://HOST:API_PORT" },
  oidcGithubClientId: { env: "DECK_OIDC_GITHUB_CLIENT_ID", yaml: "oidc_github_client_id", schema: z.string().min(1).optional(), default: undefined, help: "GitHub OAuth app client id; set with the secret to enable GitHub sign-in" },
  oidcGithubClientSecret: { env: "DECK_OIDC_GITHUB_CLIENT_SECRET", yaml: "oidc_github_client_secret", schema: z.string().min(1).optional(), default: undefined, help: "GitHub OAuth app client secret" },
  oidcGithubIssuer: { env: "DECK_OIDC_GITHUB_ISSUER", yaml: "oidc_github_issuer", schema: z.string().regex(/^https?:\/\/[^\s/]+[^\s]*$/, "an http(s) URL"), default: "https://github.com", help: "GitHub base URL (GitHub Enterprise: your server's URL)" },
  oidcGithubApiUrl: { env: "DECK_OIDC_GITHUB_API_URL", yaml: "oidc_github_api_url", schema: z.string().regex(/^https?:\/\/[^\s/]+[^\s]*$/, "an http(s) URL"), default: "https://api.github.com", help: "GitHub REST API base URL (GitHub Enterprise: https://HOST/api/v3)" },
  oidcGitlabClientId: { env: "DECK_OIDC_GITLAB_CLIENT_ID", yaml: "oidc_gitlab_client_id", schema: z.string().min(1).optional(), default: undefined, help: "GitLab application id; set with the secret to enable GitLab sign-in" },
  oidcGitlabClientSecret: { env: "DECK_OIDC_GITLAB_CLIENT_SECRET", yaml: "oidc_gitlab_client_secret", schema: z.string().min(1).optional(), default: undefined, help: "GitLab application secret" },
  oidcGitlabIssuer: { env: "DECK_OIDC_GITLAB_ISSUER", yaml: "oidc_gitlab_issuer", schema: z.string().regex(/^https?:\/\/[^\s/]+[^\s]*$/, "an http(s) URL"), default: "https://gitlab.com", help: "GitLab OpenID Connect issuer (self-managed GitLab: your server's URL)" },
  oidcGoogleClientId: { env: "DECK_OIDC_GOOGLE_CLIENT_ID", yaml: "oidc_google_client_id", schema: z.string().min(1).optional(), default: undefined, help: "Google OAuth client id; set with the secret to enable Google sign-in" },
  oidcGoogleClientSecret: { env: "DECK_OIDC_GOOGLE_CLIENT_SECRET", yaml: "oidc_google_client_secret", schema: z.string().min(1).optional(), default: undefined, help: "Google OAuth client secret" },
  oidcGoogleIssuer: { env: "DECK_OIDC_GOOGLE_ISSUER", yaml: "oidc_google_issuer", schema: z.string().regex(/^https?:\/\/[^\s/]+[^\s]*$/, "an http(s) URL"), default: "https://accounts.google.com", help: "Google OpenID Connect issuer" },
} as const;

type Settings = typeof SETTINGS;
export type DeckConfig = { [K in keyof Settings]: z.infer<Settings[K]["schema"]> } & { configFile?: string };

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

function describeAllowed(schema: z.ZodTypeAny, issue: z.ZodIssue): string {
  if (schema instanceof z.ZodEnum) return `one of ${schema.options.join(", ")}`;
  if (schema instanceof z.ZodOptional) return describeAllowed(schema.unwrap(), issue);
  return issue.message;
}

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Reads env + deck.yaml; throws ConfigError with one line naming the setting and what is allowed. */
export function loadConfig(options: LoadConfigOptions = {}): DeckConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  let file: Record<string, unknown> = {};
  const explicit = env.DECK_CONFIG;
  const configFile = explicit ? resolve(cwd, explicit) : resolve(cwd, "deck.yaml");
  const haveFile = existsSync(configFile);
  if (explicit && !haveFile) throw new ConfigError(`DECK_CONFIG: ${configFile} does not exist`);
  if (haveFile) {
    try {
      const parsed: unknown = parseYaml(readFileSync(configFile, "utf8"));
      if (parsed != null && (typeof parsed !== "object" || Array.isArray(parsed))) throw new Error("top level must be a mapping of settings");
      file = (parsed ?? {}) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`${configFile}: ${(e as Error).message.split("\n")[0]}`);
    }
    const known = new Set(Object.values(SETTINGS).map((s) => s.yaml as string));
    for (const key of Object.keys(file)) {
      if (!known.has(key)) throw new ConfigError(`${configFile}: unknown setting "${key}" (known: ${[...known].join(", ")})`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(SETTINGS) as [keyof Settings, Settings[keyof Settings]][]) {
    const fromEnv = env[s.env];
    const raw = fromEnv !== undefined && fromEnv !== "" ? fromEnv : file[s.yaml] ?? s.default;
    const source = fromEnv !== undefined && fromEnv !== "" ? s.env : file[s.yaml] !== undefined ? `${s.yaml} in ${configFile}` : s.env;
    const result = (s.schema as z.ZodTypeAny).safeParse(raw);
    if (!result.success) {
      throw new ConfigError(`${source}=${JSON.stringify(raw)} is not valid: expected ${describeAllowed(s.schema as z.ZodTypeAny, result.error.issues[0])}`);
    }
    out[key] = result.data;
  }
  out.dataDir = resolve(cwd, out.dataDir as string);
  if (haveFile) out.configFile = configFile;
  return out as DeckConfig;
}
