import * as oidc from "openid-client";
import type { DeckConfig } from "../../config/index.ts";
import { DeckError } from "../../core/index.ts";

/**
 * The identity providers deck signs users in with. GitLab and Google speak OpenID Connect: their
 * endpoints and keys come from discovery at the issuer URL. GitHub speaks plain OAuth 2.0 (no ID
 * token, no discovery document): its endpoints are fixed paths under its base URL and the account is
 * read from its REST API.
 */
export const OAUTH_PROVIDER_NAMES = ["github", "gitlab", "google"] as const;
export type OAuthProviderName = (typeof OAUTH_PROVIDER_NAMES)[number];

export interface OAuthProviderSettings {
  name: OAuthProviderName;
  clientId: string;
  clientSecret: string;
  /** OIDC issuer (GitLab, Google) or base URL (GitHub, e.g. https://github.com or a GitHub Enterprise server). */
  issuer: string;
  /** GitHub only: the REST API base URL (https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise). */
  apiUrl?: string;
}

export interface OAuthProvider {
  readonly name: OAuthProviderName;
  /** For messages: "GitHub", "GitLab", "Google". */
  readonly label: string;
  readonly protocol: "oidc" | "github";
  readonly scope: string;
  readonly issuer: URL;
  /** GitHub's REST API base; null for OpenID Connect providers. */
  readonly apiUrl: URL | null;
  /** The openid-client configuration: discovered once (and again after a failure) or built from GitHub's fixed endpoints. */
  configuration(): Promise<oidc.Configuration>;
}

const LABELS: Record<OAuthProviderName, string> = { github: "GitHub", gitlab: "GitLab", google: "Google" };
// GitHub's `user:email` is what lets /user/emails show private and unverified-flagged addresses.
const SCOPES: Record<OAuthProviderName, string> = { github: "read:user user:email", gitlab: "openid profile email", google: "openid profile email" };
const DISCOVERY_TIMEOUT_SECONDS = 10;

export function isOAuthProviderName(name: string): name is OAuthProviderName {
  return (OAUTH_PROVIDER_NAMES as readonly string[]).includes(name);
}

/** Plain http is accepted only on loopback (a provider on the same machine, as in tests); anything else must be https. */
export function isLoopbackHttp(url: URL): boolean {
  return url.protocol === "http:" && ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
}

function parseEndpoint(name: OAuthProviderName, what: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new DeckError("oidc_not_configured", `${LABELS[name]} sign-in: ${what} ${JSON.stringify(value)} is not a URL`, { provider: name });
  }
  if (url.protocol !== "https:" && !isLoopbackHttp(url)) {
    throw new DeckError("oidc_not_configured", `${LABELS[name]} sign-in: ${what} must be an https URL (plain http only on loopback)`, { provider: name });
  }
  return url;
}

function withoutTrailingSlash(url: URL): string {
  return url.href.replace(/\/+$/, "");
}

export function createOAuthProvider(settings: OAuthProviderSettings): OAuthProvider {
  const { name, clientId, clientSecret } = settings;
  if (!clientId || !clientSecret) throw new DeckError("oidc_not_configured", `${LABELS[name]} sign-in needs both a client id and a client secret`, { provider: name });
  const issuer = parseEndpoint(name, "issuer", settings.issuer);
  const protocol = name === "github" ? "github" : "oidc";
  const apiUrl = protocol === "github" ? parseEndpoint(name, "API URL", settings.apiUrl ?? "https://api.github.com") : null;
  const insecure = isLoopbackHttp(issuer);
  let configured: Promise<oidc.Configuration> | undefined;

  const build = async (): Promise<oidc.Configuration> => {
    if (protocol === "github") {
      const base = withoutTrailingSlash(issuer);
      // GitHub documents client_secret as a form parameter of the token request.
      const config = new oidc.Configuration(
        { issuer: base, authorization_endpoint: `${base}/login/oauth/authorize`, token_endpoint: `${base}/login/oauth/access_token` },
        clientId,
        undefined,
        oidc.ClientSecretPost(clientSecret),
      );
      if (insecure) oidc.allowInsecureRequests(config);
      config[oidc.customFetch] = fetchGitHubToken;
      return config;
    }
    try {
      // client_secret_basic is the OpenID Connect default token endpoint authentication.
      return await oidc.discovery(issuer, clientId, undefined, oidc.ClientSecretBasic(clientSecret), {
        timeout: DISCOVERY_TIMEOUT_SECONDS,
        execute: insecure ? [oidc.allowInsecureRequests] : [],
      });
    } catch (e) {
      throw new DeckError("oidc_failed", `${LABELS[name]} sign-in is unavailable: OpenID Connect discovery at ${issuer.origin} failed`, { provider: name }, { cause: e });
    }
  };

  return {
    name,
    label: LABELS[name],
    protocol,
    scope: SCOPES[name],
    issuer,
    apiUrl,
    configuration() {
      configured ??= build().catch((e: unknown) => {
        // Forget a failed discovery so the next sign-in tries again instead of failing until restart.
        configured = undefined;
        throw e;
      });
      return configured;
    },
  };
}

/**
 * GitHub answers a refused token request (a used or expired code, a wrong secret) with HTTP 200 and an
 * `{"error": ...}` body. RFC 6749 §5.2 says 400, which is what openid-client reads as the provider's
 * refusal (with its error code) rather than as a malformed success.
 */
const fetchGitHubToken: oidc.CustomFetch = async (url, options) => {
  const res = await fetch(url, options as RequestInit);
  if (res.status !== 200 || !new URL(url).pathname.endsWith("/login/oauth/access_token")) return res;
  // A body that is not JSON is not GitHub's refusal: the original answer goes on to openid-client,
  // which reports it.
  const body: unknown = await res.clone().json().catch(() => null);
  if (body && typeof body === "object" && typeof (body as { error?: unknown }).error === "string") {
    return new Response(JSON.stringify(body), { status: 400, headers: { "content-type": "application/json" } });
  }
  return res;
};

/** The providers a deck server offers, built once at start so discovery results are reused. */
export interface OAuthProviders {
  /** Names of the providers with a client id and secret, for the sign-in page. */
  readonly configured: OAuthProviderName[];
  /** The provider called `name` (from a URL path, so any string); DeckError `oidc_not_configured` when it is unknown or not set up. */
  get(name: string): OAuthProvider;
}

export function createOAuthProviders(list: OAuthProvider[]): OAuthProviders {
  const byName = new Map(list.map((p) => [p.name, p] as const));
  return {
    configured: [...byName.keys()],
    get(name) {
      const provider = isOAuthProviderName(name) ? byName.get(name) : undefined;
      if (!provider) {
        const shown = /^[a-z0-9-]{1,32}$/i.test(name) ? `"${name}"` : "that provider";
        const offered = byName.size ? `available: ${[...byName.keys()].join(", ")}` : "no provider is configured";
        throw new DeckError("oidc_not_configured", `sign-in with ${shown} is not configured (${offered})`, { provider: name.slice(0, 32) });
      }
      return provider;
    },
  };
}

/** Providers from DECK_OIDC_* settings; a provider is offered when both its client id and secret are set. */
export function oauthProvidersFromConfig(config: DeckConfig): OAuthProviders {
  const candidates: OAuthProviderSettings[] = [
    { name: "github", clientId: config.oidcGithubClientId ?? "", clientSecret: config.oidcGithubClientSecret ?? "", issuer: config.oidcGithubIssuer, apiUrl: config.oidcGithubApiUrl },
    { name: "gitlab", clientId: config.oidcGitlabClientId ?? "", clientSecret: config.oidcGitlabClientSecret ?? "", issuer: config.oidcGitlabIssuer },
    { name: "google", clientId: config.oidcGoogleClientId ?? "", clientSecret: config.oidcGoogleClientSecret ?? "", issuer: config.oidcGoogleIssuer },
  ];
  for (const c of candidates) {
    // Half a configuration is a mistake worth stopping start-up for, not a silently missing button.
    if (Boolean(c.clientId) !== Boolean(c.clientSecret)) {
      const env = `DECK_OIDC_${c.name.toUpperCase()}`;
      throw new DeckError("oidc_not_configured", `${LABELS[c.name]} sign-in needs both ${env}_CLIENT_ID and ${env}_CLIENT_SECRET`, { provider: c.name });
    }
  }
  return createOAuthProviders(candidates.filter((c) => c.clientId && c.clientSecret).map(createOAuthProvider));
}

/** The API's external base URL: DECK_PUBLIC_URL, else http://DECK_HOST:DECK_API_PORT. No trailing slash. */
export function publicBaseUrl(config: Pick<DeckConfig, "publicUrl" | "host" | "apiPort">): string {
  if (config.publicUrl) return config.publicUrl.replace(/\/+$/, "");
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  return `http://${host}:${config.apiPort}`;
}

/** Where a provider sends the browser back; register exactly this URL with the provider. */
export const OAUTH_CALLBACK_PATH = "/api/v1/auth/oidc/:provider/callback";

export function oauthRedirectUri(config: Pick<DeckConfig, "publicUrl" | "host" | "apiPort">, provider: OAuthProviderName): string {
  return publicBaseUrl(config) + OAUTH_CALLBACK_PATH.replace(":provider", provider);
}
