import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair } from "jose";
import Provider, { type Account } from "oidc-provider";

/**
 * Servers the OIDC sign-in tests talk to, all on 127.0.0.1 and port 0: a real OpenID provider
 * (oidc-provider), a stand-in for GitHub's OAuth endpoints and API, the callback a provider redirects
 * to, and a minimal browser (manual redirects, a cookie jar) that drives them over plain HTTP.
 */

export interface Running {
  url: string;
  close(): Promise<void>;
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Keep-alive connections from fetch would hold close() open.
      server.closeAllConnections();
    }));
  return { server, url, close };
}

/** The page a provider sends the browser back to; it records every URL it was asked for. */
export async function startCallbackServer(): Promise<Running & { redirectUri: string; received: URL[] }> {
  const received: URL[] = [];
  const s = await listen((req, res) => {
    received.push(new URL(req.url ?? "/", s.url));
    res.writeHead(200, { "content-type": "text/plain" }).end("back at deck\n");
  });
  return { url: s.url, redirectUri: `${s.url}/callback`, received, close: s.close };
}

export interface TestAccount {
  email: string;
  email_verified: boolean;
  name: string;
}

export interface OpenIdProviderOptions {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  /** Put the email claims in the ID token too, as Google does; by default they come only from UserInfo (OIDC Core §5.4). */
  emailInIdToken?: boolean;
  /** Keyed by the login typed into the provider's sign-in form, which is also the subject. */
  accounts: Record<string, TestAccount>;
}

/** A real OpenID provider with its development sign-in and consent pages, requiring PKCE (S256). */
export async function startOpenIdProvider(options: OpenIdProviderOptions): Promise<Running & { issuer: string; requests: string[] }> {
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const signingKey = { ...(await exportJWK(privateKey)), kid: "test-key", alg: "RS256", use: "sig" };
  let handle: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const requests: string[] = [];
  const s = await listen((req, res) => {
    requests.push(`${req.method} ${new URL(req.url ?? "/", "http://x").pathname}`);
    handle!(req, res);
  });
  const provider = new Provider(s.url, {
    clients: [{ client_id: options.clientId, client_secret: options.clientSecret, redirect_uris: options.redirectUris, grant_types: ["authorization_code"], response_types: ["code"] }],
    pkce: { required: () => true, methods: ["S256"] },
    claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
    conformIdTokenClaims: !options.emailInIdToken,
    ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600 },
    cookies: { keys: [randomBytes(32).toString("hex")] },
    jwks: { keys: [signingKey] },
    features: { devInteractions: { enabled: true } },
    findAccount: (_ctx: unknown, id: string): Account | undefined => {
      const account = options.accounts[id];
      return account ? { accountId: id, claims: () => ({ sub: id, ...account }) } : undefined;
    },
  });
  handle = provider.callback();
  return { url: s.url, issuer: s.url, requests, close: s.close };
}

export interface GitHubUser {
  id: number;
  login: string;
  name: string | null;
  emails: { email: string; primary: boolean; verified: boolean; visibility: string | null }[];
}

/**
 * GitHub cannot run here, so this serves the three parts of GitHub that sign-in uses, as GitHub documents
 * them: /login/oauth/authorize (here the signed-in user has already approved the app, so it redirects
 * straight back), /login/oauth/access_token (PKCE S256, client_secret as a form parameter, and refusals
 * as HTTP 200 with an "error" body, as GitHub does), and the REST API's /user and /user/emails.
 */
export async function startFakeGitHub(options: { clientId: string; clientSecret: string; redirectUri: string; user: GitHubUser }): Promise<Running & { apiUrl: string; signedInAs: GitHubUser }> {
  const codes = new Map<string, { redirectUri: string; challenge: string }>();
  const tokens = new Set<string>();
  const state = { signedInAs: options.user };
  const json = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  const s = await listen(async (req, res) => {
    const url = new URL(req.url ?? "/", s.url);
    if (req.method === "GET" && url.pathname === "/login/oauth/authorize") {
      const p = url.searchParams;
      if (p.get("client_id") !== options.clientId || p.get("redirect_uri") !== options.redirectUri) return json(res, 400, { error: "redirect_uri_mismatch" });
      if (p.get("code_challenge_method") !== "S256" || !p.get("code_challenge")) return json(res, 400, { error: "invalid_request" });
      const code = randomBytes(10).toString("hex");
      codes.set(code, { redirectUri: p.get("redirect_uri")!, challenge: p.get("code_challenge")! });
      const back = new URL(options.redirectUri);
      back.searchParams.set("code", code);
      back.searchParams.set("state", p.get("state") ?? "");
      return res.writeHead(302, { location: back.href }).end();
    }
    if (req.method === "POST" && url.pathname === "/login/oauth/access_token") {
      const form = new URLSearchParams(await readBody(req));
      if (form.get("client_id") !== options.clientId || form.get("client_secret") !== options.clientSecret) return json(res, 200, { error: "incorrect_client_credentials" });
      const issued = codes.get(form.get("code") ?? "");
      codes.delete(form.get("code") ?? "");
      const verifier = form.get("code_verifier") ?? "";
      const challenge = createHash("sha256").update(verifier).digest("base64url");
      if (!issued || issued.redirectUri !== form.get("redirect_uri") || issued.challenge !== challenge) return json(res, 200, { error: "bad_verification_code" });
      const token = `gho_${randomBytes(18).toString("hex")}`;
      tokens.add(token);
      return json(res, 200, { access_token: token, token_type: "bearer", scope: "read:user,user:email" });
    }
    if (req.method === "GET" && (url.pathname === "/api/user" || url.pathname === "/api/user/emails")) {
      if (!req.headers["user-agent"]) return json(res, 403, { message: "Request forbidden by administrative rules. Please make sure your request has a User-Agent header" });
      const token = /^Bearer (.+)$/i.exec(req.headers.authorization ?? "")?.[1];
      if (!token || !tokens.has(token)) return json(res, 401, { message: "Bad credentials" });
      const u = state.signedInAs;
      if (url.pathname === "/api/user") return json(res, 200, { id: u.id, login: u.login, name: u.name, email: null });
      return json(res, 200, u.emails);
    }
    json(res, 404, { message: "Not Found" });
  });
  return {
    url: s.url,
    apiUrl: `${s.url}/api`,
    get signedInAs() {
      return state.signedInAs;
    },
    set signedInAs(u: GitHubUser) {
      state.signedInAs = u;
    },
    close: s.close,
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export interface Page {
  url: string;
  status: number;
  body: string;
}

/** Enough of a browser for sign-in: follows redirects itself and keeps cookies per origin. */
export class Browser {
  private readonly jars = new Map<string, Map<string, string>>();

  async open(url: string, form?: Record<string, string>): Promise<Page> {
    let method = form ? "POST" : "GET";
    let body: string | undefined = form ? new URLSearchParams(form).toString() : undefined;
    let current = new URL(url);
    for (let hop = 0; hop < 20; hop++) {
      const jar = this.jar(current);
      const headers: Record<string, string> = { "user-agent": "deck-test-browser" };
      if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
      if (body !== undefined) headers["content-type"] = "application/x-www-form-urlencoded";
      const res = await fetch(current, { method, headers, body, redirect: "manual" });
      for (const line of res.headers.getSetCookie()) this.store(jar, line);
      const location = res.headers.get("location");
      if (res.status >= 300 && res.status < 400 && location) {
        await res.arrayBuffer();
        current = new URL(location, current);
        if (res.status !== 307 && res.status !== 308) {
          method = "GET";
          body = undefined;
        }
        continue;
      }
      return { url: current.href, status: res.status, body: await res.text() };
    }
    throw new Error(`more than 20 redirects starting at ${url}`);
  }

  /** The action of the page's form, as an absolute URL. */
  static formAction(page: Page): string {
    const action = /<form[^>]*action="([^"]+)"/.exec(page.body)?.[1];
    if (!action) throw new Error(`no form on ${page.url} (HTTP ${page.status}): ${page.body.slice(0, 300)}`);
    return new URL(action.replace(/&amp;/g, "&"), page.url).href;
  }

  private jar(url: URL): Map<string, string> {
    let jar = this.jars.get(url.host);
    if (!jar) this.jars.set(url.host, (jar = new Map()));
    return jar;
  }

  private store(jar: Map<string, string>, line: string): void {
    const [pair, ...attributes] = line.split(";");
    const eq = pair!.indexOf("=");
    const name = pair!.slice(0, eq).trim();
    const value = pair!.slice(eq + 1).trim();
    const expired = attributes.some((a) => {
      const [k, v = ""] = a.trim().split("=");
      if (k!.toLowerCase() === "max-age") return Number(v) <= 0;
      if (k!.toLowerCase() === "expires") return Date.parse(v) <= Date.now();
      return false;
    });
    if (expired || value === "") jar.delete(name);
    else jar.set(name, value);
  }
}
