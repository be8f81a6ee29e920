import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ConfigError } from "../config/index.ts";
import { isDeckError } from "../core/index.ts";
import { configureSecrets, decryptSecret, decryptSecrets, encryptSecret, encryptSecrets, masterKeyFile, SecretBox } from "./secret-box.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "deck-secrets-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const newKey = () => randomBytes(32);
const fields = (box: string) => {
  const [version, kid, iv, tag, body] = box.split(":");
  return { version, kid, iv, tag, body };
};
/** Flips one bit of one base64url field, keeping the string well formed. */
function flip(box: string, index: 2 | 3 | 4): string {
  const parts = box.split(":");
  const bytes = Buffer.from(parts[index]!, "base64url");
  bytes[0]! ^= 0x01;
  parts[index] = bytes.toString("base64url");
  return parts.join(":");
}
function assertDeckError(fn: () => unknown, code: string, secret?: string): Error {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(isDeckError(caught), `expected DeckError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.equal(caught.message.split("\n").length, 1);
  if (secret) assert.ok(!caught.message.includes(secret), "the message must not contain the value");
  return caught;
}

// Runs first: the process-wide box is not configured yet.
it("refuses to seal or open before configureSecrets, saying what to call", () => {
  assert.throws(() => encryptSecret("x"), /not configured: call configureSecrets/);
  assert.throws(() => decryptSecret("v1:a:b:c:d"), /not configured: call configureSecrets/);
});

describe("SecretBox", () => {
  const box = new SecretBox([newKey()]);

  it("round-trips values, including empty, unicode and long ones", () => {
    for (const v of ["", "s3cr3t", "pässwörd ✓ 🔑", "x".repeat(100_000), "a:b:c=d\n"]) assert.equal(box.open(box.seal(v)), v);
  });

  it("writes a compact versioned string that does not contain the value", () => {
    const plain = "postgres://user:hunter2@db/app";
    const sealed = box.seal(plain);
    assert.match(sealed, /^v1:[A-Za-z0-9_-]{8}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22}:[A-Za-z0-9_-]+$/);
    assert.equal(fields(sealed).kid, box.kid);
    assert.ok(!sealed.includes("hunter2"));
  });

  it("uses a fresh IV for every encryption, so equal values give different ciphertexts", () => {
    const seen = new Set<string>();
    const ivs = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const s = box.seal("same value");
      seen.add(s);
      ivs.add(fields(s).iv!);
    }
    assert.equal(seen.size, 50);
    assert.equal(ivs.size, 50);
  });

  it("detects tampering with the ciphertext, the tag, the IV or the version", () => {
    const sealed = box.seal("top secret value");
    for (const index of [2, 3, 4] as const) assertDeckError(() => box.open(flip(sealed, index)), "secret_corrupt", "top secret value");
    assertDeckError(() => box.open(sealed.replace(/^v1:/, "v2:")), "secret_corrupt");
    assertDeckError(() => box.open(sealed.slice(0, -2)), "secret_corrupt");
    assertDeckError(() => box.open("top secret value"), "secret_corrupt", "top secret value");
    assertDeckError(() => box.open(`${sealed}:extra`), "secret_corrupt");
  });

  it("fails with another key: a key id mismatch, or corruption when the id is forged", () => {
    const other = new SecretBox([newKey()], "DECK_MASTER_KEY");
    const sealed = box.seal("value for key one");
    const e = assertDeckError(() => other.open(sealed), "secret_key_mismatch", "value for key one");
    assert.match(e.message, new RegExp(`sealed with master key ${box.kid}, but DECK_MASTER_KEY is key ${other.kid}`));
    const forged = sealed.replace(`:${box.kid}:`, `:${other.kid}:`);
    assertDeckError(() => other.open(forged), "secret_corrupt", "value for key one");
  });

  it("opens values sealed with any key of its ring and seals with the first", () => {
    const oldKey = newKey();
    const sealedOld = new SecretBox([oldKey]).seal("rotated");
    const ring = new SecretBox([newKey(), oldKey]);
    assert.equal(ring.open(sealedOld), "rotated");
    assert.notEqual(fields(ring.seal("x")).kid, fields(sealedOld).kid);
  });
});

describe("configureSecrets", () => {
  it("generates the key file once (0600 in a 0700 directory) and reuses it", () => {
    const dataDir = join(dir, "generated");
    const first = configureSecrets({ dataDir });
    assert.equal(first.created, true);
    assert.equal(first.source, masterKeyFile(dataDir));
    assert.equal(statSync(masterKeyFile(dataDir)).mode & 0o777, 0o600);
    assert.equal(statSync(dirname(masterKeyFile(dataDir))).mode & 0o777, 0o700);
    const sealed = encryptSecret("kept across restarts");
    const second = configureSecrets({ dataDir });
    assert.equal(second.created, false);
    assert.equal(second.kid, first.kid);
    assert.equal(decryptSecret(sealed), "kept across restarts");
  });

  it("prefers DECK_MASTER_KEY and then creates no key file", () => {
    const dataDir = join(dir, "from-env");
    const key = newKey();
    const info = configureSecrets({ dataDir, masterKey: key.toString("base64") });
    assert.equal(info.source, "DECK_MASTER_KEY");
    assert.equal(existsSync(masterKeyFile(dataDir)), false);
    assert.equal(info.kid, new SecretBox([key]).kid);
    // base64url spelling of the same key is the same key.
    assert.equal(configureSecrets({ dataDir, masterKey: key.toString("base64url") }).kid, info.kid);
    const sealed = encryptSecrets({ A: "1", B: "two" });
    assert.ok(Object.values(sealed).every((v) => v.startsWith(`v1:${info.kid}:`)));
    assert.deepEqual(decryptSecrets(sealed), { A: "1", B: "two" });
  });

  it("rejects a bad DECK_MASTER_KEY with one line that names the variable and not the value", () => {
    const dataDir = join(dir, "bad-env");
    const bad = ["not a key", randomBytes(31).toString("base64"), randomBytes(33).toString("base64"), `${randomBytes(32).toString("hex")}`];
    for (const masterKey of bad) {
      assert.throws(() => configureSecrets({ dataDir, masterKey }), (e: Error) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, /^DECK_MASTER_KEY \(master_key in deck\.yaml\) is not the base64 encoding of 32 bytes; create one with: openssl rand -base64 32$/);
        assert.ok(!e.message.includes(masterKey));
        return true;
      });
    }
  });

  it("rejects a damaged key file, naming the file", () => {
    const dataDir = join(dir, "bad-file");
    configureSecrets({ dataDir });
    writeFileSync(masterKeyFile(dataDir), "truncated\n");
    assert.throws(() => configureSecrets({ dataDir }), (e: Error) => e instanceof ConfigError && e.message.startsWith(`${masterKeyFile(dataDir)} does not hold a base64-encoded 32-byte master key`));
  });
});
