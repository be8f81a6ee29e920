import { join } from "node:path";

/**
 * Host variables a build inherits. Deliberately a short list: the server's own settings
 * (DATABASE_URL, tokens, DECK_*) must never reach an app's build scripts.
 */
const INHERITED = [
  "PATH",
  "HOME",
  "LANG",
  "TZ",
  "TMPDIR",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
] as const;

export interface BuildEnvOptions {
  /** The environment deck itself runs with; only INHERITED names are taken from it. */
  host: Record<string, string | undefined>;
  /** The app's config vars. */
  appEnv: Record<string, string>;
  cacheDir: string;
}

/** Base env, then the app's config vars on top, then CI=true (builds are never interactive). */
export function createBuildEnv(opts: BuildEnvOptions): Record<string, string> {
  const env: Record<string, string> = { LANG: "C.UTF-8" };
  for (const name of INHERITED) {
    const value = opts.host[name];
    if (value !== undefined) env[name] = value;
  }
  // Any npm a build script starts (npx, nested installs) shares the per-app cache too.
  env.npm_config_cache = join(opts.cacheDir, "npm");
  env.npm_config_update_notifier = "false";
  return { ...env, ...opts.appEnv, CI: "true" };
}
