/**
 * Host names as deck accepts them for custom domains and the router serves certificates for: ASCII
 * letters, digits and dashes (RFC 1123 §2.1; internationalised names in their `xn--` form, RFC 5890),
 * lowercase, in labels of 1-63 characters that neither start nor end with a dash, at most 253 in all,
 * at least two labels, and a last label that is not all digits (so no IPv4 address, RFC 3696 §2).
 * domains:add and the router's certificate list use this one check, so a name one side takes is
 * never one the other refuses.
 */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export interface HostNameOptions {
  /** Also accept `*.NAME` (a wildcard certificate's name: one label in place of the `*`). */
  wildcard?: boolean;
}

export function isHostName(name: string, options: HostNameOptions = {}): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split(".");
  if (labels.length < 2) return false;
  if (options.wildcard && labels[0] === "*") labels.shift();
  if (!labels.every((label) => LABEL.test(label))) return false;
  return !/^[0-9]+$/.test(labels[labels.length - 1]!);
}

/** How users may type a domain: any case, with the root's trailing dot (`WWW.Example.com.`). */
export function normalizeHostName(raw: string): string {
  return raw.toLowerCase().replace(/\.$/, "");
}
