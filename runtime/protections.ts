/**
 * What keeps tenants apart on this host, each protection on or off. `deck doctor` prints them all;
 * `deck server` names every one that is off at start-up. Nothing is silently off.
 */
export interface Protection {
  /** Short stable name, e.g. "sandbox", "cgroup-memory", "network". */
  name: string;
  on: boolean;
  /** One line: what is in effect when on, why it is off when off. */
  detail: string;
  /** When off: one line saying how to turn it on (a package to install, a kernel setting). */
  fix?: string;
}

/** `on   sandbox   bubblewrap 0.8.0: …` / `OFF  network   nft not found; apt-get install nftables`. */
export function formatProtection(p: Protection): string {
  const state = p.on ? "on " : "OFF";
  return `${state}  ${p.name.padEnd(16)} ${p.detail}${!p.on && p.fix ? `; ${p.fix}` : ""}`;
}
