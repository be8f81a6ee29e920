import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import ssh2 from "ssh2";
import { DeckError } from "../core/index.ts";

const { utils } = ssh2;

/** OpenSSH-style fingerprint of a public key blob: `SHA256:` + unpadded base64 of its SHA-256. */
export function fingerprintOfBlob(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** Parses an `ssh-ed25519 AAAA… comment` line; throws a DeckError naming the problem. */
export function parsePublicKey(text: string): { publicKey: string; fingerprint: string; comment: string } {
  const line = text.trim().split(/\r?\n/)[0] ?? "";
  const parsed = utils.parseKey(line);
  if (parsed instanceof Error || Array.isArray(parsed) || !parsed || parsed.isPrivateKey()) {
    throw new DeckError("bad_ssh_key", "that is not an SSH public key (expected a line like `ssh-ed25519 AAAA... you@host`, e.g. the contents of ~/.ssh/id_ed25519.pub)");
  }
  const parts = line.split(/\s+/);
  return { publicKey: `${parts[0]} ${parts[1]}`, fingerprint: fingerprintOfBlob(parsed.getPublicSSH()), comment: parts.slice(2).join(" ") };
}

/** The server's host key, generated once into the data dir. */
export async function loadOrCreateHostKey(file: string): Promise<string> {
  if (existsSync(file)) {
    const text = await readFile(file, "utf8");
    const parsed = utils.parseKey(text);
    if (parsed instanceof Error) throw new DeckError("bad_host_key", `${file} is not a usable SSH host key (${parsed.message}); move it away and deck makes a new one`);
    return text;
  }
  await mkdir(dirname(file), { recursive: true });
  // Every generated key is parsed back before it is kept: one that ssh2 cannot read would stop the
  // server at start-up from then on.
  for (let attempt = 1; ; attempt++) {
    const pair = utils.generateKeyPairSync("ed25519", { comment: "deck host key" });
    if (!(utils.parseKey(pair.private) instanceof Error)) {
      await writeFile(`${file}.tmp`, pair.private, { mode: 0o600 });
      await chmod(`${file}.tmp`, 0o600);
      await rename(`${file}.tmp`, file);
      await writeFile(`${file}.pub`, pair.public);
      return pair.private;
    }
    if (attempt >= 5) throw new Error("could not generate an SSH host key that ssh2 can read");
  }
}
