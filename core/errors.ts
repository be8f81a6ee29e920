/** An expected failure a user should see: a stable code and a one-line message that says what to do. */
export class DeckError extends Error {
  readonly code: string;
  readonly data: Record<string, unknown>;
  constructor(code: string, message: string, data: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DeckError";
    this.code = code;
    this.data = data;
  }
}

export function isDeckError(e: unknown): e is DeckError {
  return e instanceof DeckError;
}
