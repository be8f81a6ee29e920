/**
 * Rewrites the configuration table in README.md from config/config.ts (SETTINGS), so the table and
 * the code never disagree: `npm run docs:config`. config.test.ts checks they match.
 */
import { readFile, writeFile } from "node:fs/promises";
import { SETTINGS } from "../config/config.ts";

const README = new URL("../README.md", import.meta.url);
const text = await readFile(README, "utf8");
const lines = text.split("\n");
const header = lines.findIndex((l) => l.startsWith("| variable | deck.yaml key | default | meaning |"));
if (header === -1) throw new Error("README.md has no configuration table (| variable | deck.yaml key | default | meaning |)");
let end = header + 2;
while (end < lines.length && lines[end].startsWith("|")) end++;
const rows = Object.values(SETTINGS).map((s) => {
  const def = s.env === "DECK_BUILD_CONCURRENCY" ? "number of cores" : s.default === undefined || s.default === "" ? "unset" : `\`${s.default}\``;
  return `| \`${s.env}\` | \`${s.yaml}\` | ${def} | ${s.help} |`;
});
lines.splice(header + 2, end - (header + 2), ...rows);
await writeFile(README, lines.join("\n"));
console.log(`README.md: ${rows.length} settings`);
