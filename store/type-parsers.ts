import {
  createDateTypeParser,
  createIntervalTypeParser,
  createNumericTypeParser,
  SchemaValidationError,
  type DriverTypeParser,
  type Interceptor,
} from "slonik";

/**
 * How column values reach JavaScript:
 * - int8 / bigint / bigserial → number (ids and byte counts stay far below 2^53; a larger value throws
 *   rather than silently losing digits)
 * - timestamptz → ISO 8601 string in UTC, millisecond precision ("2025-01-02T03:04:05.678Z"); it goes
 *   straight into JSON responses, and `new Date(value)` gives a Date when arithmetic is needed
 * - timestamp (without zone) → the same ISO form, read as UTC
 * - date → "YYYY-MM-DD"; interval → seconds; numeric → number (slonik's defaults)
 * - json / jsonb → parsed objects; text[] and other arrays → JS arrays (pg's defaults)
 */
export function createTypeParsers(): DriverTypeParser[] {
  return [
    { name: "int8", parse: parseBigint },
    { name: "timestamptz", parse: parseTimestamp },
    { name: "timestamp", parse: (value) => parseTimestamp(`${value}+00`) },
    createDateTypeParser(),
    createIntervalTypeParser(),
    createNumericTypeParser(),
  ];
}

function parseBigint(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`bigint value ${value} does not fit a JavaScript number`);
  return n;
}

// PostgreSQL's ISO DateStyle: "2025-01-02 03:04:05.678901+01" (offset may carry minutes and seconds).
const TIMESTAMP = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d)(?::(\d\d))?(?::(\d\d))?( BC)?$/;

export function parseTimestamp(value: string): string {
  if (value === "infinity" || value === "-infinity") return value;
  const m = TIMESTAMP.exec(value);
  if (!m || m[7]) return value;
  const fraction = (m[3] ?? ".000").slice(0, 4).padEnd(4, "0");
  const offsetSeconds = (m[4]!.startsWith("-") ? -1 : 1) * (Math.abs(Number(m[4])) * 3600 + Number(m[5] ?? 0) * 60 + Number(m[6] ?? 0));
  const utcMs = Date.parse(`${m[1]}T${m[2]}${fraction}Z`) - offsetSeconds * 1000;
  return Number.isNaN(utcMs) ? value : new Date(utcMs).toISOString();
}

/**
 * Makes `sql.type(schema)` check rows at run time (slonik 47 only uses the schema for static types):
 * a row that does not match throws SchemaValidationError, and zod transforms/defaults apply.
 */
export function createResultParserInterceptor(): Interceptor {
  return {
    name: "deck-result-parser",
    transformRow: (context, query, row) => {
      const parser = context.resultParser;
      if (!parser) return row;
      const result = parser.safeParse(row);
      if (!result.success) throw new SchemaValidationError(query, row, result.error.issues);
      return result.data as typeof row;
    },
  };
}
