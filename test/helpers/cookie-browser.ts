/**
 * A browser reduced to what a sign-in flow exercises: it follows redirects itself, keeps cookies the way
 * browsers do (RFC 6265: by host name, not port, with Path, Max-Age and Expires), records every hop, and
 * can stop before requesting a URL, so a test can look at or change where it was about to go.
 */

export interface Hop {
  method: string;
  url: string;
  status: number;
  location: string | null;
  setCookies: string[];
}

export interface Visit {
  /** The last URL requested, or the one the browser stopped in front of. */
  url: string;
  /** 0 when the browser stopped before requesting `url`. */
  status: number;
  body: string;
  contentType: string | null;
  hops: Hop[];
  stopped: boolean;
}

export interface OpenOptions {
  /** Sent as an application/x-www-form-urlencoded POST. */
  form?: Record<string, string>;
  /** Called before each request after the first; true = return without requesting that URL. */
  stopBefore?: (url: URL) => boolean;
}

export interface BrowserCookie {
  name: string;
  value: string;
  path: string;
  expiresAt: number | null;
  httpOnly: boolean;
  sameSite: string | null;
}

export class CookieBrowser {
  private readonly jars = new Map<string, BrowserCookie[]>();

  async open(url: string | URL, options: OpenOptions = {}): Promise<Visit> {
    let method = options.form ? "POST" : "GET";
    let body: string | undefined = options.form ? new URLSearchParams(options.form).toString() : undefined;
    let current = new URL(url);
    const hops: Hop[] = [];
    for (let hop = 0; hop < 20; hop++) {
      if (hop > 0 && options.stopBefore?.(current)) return { url: current.href, status: 0, body: "", contentType: null, hops, stopped: true };
      const headers: Record<string, string> = { "user-agent": "deck-test-browser", accept: "text/html,application/json" };
      const cookie = this.cookieHeader(current);
      if (cookie) headers.cookie = cookie;
      if (body !== undefined) headers["content-type"] = "application/x-www-form-urlencoded";
      const res = await fetch(current, { method, headers, body, redirect: "manual" });
      const setCookies = res.headers.getSetCookie();
      for (const line of setCookies) this.store(current, line);
      const location = res.headers.get("location");
      hops.push({ method, url: current.href, status: res.status, location, setCookies });
      if (res.status >= 300 && res.status < 400 && location) {
        await res.arrayBuffer();
        current = new URL(location, current);
        if (res.status !== 307 && res.status !== 308) {
          method = "GET";
          body = undefined;
        }
        continue;
      }
      return { url: current.href, status: res.status, body: await res.text(), contentType: res.headers.get("content-type"), hops, stopped: false };
    }
    throw new Error(`more than 20 redirects starting at ${String(url)}`);
  }

  /** The cookie a request to `url` would carry under `name`, if any. */
  cookie(url: string | URL, name: string): BrowserCookie | undefined {
    const u = new URL(url);
    return this.live(u.hostname).find((c) => c.name === name && pathMatches(u.pathname, c.path));
  }

  /** Stores a cookie as if `url` had answered with this Set-Cookie line. */
  setCookie(url: string | URL, line: string): void {
    this.store(new URL(url), line);
  }

  /** Forgets a cookie, as clearing site data or another browser would. */
  forget(hostname: string, name: string): void {
    this.jars.set(hostname, this.live(hostname).filter((c) => c.name !== name));
  }

  /** The action of the page's first form, as an absolute URL. */
  static formAction(visit: Visit): string {
    const action = /<form[^>]*action="([^"]+)"/.exec(visit.body)?.[1];
    if (!action) throw new Error(`no form on ${visit.url} (HTTP ${visit.status}): ${visit.body.slice(0, 300)}`);
    return new URL(action.replace(/&amp;/g, "&"), visit.url).href;
  }

  private cookieHeader(url: URL): string {
    // RFC 6265 §5.4: longer paths first.
    return this.live(url.hostname)
      .filter((c) => pathMatches(url.pathname, c.path))
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`)
      .join("; ");
  }

  private live(hostname: string): BrowserCookie[] {
    const now = Date.now();
    const jar = (this.jars.get(hostname) ?? []).filter((c) => c.expiresAt === null || c.expiresAt > now);
    this.jars.set(hostname, jar);
    return jar;
  }

  private store(url: URL, line: string): void {
    const [pair = "", ...attributes] = line.split(";");
    const eq = pair.indexOf("=");
    if (eq <= 0) return;
    const cookie: BrowserCookie = { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), path: defaultPath(url), expiresAt: null, httpOnly: false, sameSite: null };
    let maxAge: number | null = null;
    for (const a of attributes) {
      const i = a.indexOf("=");
      const key = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
      const value = i < 0 ? "" : a.slice(i + 1).trim();
      if (key === "path" && value.startsWith("/")) cookie.path = value;
      else if (key === "max-age") maxAge = Number(value);
      else if (key === "expires") cookie.expiresAt ??= Date.parse(value);
      else if (key === "httponly") cookie.httpOnly = true;
      else if (key === "samesite") cookie.sameSite = value.toLowerCase();
    }
    // Max-Age wins over Expires (RFC 6265 §5.3 step 3).
    if (maxAge !== null && !Number.isNaN(maxAge)) cookie.expiresAt = Date.now() + maxAge * 1000;
    const jar = this.live(url.hostname).filter((c) => !(c.name === cookie.name && c.path === cookie.path));
    if (cookie.expiresAt === null || cookie.expiresAt > Date.now()) jar.push(cookie);
    this.jars.set(url.hostname, jar);
  }
}

/** RFC 6265 §5.1.4. */
function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith("/") || requestPath[cookiePath.length] === "/";
}

/** RFC 6265 §5.1.4: the directory of the request path. */
function defaultPath(url: URL): string {
  const p = url.pathname;
  const slash = p.lastIndexOf("/");
  return slash <= 0 ? "/" : p.slice(0, slash);
}
