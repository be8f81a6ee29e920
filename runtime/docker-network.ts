import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import type { Protection } from "./protections.ts";

/**
 * Networks that keep Docker containers apart. Every app gets its own user-defined bridge network
 * (never the default bridge), and every Dockerfile build its own network for its RUN steps. Docker
 * isolates bridge networks from each other; what it does not stop is a container connecting to the
 * host itself (any address of it, the bridge gateway included: deck's API and SSH, PostgreSQL, Redis)
 * or, through the host, to link-local cloud metadata. A table of deck's own in the host's nftables
 * does: every deck bridge interface is named with one prefix, so one rule covers them all.
 */

/** Prefix of every deck bridge interface (Linux allows 15 characters: the prefix and 10 hex digits). */
export const BRIDGE_PREFIX = "deckd";
/** deck's nftables table for Docker networks (family inet: IPv4 and IPv6) when none is named. */
export const DEFAULT_FIREWALL_TABLE = "deck_docker";

/**
 * The table of one deck (its `deck.scope`): two decks on one host, or a test beside a real deck, each
 * keep their own, so removing one never leaves the other's containers open. The rules are the same.
 */
export function firewallTableFor(scope: string): string {
  return `${DEFAULT_FIREWALL_TABLE}_${scope.replace(/[^A-Za-z0-9_]/g, "_")}`;
}

/** POST /networks/create body (the fields deck sets). */
export interface NetworkCreateBody {
  Name: string;
  Driver: "bridge";
  CheckDuplicate: true;
  Labels: Record<string, string>;
  Options: Record<string, string>;
}

/** The bridge interface name for a network key: the prefix and a hash, so it fits Linux's 15 characters. */
export function bridgeName(key: string): string {
  return `${BRIDGE_PREFIX}${createHash("sha256").update(key).digest("hex").slice(0, 10)}`;
}

export function appNetworkName(scope: string, app: string): string {
  return `deck-${scope}-${app}`;
}

/**
 * An app's network. Its own processes (web, workers, the release command) may talk to each other on
 * it, as one tenant's private network; other apps are on other networks, which Docker keeps apart.
 */
export function appNetworkBody(scope: string, app: string): NetworkCreateBody {
  const name = appNetworkName(scope, app);
  return {
    Name: name,
    Driver: "bridge",
    CheckDuplicate: true,
    Labels: { "deck.scope": scope, "deck.app": app, "deck.network": "app" },
    Options: { "com.docker.network.bridge.name": bridgeName(name), "com.docker.network.bridge.enable_icc": "true" },
  };
}

/** A network for one build's RUN steps; nothing else joins it, so containers on it need not talk. */
export function buildNetworkBody(app: string, id = randomBytes(5).toString("hex")): NetworkCreateBody {
  const name = `deck-build-${app}-${id}`;
  return {
    Name: name,
    Driver: "bridge",
    CheckDuplicate: true,
    Labels: { "deck.app": app, "deck.network": "build" },
    Options: { "com.docker.network.bridge.name": bridgeName(name), "com.docker.network.bridge.enable_icc": "false" },
  };
}

/**
 * The nftables script for deck's table, applied as one transaction: declaring the table first makes
 * the delete succeed when it does not exist yet, so applying it again replaces the rules instead of
 * adding a second copy. Rejected (not silently dropped) with "administratively prohibited", so an app
 * that tries sees at once that the platform refuses, rather than hanging on a timeout.
 *
 * - input: a deck container starts no connection to the host; replies to connections the host made
 *   (the router reaching a published port) pass. IPv6 neighbour discovery passes so the link works.
 * - forward: no deck container reaches link-local addresses (169.254.169.254 is cloud metadata).
 */
export function firewallRuleset(table = DEFAULT_FIREWALL_TABLE): string {
  const ifname = `iifname "${BRIDGE_PREFIX}*"`;
  return [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    `    ${ifname} ct state established,related accept`,
    `    ${ifname} icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept`,
    `    ${ifname} reject with icmpx type admin-prohibited`,
    "  }",
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    `    ${ifname} ip daddr 169.254.0.0/16 reject with icmpx type admin-prohibited`,
    `    ${ifname} ip6 daddr fe80::/10 reject with icmpx type admin-prohibited`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** `nft -f -`: the script on stdin. */
export function nftApplyArgv(): string[] {
  return ["nft", "-f", "-"];
}

export function nftDeleteArgv(table = DEFAULT_FIREWALL_TABLE): string[] {
  return ["nft", "delete", "table", "inet", table];
}

/** Runs one argv with optional stdin; resolves with stderr's last line on failure. */
function run(argv: string[], input?: string): Promise<{ ok: true } | { ok: false; message: string; missing: boolean }> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv;
    const child = execFile(cmd, args, { timeout: 10_000 }, (error, _stdout, stderr) => {
      if (!error) return resolve({ ok: true });
      const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
      // nft writes "Error: …" first, then the offending input with carets under it.
      const message = missing ? `${cmd} not found` : (String(stderr).trim().split("\n")[0] || error.message);
      resolve({ ok: false, message, missing });
    });
    // EPIPE when the command exits before reading its input: its exit status and stderr report why.
    child.stdin?.on("error", () => {});
    child.stdin?.end(input ?? "");
  });
}

/**
 * Applies deck's Docker firewall table (idempotent) and says what is in effect. Without it, app
 * containers and Dockerfile builds could reach every service listening on the host.
 */
export async function applyDockerFirewall(table = DEFAULT_FIREWALL_TABLE): Promise<Protection> {
  const result = await run(nftApplyArgv(), firewallRuleset(table));
  if (result.ok) {
    return {
      name: "docker-network",
      on: true,
      detail: `one network per app; nftables table inet ${table} refuses connections from ${BRIDGE_PREFIX}* bridges to the host and to link-local (cloud metadata) addresses`,
    };
  }
  return {
    name: "docker-network",
    on: false,
    detail: `containers can connect to services on the host: nftables table inet ${table} could not be applied (${result.message})`,
    fix: result.missing ? "apt-get install nftables, then restart deck" : "run deck as root on a kernel with nf_tables, then restart deck",
  };
}

export function nftListArgv(table = DEFAULT_FIREWALL_TABLE): string[] {
  return ["nft", "list", "table", "inet", table];
}

/** Whether deck's table is in place, without changing anything (`deck doctor`). */
export async function dockerFirewallStatus(table = DEFAULT_FIREWALL_TABLE): Promise<Protection> {
  const result = await run(nftListArgv(table));
  if (result.ok) return { name: "docker-network", on: true, detail: `nftables table inet ${table} refuses connections from ${BRIDGE_PREFIX}* bridges to the host and to link-local addresses` };
  return {
    name: "docker-network",
    on: false,
    detail: `nftables table inet ${table} is not in place (${result.message}): containers can connect to services on the host`,
    fix: result.missing ? "apt-get install nftables, then restart deck" : "restart deck (the Docker runtime applies it at start)",
  };
}

/** Removes deck's table (tests, and a host that stops running deck); a missing table is fine. */
export async function removeDockerFirewall(table = DEFAULT_FIREWALL_TABLE): Promise<void> {
  await run(nftDeleteArgv(table));
}
