import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { chmodSync, closeSync, linkSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../config/index.ts";
import { DeckError } from "../core/index.ts";

/**
 * Config var values at rest: AES-256-GCM under one master key, a fresh random 96-bit IV per value
 * (NIST SP 800-38D §8.2.2), so equal values never produce equal ciphertexts.
 *
 * A sealed value is one compact string, every field base64url:
 *
 *     v1:<kid>:<iv>:<tag>:<ciphertext>
 *
 * `kid` names the key (a hash of it, not the key), so a value sealed under another key fails with a
 * message that says so instead of looking like corruption, and a later key rotation can keep old keys
 * for opening while sealing with the new one. The `v1:<kid>` prefix is authenticated as additional
 * data, so it cannot be altered without the tag failing.
 *
 * The master key comes from DECK_MASTER_KEY (base64 of 32 bytes) or else from
 * `${dataDir}/keys/master.key`, generated on first use. Query functions are called from many places,
 * so the key is configured once per process with `configureSecrets` at start.
 */

const VERSION = "v1";
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const BASE64_KEY = /^[A-Za-z0-9+/_-]{43}=?$/;
const B64URL = /^[A-Za-z0-9_-]*$/;
const MAKE_KEY_HINT = "create one with: openssl rand -base64 32";

export interface SecretsOptions {
  dataDir: string;
  /** Base64 of 32 bytes (DECK_MASTER_KEY); unset = the key file in the data dir, created when missing. */
  masterKey?: string;
}

export interface SecretsInfo {
  /** Id of the key new values are sealed with. */
  kid: string;
  /** Where the key came from, for messages: "DECK_MASTER_KEY" or the key file's path. */
  source: string;
  /** True when this call generated the key file. */
  created: boolean;
}

/** Seals and opens values with a key ring; the first key seals, every key can open. */
export class SecretBox {
  readonly kid: string;
  readonly #primary: Buffer;
  readonly #keys = new Map<string, Buffer>();
  readonly #source: string;

  constructor(keys: Buffer[], source = "the configured master key") {
    if (keys.length === 0) throw new Error("SecretBox needs at least one key");
    for (const key of keys) {
      if (key.length !== KEY_BYTES) throw new Error(`a master key is ${KEY_BYTES} bytes, got ${key.length}`);
      this.#keys.set(keyId(key), key);
    }
    this.#primary = keys[0]!;
    this.kid = keyId(this.#primary);
    this.#source = source;
  }

  seal(plain: string): string {
    const iv = randomBytes(IV_BYTES);
    const header = `${VERSION}:${this.kid}`;
    const cipher = createCipheriv("aes-256-gcm", this.#primary, iv);
    cipher.setAAD(Buffer.from(header));
    const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    return `${header}:${b64(iv)}:${b64(cipher.getAuthTag())}:${b64(body)}`;
  }

  open(box: string): string {
    const parts = typeof box === "string" ? box.split(":") : [];
    if (parts.length !== 5 || parts[0] !== VERSION || !parts.slice(1).every((p) => B64URL.test(p))) {
      throw corrupt("it is not a sealed value this deck can read");
    }
    const [version, kid, ivText, tagText, bodyText] = parts as [string, string, string, string, string];
    const key = this.#keys.get(kid);
    if (!key) {
      throw new DeckError("secret_key_mismatch", `a config value was sealed with master key ${kid}, but ${this.#source} is key ${this.kid}; set DECK_MASTER_KEY (or restore keys/master.key) to the key it was sealed with`, { kid, expected: this.kid });
    }
    const iv = Buffer.from(ivText, "base64url");
    const tag = Buffer.from(tagText, "base64url");
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw corrupt("its IV or tag has the wrong length");
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(`${version}:${kid}`));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(Buffer.from(bodyText, "base64url")), decipher.final()]).toString("utf8");
    } catch (e) {
      throw corrupt("it failed authentication (altered or damaged)", e);
    }
  }
}

let configured: SecretBox | null = null;

/** Loads (or on first start creates) the master key for this process. Call once at start, and in tests. */
export function configureSecrets(options: SecretsOptions): SecretsInfo {
  const { key, source, created } = resolveMasterKey(options);
  configured = new SecretBox([key], source === "DECK_MASTER_KEY" ? "DECK_MASTER_KEY" : `the key in ${source}`);
  return { kid: configured.kid, source, created };
}

function box(): SecretBox {
  if (!configured) throw new Error("config var encryption is not configured: call configureSecrets({ dataDir, masterKey }) at start, before any query reads or writes config vars");
  return configured;
}

/** Seals one value with the process's master key. */
export function encryptSecret(plain: string): string {
  return box().seal(plain);
}

/** Opens one sealed value; DeckError `secret_corrupt` or `secret_key_mismatch` when it cannot. */
export function decryptSecret(sealed: string): string {
  return box().open(sealed);
}

/** Seals every value of a KEY → value map; keys stay readable so they can be listed. */
export function encryptSecrets(vars: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, encryptSecret(v)]));
}

/** Opens every value of a map sealed by `encryptSecrets`. */
export function decryptSecrets(sealed: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(sealed).map(([k, v]) => [k, decryptSecret(v)]));
}

/** The master key file's path under a data dir. */
export function masterKeyFile(dataDir: string): string {
  return join(dataDir, "keys", "master.key");
}

/** DECK_MASTER_KEY when given, else the key file (created 0600 in a 0700 directory when missing). */
export function resolveMasterKey(options: SecretsOptions): { key: Buffer; source: string; created: boolean } {
  if (options.masterKey !== undefined && options.masterKey !== "") {
    // The message never repeats the value: a mistyped key is still mostly a key.
    const key = parseKey(options.masterKey);
    if (!key) throw new ConfigError(`DECK_MASTER_KEY (master_key in deck.yaml) is not the base64 encoding of ${KEY_BYTES} bytes; ${MAKE_KEY_HINT}`);
    return { key, source: "DECK_MASTER_KEY", created: false };
  }
  const file = masterKeyFile(options.dataDir);
  mkdirSync(join(options.dataDir, "keys"), { recursive: true, mode: 0o700 });
  chmodSync(join(options.dataDir, "keys"), 0o700);
  let created = false;
  if (!exists(file)) created = createKeyFile(file);
  if (statSync(file).mode & 0o077) chmodSync(file, 0o600);
  const key = parseKey(readFileSync(file, "utf8"));
  if (!key) throw new ConfigError(`${file} does not hold a base64-encoded ${KEY_BYTES}-byte master key; restore it from a backup or set DECK_MASTER_KEY`);
  return { key, source: file, created };
}

/** Writes a new key beside the target and links it into place, so two starting processes agree on one key. */
function createKeyFile(file: string): boolean {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, `${randomBytes(KEY_BYTES).toString("base64")}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    return false;
  } finally {
    rmSync(tmp, { force: true });
  }
}

function parseKey(text: string): Buffer | null {
  const t = text.trim();
  if (!BASE64_KEY.test(t)) return null;
  const key = Buffer.from(t.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  return key.length === KEY_BYTES ? key : null;
}

function keyId(key: Buffer): string {
  return createHash("sha256").update("clouddeck master key id\0").update(key).digest().subarray(0, 6).toString("base64url");
}

function corrupt(why: string, cause?: unknown): DeckError {
  // Neither the value nor the ciphertext goes into the message: it ends up in logs and API answers.
  return new DeckError("secret_corrupt", `a stored config value cannot be decrypted: ${why}`, {}, cause ? { cause } : undefined);
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

const b64 = (b: Buffer) => b.toString("base64url");
