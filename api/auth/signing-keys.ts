import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from "node:crypto";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { calculateJwkThumbprint, decodeProtectedHeader, errors, exportJWK, jwtVerify, SignJWT, type JWK } from "jose";
import { DeckError } from "../../core/errors.ts";

/**
 * Short-lived access tokens: JWTs (RFC 7519) signed with Ed25519 (`alg: EdDSA`, RFC 8037), typed
 * `at+jwt` (RFC 9068). Keys live in `${dataDir}/keys/jwt/`, each named by its `kid` (the RFC 7638
 * thumbprint of its public key). `keys.json` says which key signs now; a rotated-out key keeps only
 * its public half, for verification, until every token it signed has expired.
 */
export const TOKEN_ISSUER = "clouddeck";
export const TOKEN_AUDIENCE = "clouddeck";
export const TOKEN_TYPE = "at+jwt";
export const ACCESS_TOKEN_ALGORITHM = "EdDSA";
export const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 900;
/** How long a rotated-out public key still verifies; also the longest lifetime a token may be given. */
export const DEFAULT_KEY_RETENTION_SECONDS = 24 * 60 * 60;

export interface SigningKeysOptions {
  dataDir: string;
  retentionSeconds?: number;
  /** Epoch milliseconds; replaces the clock for tests. */
  now?: () => number;
}

export interface AccessTokenInput { userId: number; scopes: readonly string[]; ttlSeconds?: number }
export interface AccessTokenClaims { userId: number; scopes: string[]; kid: string; exp: number }

export interface SigningKeys {
  /** The kid new tokens are signed with. */
  readonly currentKid: string;
  signAccessToken(input: AccessTokenInput): Promise<string>;
  /** The token's claims, or DeckError `invalid_token` whose message says why in one line. */
  verifyAccessToken(token: string): Promise<AccessTokenClaims>;
  /** Makes a new current key; older public keys stay until their retention ends. */
  rotate(): Promise<{ kid: string }>;
  /** The public keys that verify tokens now (RFC 7517 JWK Set), for `/.well-known/jwks.json`. */
  jwks(): { keys: JWK[] };
}

interface ManifestEntry { kid: string; createdAt: string; retiredAt: string | null }
interface Manifest { current: string; keys: ManifestEntry[] }
interface LoadedKey { entry: ManifestEntry; publicKey: KeyObject; jwk: JWK }
interface Loaded { manifest: Manifest; version: string; privateKey: KeyObject; keys: Map<string, LoadedKey> }

export function keysDir(dataDir: string): string {
  return join(dataDir, "keys", "jwt");
}

export async function openSigningKeys(options: SigningKeysOptions): Promise<SigningKeys> {
  const dir = keysDir(options.dataDir);
  const retentionMs = (options.retentionSeconds ?? DEFAULT_KEY_RETENTION_SECONDS) * 1000;
  const now = options.now ?? Date.now;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let state = await loadOrCreate(dir, retentionMs, now);
  let lastCheckedAt = now();

  // Another process sharing the data dir may rotate: pick its keys up when a kid is unknown, and
  // now and then before signing so this process does not keep signing with a key others dropped.
  const refresh = async () => {
    lastCheckedAt = now();
    if ((await manifestVersion(dir)) !== state.version) state = await load(dir, retentionMs, now);
  };

  return {
    get currentKid() {
      return state.manifest.current;
    },

    async signAccessToken({ userId, scopes, ttlSeconds = DEFAULT_ACCESS_TOKEN_TTL_SECONDS }) {
      if (!Number.isSafeInteger(userId) || userId <= 0) throw new RangeError(`userId ${userId} is not a user id`);
      if (!(ttlSeconds > 0 && ttlSeconds * 1000 <= retentionMs)) {
        throw new RangeError(`access token lifetime ${ttlSeconds}s must be positive and at most the key retention (${retentionMs / 1000}s)`);
      }
      if (now() - lastCheckedAt > 30_000) await refresh();
      const issuedAt = Math.floor(now() / 1000);
      return new SignJWT({ scope: scopes.join(" ") })
        .setProtectedHeader({ alg: ACCESS_TOKEN_ALGORITHM, kid: state.manifest.current, typ: TOKEN_TYPE })
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setSubject(String(userId))
        .setIssuedAt(issuedAt)
        .setExpirationTime(issuedAt + ttlSeconds)
        .setJti(randomUUID())
        .sign(state.privateKey);
    },

    async verifyAccessToken(token) {
      let header;
      try {
        header = decodeProtectedHeader(token);
      } catch {
        throw invalidToken("malformed token");
      }
      if (header.alg !== ACCESS_TOKEN_ALGORITHM) throw invalidToken(`algorithm ${JSON.stringify(header.alg ?? null)} is not accepted`);
      if (typeof header.kid !== "string") throw invalidToken("token names no signing key (kid)");
      if (!state.keys.has(header.kid)) await refresh();
      const key = state.keys.get(header.kid);
      if (!key || !isLive(key.entry, retentionMs, now())) throw invalidToken("signed by an unknown key");
      let payload;
      try {
        ({ payload } = await jwtVerify(token, key.publicKey, {
          algorithms: [ACCESS_TOKEN_ALGORITHM],
          issuer: TOKEN_ISSUER,
          audience: TOKEN_AUDIENCE,
          typ: TOKEN_TYPE,
          requiredClaims: ["sub", "exp", "iat"],
          currentDate: new Date(now()),
        }));
      } catch (e) {
        throw invalidToken(joseReason(e), e);
      }
      const userId = Number(payload.sub);
      if (!/^[1-9]\d*$/.test(payload.sub ?? "") || !Number.isSafeInteger(userId)) throw invalidToken("subject is not a user id");
      if (typeof payload.scope !== "string") throw invalidToken("scope claim is missing");
      return { userId, scopes: payload.scope.split(" ").filter(Boolean), kid: header.kid, exp: payload.exp! };
    },

    async rotate() {
      await refresh();
      const created = await generateKey(dir);
      const at = new Date(now()).toISOString();
      const previous = state.manifest.current;
      const manifest: Manifest = {
        current: created.kid,
        keys: [
          ...state.manifest.keys.map((k) => (k.kid === previous ? { ...k, retiredAt: at } : k)).filter((k) => isLive(k, retentionMs, now())),
          { kid: created.kid, createdAt: at, retiredAt: null },
        ],
      };
      await writeManifest(dir, manifest);
      // A retired key never signs again, so its private half goes now.
      await rm(join(dir, `${previous}.private.pem`), { force: true });
      await pruneFiles(dir, state.manifest, manifest);
      state = await load(dir, retentionMs, now);
      return { kid: created.kid };
    },

    jwks() {
      return { keys: [...state.keys.values()].filter((k) => isLive(k.entry, retentionMs, now())).map((k) => ({ ...k.jwk })) };
    },
  };
}

function invalidToken(reason: string, cause?: unknown): DeckError {
  return new DeckError("invalid_token", `access token rejected: ${reason}`, { reason }, cause ? { cause } : undefined);
}

function joseReason(e: unknown): string {
  if (e instanceof errors.JWTExpired) return "token expired";
  if (e instanceof errors.JWSSignatureVerificationFailed) return "signature does not verify";
  if (e instanceof errors.JWTClaimValidationFailed) return e.message;
  if (e instanceof errors.JOSEAlgNotAllowed) return "algorithm is not accepted";
  if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid) return "malformed token";
  if (e instanceof errors.JOSEError) return e.message;
  throw e;
}

function isLive(entry: ManifestEntry, retentionMs: number, nowMs: number): boolean {
  return entry.retiredAt == null || Date.parse(entry.retiredAt) + retentionMs > nowMs;
}

async function generateKey(dir: string): Promise<{ kid: string }> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const kid = await calculateJwkThumbprint(await exportJWK(publicKey));
  await writeFile(join(dir, `${kid}.private.pem`), privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
  await writeFile(join(dir, `${kid}.public.pem`), publicKey.export({ type: "spki", format: "pem" }), { mode: 0o644, flag: "wx" });
  return { kid };
}

const manifestPath = (dir: string) => join(dir, "keys.json");

async function manifestVersion(dir: string): Promise<string> {
  const s = await stat(manifestPath(dir));
  return `${s.mtimeMs}:${s.size}:${s.ino}`;
}

async function writeManifest(dir: string, manifest: Manifest): Promise<void> {
  const tmp = join(dir, `.keys.json.${randomBytes(6).toString("hex")}`);
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
  await rename(tmp, manifestPath(dir));
}

async function loadOrCreate(dir: string, retentionMs: number, now: () => number): Promise<Loaded> {
  try {
    return await load(dir, retentionMs, now);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT" || (e as NodeJS.ErrnoException).path !== manifestPath(dir)) throw e;
  }
  const { kid } = await generateKey(dir);
  const manifest: Manifest = { current: kid, keys: [{ kid, createdAt: new Date(now()).toISOString(), retiredAt: null }] };
  try {
    // `wx`: when two processes start on a new data dir together, one key set wins and both use it.
    await writeFile(manifestPath(dir), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644, flag: "wx" });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    await rm(join(dir, `${kid}.private.pem`), { force: true });
    await rm(join(dir, `${kid}.public.pem`), { force: true });
  }
  return load(dir, retentionMs, now);
}

async function load(dir: string, retentionMs: number, now: () => number): Promise<Loaded> {
  const version = await manifestVersion(dir);
  const manifest = JSON.parse(await readFile(manifestPath(dir), "utf8")) as Manifest;
  if (typeof manifest.current !== "string" || !Array.isArray(manifest.keys)) throw new Error(`${manifestPath(dir)} is not a key manifest`);
  const keys = new Map<string, LoadedKey>();
  for (const entry of manifest.keys) {
    if (entry.kid !== manifest.current && !isLive(entry, retentionMs, now())) continue;
    const publicKey = createPublicKey(await readFile(join(dir, `${entry.kid}.public.pem`), "utf8"));
    const jwk = { ...(await exportJWK(publicKey)), kid: entry.kid, alg: ACCESS_TOKEN_ALGORITHM, use: "sig" };
    keys.set(entry.kid, { entry, publicKey, jwk });
  }
  if (!keys.has(manifest.current)) throw new Error(`${manifestPath(dir)} names current key ${manifest.current}, which it does not list`);
  const privateKey = createPrivateKey(await readFile(join(dir, `${manifest.current}.private.pem`), "utf8"));
  return { manifest, version, privateKey, keys };
}

/** Removes the files of keys the new manifest no longer lists. */
async function pruneFiles(dir: string, before: Manifest, after: Manifest): Promise<void> {
  const kept = new Set(after.keys.map((k) => k.kid));
  for (const { kid } of before.keys) {
    if (kept.has(kid)) continue;
    await rm(join(dir, `${kid}.private.pem`), { force: true });
    await rm(join(dir, `${kid}.public.pem`), { force: true });
  }
}
