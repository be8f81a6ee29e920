import { createHash, randomInt } from "node:crypto";
import { Secret, TOTP } from "otpauth";
import { DeckError } from "../../core/errors.ts";
import {
  acceptMfaStep,
  activatePendingMfa,
  clearMfa,
  consumeRecoveryCode,
  countUnusedRecoveryCodes,
  findMfaState,
  replaceRecoveryCodes,
  setPendingMfaSecret,
  type Db,
} from "../../store/queries/index.ts";

/**
 * TOTP (RFC 6238) as every authenticator app reads it from an `otpauth://` URI: HMAC-SHA1, 6 digits,
 * 30-second steps, and one step either side accepted for clock drift.
 */
export const TOTP_SETTINGS = { issuer: "CloudDeck", algorithm: "SHA1", digits: 6, period: 30, window: 1 } as const;
export const RECOVERY_CODE_COUNT = 10;

/** `now` (epoch milliseconds) replaces the clock, so tests can move between time steps. */
export interface MfaClock { now?: number }

export interface MfaEnrolment { uri: string; secret: string }
export interface MfaStatus { enabled: boolean; enabledAt: string | null; pending: boolean; recoveryCodesLeft: number }

function totpFor(secret: string, email: string): TOTP {
  return new TOTP({
    issuer: TOTP_SETTINGS.issuer,
    label: email,
    algorithm: TOTP_SETTINGS.algorithm,
    digits: TOTP_SETTINGS.digits,
    period: TOTP_SETTINGS.period,
    secret: Secret.fromBase32(secret),
  });
}

/** The time step a code belongs to, or null when it matches none in the window. */
function matchStep(secret: string, email: string, code: string, now: number): number | null {
  const token = code.replace(/\s+/g, "");
  if (!/^\d{6}$/.test(token)) return null;
  const totp = totpFor(secret, email);
  const delta = totp.validate({ token, timestamp: now, window: TOTP_SETTINGS.window });
  return delta == null ? null : totp.counter({ timestamp: now }) + delta;
}

async function loadState(db: Db, userId: number) {
  const state = await findMfaState(db, userId);
  if (!state) throw new DeckError("not_found", `user ${userId} does not exist`);
  return state;
}

/**
 * Starts (or restarts) enrolment: a new secret is kept as pending and returned as an `otpauth://` URI
 * for the authenticator app. Nothing changes for sign-in until `confirmMfaEnrolment`.
 */
export async function beginMfaEnrolment(db: Db, userId: number): Promise<MfaEnrolment> {
  const state = await loadState(db, userId);
  if (state.enabledAt) throw new DeckError("mfa_already_enabled", "two-factor authentication is already on; turn it off first to enrol a new device");
  const secret = new Secret({ size: 20 }).base32;
  await setPendingMfaSecret(db, userId, secret);
  return { uri: totpFor(secret, state.email).toString(), secret };
}

/**
 * Finishes enrolment with a code from the authenticator app. Returns the recovery codes: this is
 * the only time they are shown.
 */
export async function confirmMfaEnrolment(db: Db, userId: number, code: string, clock: MfaClock = {}): Promise<{ recoveryCodes: string[] }> {
  const state = await loadState(db, userId);
  if (state.enabledAt) throw new DeckError("mfa_already_enabled", "two-factor authentication is already on");
  if (!state.pendingSecret) throw new DeckError("mfa_not_pending", "no two-factor enrolment is in progress; start one first");
  const step = matchStep(state.pendingSecret, state.email, code, clock.now ?? Date.now());
  if (step == null) throw new DeckError("invalid_mfa_code", "that code does not match; check the device's clock and try the current code");
  const recoveryCodes = generateRecoveryCodes();
  await db.transaction(async (tx) => {
    if (!(await activatePendingMfa(tx, userId, state.pendingSealed!, step))) {
      throw new DeckError("mfa_not_pending", "the enrolment was restarted meanwhile; scan the newest code and try again");
    }
    await replaceRecoveryCodes(tx, userId, recoveryCodes.map(hashRecoveryCode));
  });
  return { recoveryCodes };
}

export type MfaCheck = { ok: true } | { ok: false; reason: "invalid" | "replayed" | "not_enabled" };

/**
 * Checks a TOTP code for a user with MFA on. A code is good once: its time step is recorded, and a
 * code from that step or an earlier one is refused afterwards (RFC 6238 §5.2).
 */
export async function checkTotpCode(db: Db, userId: number, code: string, clock: MfaClock = {}): Promise<MfaCheck> {
  const state = await loadState(db, userId);
  if (!state.secret || !state.enabledAt) return { ok: false, reason: "not_enabled" };
  const step = matchStep(state.secret, state.email, code, clock.now ?? Date.now());
  if (step == null) return { ok: false, reason: "invalid" };
  return (await acceptMfaStep(db, userId, step)) ? { ok: true } : { ok: false, reason: "replayed" };
}

/** Spends a recovery code; true only the first time a given code is used. */
export async function useRecoveryCode(db: Db, userId: number, code: string): Promise<boolean> {
  const normalised = normaliseRecoveryCode(code);
  if (normalised.length !== RECOVERY_CODE_LENGTH) return false;
  return consumeRecoveryCode(db, userId, hashRecoveryCode(normalised));
}

/** Checks a TOTP code or, failing that, spends a recovery code (for a user who lost the device). */
export async function checkTotpOrRecoveryCode(db: Db, userId: number, code: string, clock: MfaClock = {}): Promise<MfaCheck> {
  const totp = await checkTotpCode(db, userId, code, clock);
  if (totp.ok || totp.reason !== "invalid") return totp;
  return (await useRecoveryCode(db, userId, code)) ? { ok: true } : totp;
}

/** Turns MFA off; needs a current TOTP code or an unused recovery code. Recovery codes are deleted. */
export async function disableMfa(db: Db, userId: number, code: string, clock: MfaClock = {}): Promise<void> {
  const check = await checkTotpOrRecoveryCode(db, userId, code, clock);
  if (!check.ok) throw mfaCheckError(check.reason);
  await clearMfa(db, userId);
}

/** New recovery codes replacing all old ones; needs a current TOTP code. */
export async function regenerateRecoveryCodes(db: Db, userId: number, code: string, clock: MfaClock = {}): Promise<{ recoveryCodes: string[] }> {
  const check = await checkTotpCode(db, userId, code, clock);
  if (!check.ok) throw mfaCheckError(check.reason);
  const recoveryCodes = generateRecoveryCodes();
  await replaceRecoveryCodes(db, userId, recoveryCodes.map(hashRecoveryCode));
  return { recoveryCodes };
}

export async function mfaStatus(db: Db, userId: number): Promise<MfaStatus> {
  const state = await loadState(db, userId);
  return {
    enabled: state.enabledAt != null,
    enabledAt: state.enabledAt,
    pending: state.pendingSecret != null,
    recoveryCodesLeft: state.enabledAt ? await countUnusedRecoveryCodes(db, userId) : 0,
  };
}

export function mfaCheckError(reason: "invalid" | "replayed" | "not_enabled"): DeckError {
  if (reason === "not_enabled") return new DeckError("mfa_not_enabled", "two-factor authentication is not on for this account");
  if (reason === "replayed") return new DeckError("invalid_mfa_code", "that code was already used; wait for the next one");
  return new DeckError("invalid_mfa_code", "that two-factor code is not valid");
}

// ---- recovery codes: 12 characters of RFC 4648 base32 (60 random bits), shown as xxxx-xxxx-xxxx ----

const RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";
const RECOVERY_CODE_LENGTH = 12;

function generateRecoveryCodes(): string[] {
  return Array.from({ length: RECOVERY_CODE_COUNT }, () => {
    const chars = Array.from({ length: RECOVERY_CODE_LENGTH }, () => RECOVERY_ALPHABET[randomInt(RECOVERY_ALPHABET.length)]).join("");
    return chars.match(/.{4}/g)!.join("-");
  });
}

function normaliseRecoveryCode(code: string): string {
  return code.toLowerCase().replace(/[^a-z0-9]/g, "");
}

/** High-entropy codes need no slow hash: SHA-256 of the normalised code. */
function hashRecoveryCode(code: string): string {
  return createHash("sha256").update(normaliseRecoveryCode(code)).digest("hex");
}
