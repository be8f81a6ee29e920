/**
 * Every error code deck can report, gathered from the `errors.ts` each part declares its codes in, and
 * the one rule for what a client is told of an error: the API answers with the status and hint found
 * here, SSH commands print the same, and docs/errors.md is rendered from it.
 *
 * It lives in ops so that both faces above it (api, gitd) consult one catalogue. It reads the tables
 * of every part, including those two faces: only the tables, not each part's public surface, since
 * they are data that imports nothing but core.
 */
import { CORE_ERRORS, isDeckError, type ErrorCode, type ErrorSpec } from "../core/index.ts";
import { STORE_ERRORS } from "../store/errors.ts";
import { RUNTIME_ERRORS } from "../runtime/errors.ts";
import { BUILDER_ERRORS } from "../builder/errors.ts";
import { ROUTER_ERRORS } from "../router/errors.ts";
import { DEPLOY_ERRORS } from "../deploy/errors.ts";
import { GITD_ERRORS } from "../gitd/errors.ts";
import { API_ERRORS } from "../api/errors.ts";
import { OPS_ERRORS } from "./errors.ts";
import { STRIPE_ERRORS } from "../billing/stripe/errors.ts";

/** Each part's table, by the folder that declares it. */
export const ERROR_TABLES: Readonly<Record<string, Readonly<Record<string, ErrorSpec>>>> = {
  core: CORE_ERRORS,
  store: STORE_ERRORS,
  runtime: RUNTIME_ERRORS,
  builder: BUILDER_ERRORS,
  router: ROUTER_ERRORS,
  deploy: DEPLOY_ERRORS,
  ops: OPS_ERRORS,
  billing: STRIPE_ERRORS,
  gitd: GITD_ERRORS,
  api: API_ERRORS,
};

/** Throws when two parts declare one code: each code has one owner, the lowest part that raises it. */
export function assertDistinctCodes(tables: Readonly<Record<string, Readonly<Record<string, ErrorSpec>>>>): void {
  const owner = new Map<string, string>();
  for (const [part, table] of Object.entries(tables)) {
    for (const code of Object.keys(table)) {
      const first = owner.get(code);
      if (first !== undefined) throw new Error(`error code ${code} is declared by both ${first} and ${part}; declare it once, in the lower of the two`);
      owner.set(code, part);
    }
  }
}

assertDistinctCodes(ERROR_TABLES);

/**
 * The whole catalogue. Its type lists every declared code, so a part whose table is missing here
 * does not type-check.
 */
export const ERROR_CATALOGUE: { readonly [C in ErrorCode]: ErrorSpec } = {
  ...CORE_ERRORS,
  ...STORE_ERRORS,
  ...RUNTIME_ERRORS,
  ...BUILDER_ERRORS,
  ...ROUTER_ERRORS,
  ...DEPLOY_ERRORS,
  ...OPS_ERRORS,
  ...STRIPE_ERRORS,
  ...GITD_ERRORS,
  ...API_ERRORS,
};

/** The entry for a code, or undefined for a code deck does not declare (answered as internal). */
export function lookupError(code: string): ErrorSpec | undefined {
  return Object.hasOwn(ERROR_CATALOGUE, code) ? ERROR_CATALOGUE[code as ErrorCode] : undefined;
}

/**
 * What a client may be told of an error. `shown`: a declared code whose message may be shown. Otherwise
 * (a code whose message is hidden, an undeclared code, an error deck did not expect) the client gets
 * the code (`internal` for the last two) and `hiddenErrorMessage`, and `detail` goes to the log.
 */
export type ErrorDisclosure =
  | { shown: true; code: ErrorCode; status: number; message: string; hint: string }
  | { shown: false; code: ErrorCode; status: number; hint: string | undefined; detail: string };

/** The error with its stack and its cause's, for the deck server log. */
export function describeUnexpected(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = e.cause instanceof Error ? `\ncaused by: ${e.cause.stack ?? e.cause.message}` : "";
  return `${e.stack ?? e.message}${cause}`;
}

/** How an error reaches a client, over SSH and the API alike (the catalogue decides). */
export function describeError(e: unknown): ErrorDisclosure {
  const hidden = (code: ErrorCode, status: number, detail: string): ErrorDisclosure => ({ shown: false, code, status, hint: lookupError(code)?.hint, detail });
  if (!isDeckError(e)) return hidden("internal", 500, describeUnexpected(e));
  const spec = lookupError(e.code);
  if (!spec) return hidden("internal", 500, `undeclared error code ${e.code}: ${describeUnexpected(e)}`);
  if (!spec.expose) return hidden(e.code, spec.status >= 500 ? spec.status : 500, `${e.code}: ${describeUnexpected(e)}`);
  return { shown: true, code: e.code, status: spec.status, message: e.message, hint: spec.hint };
}

/**
 * What a client reads instead of a message it may not see: `what` (this request, a command's name)
 * failed, and the id under which the deck server log has the details.
 */
export function hiddenErrorMessage(what: string, requestId: string): string {
  return `deck could not complete ${what} because of an error on its side; a platform admin finds the details in the deck server log under request id ${requestId}`;
}

const cell = (text: string): string => text.replace(/\|/g, "\\|");

/** docs/errors.md: every code with its status, whether its message is shown, and the hint. */
export function renderErrorDocs(): string {
  const codes = (Object.keys(ERROR_CATALOGUE) as ErrorCode[]).sort();
  const rows = codes.map((code) => {
    const spec = ERROR_CATALOGUE[code];
    return `| \`${code}\` | ${spec.status} | ${spec.expose ? "yes" : "no"} | ${cell(spec.hint)} |`;
  });
  return [
    "# Error codes",
    "",
    "<!-- Rendered from the errors.ts files beside the code that raises each error: edit those, then run `npm run docs:errors`. -->",
    "",
    "Every error deck reports carries a stable code.",
    "",
    "- The REST API answers with the status below and `{\"error\": {\"code\", \"message\", \"hint\", \"requestId\"}}`;",
    "  every answer, error or not, has an `X-Request-Id` header.",
    "- SSH commands print one line on standard error, `deck: error (CODE): MESSAGE`, and exit with status 1.",
    "  A rejected push prints `deck: push rejected: REASON` instead.",
    "",
    "Where *message shown* is *no*, the message names deck's internals (hosts, paths, the engine's or",
    "PostgreSQL's own words): the API and SSH commands alike answer a generic message with a request id,",
    "and the deck server log has the details under that id. A code that is not listed here, and any error",
    "deck did not expect, is answered as `internal` (500) the same way.",
    "",
    "| code | status | message shown | what to do |",
    "|---|---|---|---|",
    ...rows,
    "",
  ].join("\n");
}
