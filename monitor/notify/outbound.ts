import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { networkInterfaces } from "node:os";

/**
 * Where deck may send on a tenant's behalf. A notification webhook is a URL any org admin types, so it
 * must not become a way to reach deck's own ports, the machine's other services or cloud metadata:
 * loopback, private, link-local and other non-public addresses, and every address of this machine (its
 * public ones included), are refused unless a platform admin allows a range (DECK_OUTBOUND_ALLOW, e.g.
 * 127.0.0.1/32). The check runs on the addresses a name
 * resolves to at connect time, so a name that resolves differently later gains nothing.
 */

const NON_PUBLIC: Array<[string, number, "ipv4" | "ipv6"]> = [
  ["0.0.0.0", 8, "ipv4"], ["10.0.0.0", 8, "ipv4"], ["100.64.0.0", 10, "ipv4"], ["127.0.0.0", 8, "ipv4"],
  ["169.254.0.0", 16, "ipv4"], ["172.16.0.0", 12, "ipv4"], ["192.0.0.0", 24, "ipv4"], ["192.168.0.0", 16, "ipv4"],
  ["198.18.0.0", 15, "ipv4"], ["224.0.0.0", 4, "ipv4"], ["240.0.0.0", 4, "ipv4"],
  ["::", 128, "ipv6"], ["::1", 128, "ipv6"], ["fc00::", 7, "ipv6"], ["fe80::", 10, "ipv6"], ["ff00::", 8, "ipv6"],
  // IPv6 forms that carry an IPv4 address (NAT64, 6to4, IPv4-compatible) and the old site-local range.
  ["64:ff9b::", 96, "ipv6"], ["64:ff9b:1::", 48, "ipv6"], ["2002::", 16, "ipv6"], ["::", 96, "ipv6"], ["fec0::", 10, "ipv6"],
];

/** This machine's own addresses, public ones included: deck's ports listen there too. */
function ownAddresses(): Array<[string, "ipv4" | "ipv6"]> {
  return Object.values(networkInterfaces()).flat().filter((a) => a !== undefined).map((a) => [a!.address.replace(/%.*$/, ""), a!.family === "IPv6" ? "ipv6" : "ipv4"]);
}

/** Thrown through a request's lookup when every address of the host is refused. */
export class OutboundRefused extends Error {
  readonly code = "EDECKOUTBOUND";
}

const refusalOf = (what: string) =>
  `${what} is a loopback, private or link-local address, which deck does not send to unless a platform admin allows it (DECK_OUTBOUND_ALLOW)`;

export interface OutboundPolicy {
  /** Why deck will not connect to `ip`, or null when it may. */
  refusal(ip: string): string | null;
  /** A `lookup` for node:http(s) that drops refused addresses and fails when none is left. */
  lookup: LookupFunction;
}

/** A range of DECK_OUTBOUND_ALLOW: `127.0.0.1/32`, `10.0.0.0/8`, `::1/128`, or one address. */
export function parseCidr(raw: string): { address: string; prefix: number; type: "ipv4" | "ipv6" } | null {
  const [address = "", bits, extra] = raw.trim().split("/");
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return null;
  const max = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return null;
  return { address, prefix, type: family === 4 ? "ipv4" : "ipv6" };
}

export function createOutboundPolicy(allow: readonly string[] = []): OutboundPolicy {
  const denied = new BlockList();
  for (const [address, prefix, type] of NON_PUBLIC) denied.addSubnet(address, prefix, type);
  for (const [address, type] of ownAddresses()) denied.addAddress(address, type);
  const allowed = new BlockList();
  for (const raw of allow) {
    const cidr = parseCidr(raw);
    if (!cidr) throw new Error(`"${raw}" is not an address range like 127.0.0.1/32 or 10.0.0.0/8`);
    allowed.addSubnet(cidr.address, cidr.prefix, cidr.type);
  }
  const refused = (ip: string): boolean => {
    const type = isIP(ip) === 6 ? "ipv6" : "ipv4";
    return denied.check(ip, type) && !allowed.check(ip, type);
  };
  const refusal = (ip: string): string | null => (refused(ip) ? refusalOf(ip) : null);
  const lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, "", 0);
      const usable = addresses.filter((a) => !refused(a.address));
      if (usable.length === 0) return callback(new OutboundRefused(refusalOf(`${hostname} (${addresses.map((a) => a.address).join(", ")})`)), "", 0);
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, usable);
      callback(null, usable[0]!.address, usable[0]!.family);
    });
  };
  return { refusal, lookup };
}
