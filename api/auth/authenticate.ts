import { DeckError } from "../../core/errors.ts";
import { assertActive } from "../../ops/accounts.ts";
import { audit, findUserById, findUserRowByEmail, type Db, type UserRow } from "../../store/queries/index.ts";
import { verifyPersonalToken } from "./personal-tokens.ts";
import { isScope, scopeCovers, type Scope } from "./scopes.ts";
import type { SigningKeys } from "./signing-keys.ts";

export interface Principal {
  user: UserRow;
  scopes: Scope[];
  /** How the caller proved who they are: a signed access token or a personal access token. */
  via: "access_token" | "personal_token";
  /** The personal access token's id (for audit), when `via` is "personal_token". */
  tokenId?: number;
  /** The platform admin who sent the token, when they view deck as `user` (`X-Deck-View-As`). */
  viewedBy?: UserRow;
}

/** What a request says besides its token. */
export interface BearerRequest {
  /** The HTTP method: viewing as another user is for GET and HEAD only. */
  method: string;
  /** The `X-Deck-View-As` header: the email of the user a platform admin views deck as. */
  viewAs?: string;
  sourceIp?: string | null;
}

/** The header a platform admin sends to see deck as one of its users (support). */
export const VIEW_AS_HEADER = "x-deck-view-as";

/**
 * What a platform admin viewing as a user may do: look, including the logs and builds the user's role
 * shows them (the "deploy" scope), on GET and HEAD alone, so nothing is ever changed in their name.
 * Narrower still when the admin's own token is (a "read" token views without logs); routes that need
 * "write" to read (log drains, retention, revealed config) stay closed.
 */
export const VIEW_AS_SCOPES: readonly Scope[] = ["read", "deploy"];

/** One `support:view-as` audit entry per admin and user in this long. */
export const VIEW_AS_AUDIT_EVERY_MS = 10 * 60_000;

/**
 * Who a bearer token belongs to: `deck_…` is a personal access token, anything else must be a signed
 * access token. Throws DeckError `invalid_token` (a 401) with a one-line reason otherwise, and
 * `forbidden` (a 403) for a suspended user's token of either kind. With `request` carrying
 * `X-Deck-View-As`, a platform admin is answered as that user (see `viewAs`).
 */
export async function authenticateBearer(deps: { db: Db; keys: SigningKeys }, token: string, request?: BearerRequest): Promise<Principal> {
  const principal = await verifyBearer(deps, token);
  return request?.viewAs ? viewAs(deps.db, principal, request as BearerRequest & { viewAs: string }) : principal;
}

async function verifyBearer(deps: { db: Db; keys: SigningKeys }, token: string): Promise<Principal> {
  if (token.startsWith("deck_")) {
    const pat = await verifyPersonalToken(deps.db, token);
    if (!pat) throw new DeckError("invalid_token", "personal access token is unknown, expired or revoked");
    assertActive(pat.user);
    return { user: pat.user, scopes: pat.scopes, via: "personal_token", tokenId: pat.tokenId };
  }
  const claims = await deps.keys.verifyAccessToken(token);
  const user = await findUserById(deps.db, claims.userId);
  if (!user) throw new DeckError("invalid_token", "access token rejected: its user no longer exists", { reason: "unknown user" });
  assertActive(user);
  return { user, scopes: claims.scopes.filter(isScope), via: "access_token" };
}

/**
 * A platform admin seeing deck as one of its users, to help them: the principal becomes that user
 * (suspended or not) with `VIEW_AS_SCOPES`, for GET and HEAD only. Anyone else sending the header, and
 * any other method, is refused (403); an unknown email is a 404. Audited as `support:view-as`, at
 * most once per admin and user every `VIEW_AS_AUDIT_EVERY_MS`.
 */
async function viewAs(db: Db, admin: Principal, request: BearerRequest & { viewAs: string }): Promise<Principal> {
  const email = request.viewAs.trim();
  const refuse = async (message: string): Promise<never> => {
    // A refused try is what the security view is for: written down, each one.
    await audit(db, {
      userId: admin.user.id, action: "support:view-as", target: `user:${email.slice(0, 254)}`, sourceIp: request.sourceIp, result: "denied",
      data: { via: "http", method: request.method, reason: message },
    });
    throw new DeckError("forbidden", message);
  };
  if (!admin.user.isAdmin) return refuse("only platform admins may view deck as another user (X-Deck-View-As)");
  if (request.method !== "GET" && request.method !== "HEAD") return refuse("viewing as another user is read-only");
  const target = email.length <= 254 ? await findUserRowByEmail(db, email) : null;
  if (!target) throw new DeckError("not_found", `no user with email ${email.slice(0, 80)} to view deck as`);
  await recentViews.recorded(`${admin.user.id}:${target.id}`, Date.now(), () => audit(db, {
    userId: admin.user.id, action: "support:view-as", target: `user:${target.email}`, sourceIp: request.sourceIp, result: "ok",
    data: { via: "http", userId: target.id },
  }));
  return { user: target, scopes: VIEW_AS_SCOPES.filter((s) => scopeCovers(admin.scopes, s)), via: admin.via, viewedBy: admin.user };
}

/**
 * When each admin last began viewing as each user, in this server's memory (a restart audits again,
 * which is harmless), with the audit write of that start: every request of the window waits for it, so
 * nothing is served as the user before the view is on record.
 */
class RecentViews {
  private readonly since = new Map<string, { at: number; recorded: Promise<void> }>();
  /** Most pairs kept; past it the ones older than the window go. */
  private static readonly MAX = 10_000;

  constructor(private readonly windowMs: number) {}

  /** The record of `key`'s current window, started with `record` when there is none; a failed record is forgotten so the next request tries again. */
  recorded(key: string, nowMs: number, record: () => Promise<void>): Promise<void> {
    const last = this.since.get(key);
    if (last !== undefined && nowMs - last.at < this.windowMs) return last.recorded;
    if (this.since.size >= RecentViews.MAX) {
      for (const [k, v] of this.since) if (nowMs - v.at >= this.windowMs) this.since.delete(k);
    }
    const recorded = record().catch((e: unknown) => {
      if (this.since.get(key)?.recorded === recorded) this.since.delete(key);
      throw e;
    });
    this.since.set(key, { at: nowMs, recorded });
    return recorded;
  }
}

const recentViews = new RecentViews(VIEW_AS_AUDIT_EVERY_MS);
