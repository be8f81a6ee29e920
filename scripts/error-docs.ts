/**
 * Rewrites docs/errors.md from the error catalogue (ops/error-catalogue.ts), so the list of codes and
 * the code never disagree: `npm run docs:errors`. ops/error-catalogue.test.ts checks they match.
 */
import { writeFile } from "node:fs/promises";
import { ERROR_CATALOGUE, renderErrorDocs } from "../ops/error-catalogue.ts";

await writeFile(new URL("../docs/errors.md", import.meta.url), renderErrorDocs());
console.log(`docs/errors.md: ${Object.keys(ERROR_CATALOGUE).length} error codes`);
