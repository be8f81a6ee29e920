/**
 * Every code a DeckError may carry. Each folder that raises errors declares its codes in its own
 * `errors.ts` with `defineErrors` and adds them here by augmenting this interface:
 *
 *   export const DEPLOY_ERRORS = defineErrors({ no_release: { status: 422, expose: true, hint: "…" } });
 *   declare module "../core/errors.ts" { interface ErrorCodes extends Record<keyof typeof DEPLOY_ERRORS, true> {} }
 *
 * so `new DeckError("made_up", …)` does not type-check until the code is declared with its status,
 * whether its message may be shown and what the user can do about it.
 */
export interface ErrorCodes extends Record<keyof typeof CORE_ERRORS, true> {}

export type ErrorCode = keyof ErrorCodes;

/** What a client is told about one code. */
export interface ErrorSpec {
  /** The HTTP status the API answers with. */
  readonly status: number;
  /**
   * Whether the error's message may be shown to the client. Messages of codes that are not exposed
   * (they name hosts, paths or engine output) go to the server log only; the client gets a generic
   * message with a request id, plus the hint.
   */
  readonly expose: boolean;
  /** One line: what the user (or the platform admin) can do about it. */
  readonly hint: string;
}

/** Declares a folder's codes; keeps the literal keys so the folder can augment `ErrorCodes` with them. */
export function defineErrors<const T extends Record<string, ErrorSpec>>(table: T): T {
  return table;
}

/** An expected failure a user should see: a stable code and a one-line message that says what to do. */
export class DeckError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, data: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DeckError";
    this.code = code;
    this.data = data;
  }
}

export function isDeckError(e: unknown): e is DeckError {
  return e instanceof DeckError;
}

/** Codes that belong to no one part of deck. */
export const CORE_ERRORS = defineErrors({
  internal: {
    status: 500,
    expose: false,
    hint: "deck hit an error it did not expect; a platform admin finds the details in the deck server log under the request id",
  },
});
