/**
 * The reverse proxies `npm run bench:router` measures deck's router against besides nginx: HAProxy
 * and Caddy, both from Debian (apt-get install -y haproxy caddy). Each is configured as a user would
 * put it in front of a few apps: one host per app, keep-alive connections to the upstreams that are
 * reused across clients, the forwarding headers deck also sets, no access log, and one thread per
 * core it is given. A proxy that is not installed is reported as such and the rest of the run goes on.
 */
import { spawnSync, type ChildProcess } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { has, waitAnswers, type Processes } from "./bench-router-tools.ts";

export type PeerKind = "haproxy" | "caddy";

export const PEER_KINDS: readonly PeerKind[] = ["haproxy", "caddy"];

export const PEER_INSTALL = "apt-get install -y haproxy caddy";

/** What a row says in place of numbers when the proxy is not on this machine. */
export const NOT_INSTALLED = `not installed (${PEER_INSTALL})`;

const TITLES: Record<PeerKind, string> = { haproxy: "HAProxy", caddy: "Caddy" };

export interface PeerSite {
  host: string;
  upstream: number;
}

export interface PeerConfOptions {
  port: number;
  sites: PeerSite[];
  /** Threads: HAProxy's nbthread, Caddy's GOMAXPROCS. */
  threads: number;
}

/**
 * HAProxy in HTTP mode: `nbthread` threads, keep-alive on both sides, idle upstream connections
 * shared by every client (`http-reuse always`), uploads streamed (no `http-buffer-request`), and no
 * `log` line anywhere, so it logs nothing.
 */
export function haproxyConf(o: PeerConfOptions): string {
  const rules = o.sites.map((s, i) => `  use_backend site${i} if { hdr(host) -i ${s.host} }`).join("\n");
  const backends = o.sites.map((s, i) => `backend site${i}\n  server s${i} 127.0.0.1:${s.upstream}`).join("\n\n");
  return `global
  nbthread ${o.threads}
  maxconn 8192

defaults
  mode http
  option http-keep-alive
  http-reuse always
  option forwardfor
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 300s

frontend proxy
  bind 127.0.0.1:${o.port}
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Request-Id %[uuid]
${rules}

${backends}
`;
}

/**
 * Caddy with a Caddyfile: plain HTTP on 127.0.0.1 only (automatic HTTPS off), no admin endpoint, no
 * access log (Caddy writes one only with a `log` directive), and an upstream
 * pool that keeps idle connections as long as nginx's does. Caddy sets X-Forwarded-For and
 * X-Forwarded-Proto itself.
 */
export function caddyfile(o: PeerConfOptions): string {
  const sites = o.sites.map(
    (s) => `http://${s.host}:${o.port} {
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:${s.upstream} {
    header_up X-Request-Id {http.request.uuid}
    transport http {
      keepalive 300s
      keepalive_idle_conns 1024
      keepalive_idle_conns_per_host 1024
    }
  }
}`,
  );
  return `{
  admin off
  auto_https off
}

${sites.join("\n\n")}
`;
}

export interface Peer {
  kind: PeerKind;
  /** Undefined when the proxy is not installed. */
  running?: { child: ChildProcess; port: number };
}

export interface StartPeerOptions extends PeerConfOptions {
  procs: Processes;
  /** The cores it is pinned to, as taskset takes them. */
  core: string;
  /** A folder of its own for its configuration, log and (Caddy's) home. */
  dir: string;
  /** A host it serves, and the start of the answer that shows it is up. */
  ready: { host: string; expect: string };
}

const BINARIES: Record<PeerKind, string> = { haproxy: "haproxy", caddy: "caddy" };

export function peerInstalled(kind: PeerKind): boolean {
  return has(BINARIES[kind]);
}

/** Starts HAProxy or Caddy and waits until it answers; `running` is left out when it is not installed. */
export async function startPeer(kind: PeerKind, o: StartPeerOptions): Promise<Peer> {
  if (!peerInstalled(kind)) return { kind };
  await mkdir(o.dir, { recursive: true });
  const logFile = join(o.dir, `${kind}.log`);
  let child: ChildProcess;
  if (kind === "haproxy") {
    const conf = join(o.dir, "haproxy.cfg");
    await writeFile(conf, haproxyConf(o));
    // -db: in the foreground, as one process whose pid is taskset's child.
    child = o.procs.start(o.core, ["haproxy", "-db", "-f", conf], { logFile });
  } else {
    const conf = join(o.dir, "Caddyfile");
    await writeFile(conf, caddyfile(o));
    // Caddy keeps its data and configuration under HOME/XDG_*: the benchmark's folder, not the user's.
    const env = { ...process.env, GOMAXPROCS: String(o.threads), HOME: o.dir, XDG_DATA_HOME: o.dir, XDG_CONFIG_HOME: o.dir };
    child = o.procs.start(o.core, ["caddy", "run", "--adapter", "caddyfile", "--config", conf], { env, logFile });
  }
  try {
    await waitAnswers(o.port, o.ready.host, o.ready.expect);
  } catch (e) {
    throw new Error(`${TITLES[kind]} did not start (its log: ${logFile}): ${(e as Error).message}`, { cause: e });
  }
  return { kind, running: { child, port: o.port } };
}

export function peerTitle(kind: PeerKind): string {
  return TITLES[kind];
}

/** "HAProxy 2.6.12, Caddy 2.6.2", or "HAProxy not installed" for one that is missing. */
export function peerVersions(): string {
  return PEER_KINDS.map((kind) => {
    if (!peerInstalled(kind)) return `${TITLES[kind]} not installed`;
    const out = kind === "haproxy" ? spawnSync("haproxy", ["-v"], { encoding: "utf8" }).stdout : spawnSync("caddy", ["version"], { encoding: "utf8" }).stdout;
    const v = (kind === "haproxy" ? /version (\S+)/.exec(out) : /v?(\d+\.\d+\.\d+\S*)/.exec(out))?.[1] ?? "?";
    return `${TITLES[kind]} ${v}`;
  }).join(", ");
}
