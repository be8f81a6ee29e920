import { hash, verify } from "@node-rs/argon2";
import { randomUUID } from "node:crypto";
import { DeckError } from "../../core/errors.ts";

/**
 * argon2id at OWASP's first recommended setting (19 MiB, 2 passes, 1 lane): about 30 ms here, cheap
 * enough to sign people in, costly enough per guess offline.
 */
const ARGON2_OPTIONS = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export const MIN_PASSWORD_LENGTH = 10;
/** Long enough for any passphrase or manager; bounds the work one request can ask of the hasher. */
export const MAX_PASSWORD_LENGTH = 1024;

/** argon2id hash in PHC form (`$argon2id$v=19$m=…`), salt included. */
export async function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2_OPTIONS);
}

/** Whether `password` matches `passwordHash`. A stored hash that does not parse is a broken invariant and throws. */
export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  if (password.length > MAX_PASSWORD_LENGTH) return false;
  return verify(passwordHash, password);
}

let dummyHash: Promise<string> | undefined;

/**
 * A hash no password matches, checked when the account does not exist so that a wrong email costs
 * the same time as a wrong password.
 */
export function dummyPasswordHash(): Promise<string> {
  return (dummyHash ??= hashPassword(`no account ${randomUUID()}`));
}

/** Throws DeckError `weak_password` with one line saying what to change. */
export function checkPasswordPolicy(password: string, email: string): void {
  const weak = (why: string) => new DeckError("weak_password", `password ${why}`);
  if (password.length < MIN_PASSWORD_LENGTH) throw weak(`must be at least ${MIN_PASSWORD_LENGTH} characters`);
  if (password.length > MAX_PASSWORD_LENGTH) throw weak(`must be at most ${MAX_PASSWORD_LENGTH} characters`);
  const lowered = password.trim().toLowerCase();
  const address = email.trim().toLowerCase();
  const localPart = address.split("@")[0] ?? "";
  if (lowered === address || lowered === localPart) throw weak("must not be your email address");
  if (new Set(password).size < 3) throw weak("must use more than two different characters");
}
