import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { DeckError } from "../core/index.ts";
import { scopeFor } from "./docker-runtime.ts";
import type { Protection } from "./protections.ts";

/**
 * Owner-based nftables rules for the sandbox uids of one deck: a socket owned by an app's uid cannot
 * open a connection to any address of this host (loopback, the host's own interface addresses,
 * docker0 …: other apps' ports, deck's database and API, SSH, the host's loopback services) nor to a
 * link-local address (169.254.0.0/16 with the cloud metadata service, fe80::/10). Replies on
 * connections others opened (the router's requests) and outbound internet traffic pass, and so does
 * DNS to the resolvers in /etc/resolv.conf even when one of them is a local address.
 *
 * The rules sit in one table per deck (named from its data dir, as Docker scopes are), replaced as a
 * whole in one `nft -f` transaction at every `deck server` start, and kept when deck stops: the apps
 * they protect outlive the server.
 */

export const NFT = "nft";
/** Before Docker's DNAT in the output hook (priority -100): a local address is judged as written, not as rewritten to a container's. */
const HOOK_PRIORITY = -150;

export interface NetworkRulesSpec {
  /** nftables table (family inet) that holds the rules; `networkTableFor(dataDir)`. */
  table: string;
  /** Inclusive uid ranges whose sockets are confined; a single uid is [uid, uid]. */
  uidRanges: Array<[number, number]>;
  /** Nameserver addresses apps may reach on port 53 even when local (from /etc/resolv.conf). */
  resolvers: string[];
  /**
   * Addresses of other machines sandboxed sockets may not reach either (a builder node: deck's database
   * and the deck servers whose builds it runs).
   */
  refused?: string[];
}

/** `deck_<16 hex>`: one table per data dir, so deck servers with other data dirs keep theirs. */
export function networkTableFor(dataDir: string): string {
  return `deck_${scopeFor(dataDir)}`;
}

/** The nameserver addresses of a resolv.conf text (zone ids like `%eth0` dropped). */
export function parseResolvers(resolvConf: string): string[] {
  const out: string[] = [];
  for (const line of resolvConf.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const addr = m?.[1]?.replace(/%.*$/, "");
    if (addr && isIP(addr) !== 0 && !out.includes(addr)) out.push(addr);
  }
  return out;
}

/** [base, base + range - 1] plus the uids stored outside it, merged where they touch. */
export function uidRangesFor(base: number, range: number, outside: number[]): Array<[number, number]> {
  const ranges: Array<[number, number]> = [[base, base + range - 1], ...outside.map((u): [number, number] => [u, u])];
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

function uidSet(ranges: Array<[number, number]>): string {
  return `{ ${ranges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(", ")} }`;
}

/**
 * The whole ruleset as one `nft -f` script. Adding the table before deleting it makes the delete
 * succeed when the table does not exist yet; the three statements commit as one transaction, so the
 * old rules never lapse.
 */
export function buildNetworkRuleset(spec: NetworkRulesSpec): string {
  if (!/^[a-z][a-z0-9_]{0,63}$/.test(spec.table)) throw new Error(`"${spec.table}" is not an nftables table name deck uses`);
  if (spec.uidRanges.length === 0) throw new Error("the network rules need at least one uid range");
  const dns = spec.resolvers.flatMap((addr) => {
    const family = isIP(addr) === 6 ? "ip6" : "ip";
    return [`\t\t${family} daddr ${addr} udp dport 53 accept`, `\t\t${family} daddr ${addr} tcp dport 53 accept`];
  });
  return [
    `table inet ${spec.table} {`,
    `}`,
    `delete table inet ${spec.table}`,
    `table inet ${spec.table} {`,
    `\tchain output {`,
    `\t\ttype filter hook output priority ${HOOK_PRIORITY}; policy accept;`,
    `\t\tmeta skuid ${uidSet(spec.uidRanges)} jump sandboxed`,
    `\t}`,
    `\tchain sandboxed {`,
    `\t\tct state established,related accept`,
    ...dns,
    `\t\tfib daddr type { local, broadcast, multicast, anycast } jump refuse`,
    ...refusedRules(spec.refused ?? []),
    // Broadcast and multicast reach every socket bound to 0.0.0.0 on the host, other apps' included.
    `\t\tip daddr { 224.0.0.0/4, 255.255.255.255 } jump refuse`,
    `\t\tip6 daddr ff00::/8 jump refuse`,
    `\t\tip daddr 169.254.0.0/16 jump refuse`,
    `\t\tip6 daddr fe80::/10 jump refuse`,
    // Containers on this host's bridges (Docker's, deck's own) are reached only through the router.
    `\t\toifname "docker0" jump refuse`,
    `\t\toifname "br-*" jump refuse`,
    `\t\toifname "deckd*" jump refuse`,
    `\t}`,
    // A TCP reset makes connect() fail at once with ECONNREFUSED instead of hanging until a timeout.
    `\tchain refuse {`,
    `\t\tmeta l4proto tcp reject with tcp reset`,
    `\t\treject with icmpx type admin-prohibited`,
    `\t}`,
    `}`,
    ``,
  ].join("\n");
}

function refusedRules(addresses: string[]): string[] {
  const v4 = addresses.filter((a) => isIP(a) === 4);
  const v6 = addresses.filter((a) => isIP(a) === 6);
  const bad = addresses.filter((a) => isIP(a) === 0);
  if (bad.length) throw new Error(`not IP addresses: ${bad.join(", ")}`);
  return [
    ...(v4.length ? [`\t\tip daddr { ${v4.join(", ")} } jump refuse`] : []),
    ...(v6.length ? [`\t\tip6 daddr { ${v6.join(", ")} } jump refuse`] : []),
  ];
}

/** `nft -f -` loads a script from stdin; `--check` only validates it against the kernel. */
export function nftLoadArgv(check = false): string[] {
  return check ? [NFT, "--check", "-f", "-"] : [NFT, "-f", "-"];
}

export function nftListTableArgv(table: string): string[] {
  return [NFT, "list", "table", "inet", table];
}

export function nftDeleteTableArgv(table: string): string[] {
  return [NFT, "delete", "table", "inet", table];
}

export interface NftResult {
  /** null: nft could not be started (ENOENT: not installed). */
  code: number | null;
  stdout: string;
  stderr: string;
  spawnError?: NodeJS.ErrnoException;
}

/** Runs one nft argv, feeding `input` on stdin. */
export function runNft(argv: readonly string[], input = ""): Promise<NftResult> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", (e: NodeJS.ErrnoException) => resolve({ code: null, stdout, stderr, spawnError: e }));
    child.once("close", (code) => resolve({ code, stdout, stderr }));
    // EPIPE when nft exits early (bad argv) is reported through its exit status and stderr.
    child.stdin.on("error", () => {});
    child.stdin.end(input);
  });
}

const INSTALL_FIX = "install nftables (apt-get install nftables)";
const ROOT_FIX = "run deck server as root";
const KERNEL_FIX = "use a kernel with nf_tables (modprobe nf_tables; CONFIG_NF_TABLES, CONFIG_NFT_FIB_INET, CONFIG_NFT_REJECT_INET, CONFIG_NFT_CT)";

function firstLine(text: string): string {
  return text.split("\n").map((l) => l.trim()).find((l) => l.length > 0) ?? "";
}

/** Why nft failed, as an off Protection with the fix that fits the failure. */
export function describeNftFailure(r: NftResult, doing: string): Protection {
  if (r.spawnError) {
    return r.spawnError.code === "ENOENT"
      ? { name: "network", on: false, detail: `apps can connect to this host's ports: the nft command is not installed`, fix: INSTALL_FIX }
      : { name: "network", on: false, detail: `apps can connect to this host's ports: cannot run nft (${r.spawnError.message})`, fix: INSTALL_FIX };
  }
  const why = firstLine(r.stderr) || `exit status ${r.code}`;
  const fix = /Operation not permitted|EPERM/i.test(why) ? ROOT_FIX : KERNEL_FIX;
  return { name: "network", on: false, detail: `apps can connect to this host's ports: ${doing} failed (${why})`, fix };
}

function describeOn(spec: NetworkRulesSpec): string {
  const uids = spec.uidRanges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(", ");
  return `uids ${uids} cannot connect to this host's addresses or link-local (nftables table inet ${spec.table})`;
}

/** Loads (or replaces) the rules; the result says whether they are in place. */
export async function applyNetworkRules(spec: NetworkRulesSpec): Promise<Protection> {
  const r = await runNft(nftLoadArgv(), buildNetworkRuleset(spec));
  if (r.code !== 0) return describeNftFailure(r, "loading the rules");
  return { name: "network", on: true, detail: describeOn(spec) };
}

/** Removes the rules (`deck down`); a table that is not there is not an error. */
export async function removeNetworkRules(table: string): Promise<void> {
  const r = await runNft(nftDeleteTableArgv(table));
  if (r.code === 0 || /No such file or directory/i.test(r.stderr) || r.spawnError?.code === "ENOENT") return;
  throw new DeckError("network_rules_failed", `removing the nftables table inet ${table}: ${firstLine(r.stderr) || r.spawnError?.message || `exit status ${r.code}`}`);
}

/** Nameservers from /etc/resolv.conf (none when it cannot be read: then DNS to a local resolver is refused). */
export async function readResolvers(file = "/etc/resolv.conf"): Promise<string[]> {
  // The doc comment above is the contract: an unreadable file means no resolvers, not an error.
  return parseResolvers(await readFile(file, "utf8").catch(() => ""));
}

/**
 * Whether the rules of this deck are loaded. When they are not, says whether the kernel would take
 * them (`nft --check` sends the transaction without committing it), so the fix names the real cause.
 */
export async function probeNetwork(spec: NetworkRulesSpec): Promise<Protection> {
  const listed = await runNft(nftListTableArgv(spec.table));
  if (listed.code === 0 && /chain sandboxed/.test(listed.stdout)) return { name: "network", on: true, detail: describeOn(spec) };
  if (listed.spawnError) return describeNftFailure(listed, "listing the rules");
  const check = await runNft(nftLoadArgv(true), buildNetworkRuleset(spec));
  if (check.code !== 0) return describeNftFailure(check, "checking the rules");
  return { name: "network", on: false, detail: `apps can connect to this host's ports: the rules (nftables table inet ${spec.table}) are not loaded`, fix: "start deck server as root: it loads them" };
}
