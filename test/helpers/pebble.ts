/**
 * The real ACME test server `pebble` (Debian package) with `pebble-challtestsrv` as its DNS server,
 * on free loopback ports in a temp dir. Every name resolves to 127.0.0.1 unless a test says otherwise
 * (`addA`), so pebble's HTTP-01 validation connects to `httpPort` on loopback: deck's router.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./deck.ts";

export interface Pebble {
  /** ACME directory URL (HTTPS, with pebble's own listener certificate). */
  directory: string;
  /** PEM of the certificate pebble's HTTPS listeners use; trust it with NODE_EXTRA_CA_CERTS. */
  listenerCaFile: string;
  /** PEM of the root that issued certificates chain to (pebble makes a new one per start). */
  root(): Promise<string>;
  /** Makes pebble's DNS answer A queries for `host` with `address`. */
  addA(host: string, address: string): Promise<void>;
  stop(): Promise<void>;
}

const BINARIES = ["/usr/bin/pebble", "/usr/bin/pebble-challtestsrv"];

/** Why pebble cannot run here, or undefined when it can. Under CI=true a missing package is a failure. */
export function pebbleMissing(): string | undefined {
  const missing = BINARIES.filter((b) => !existsSync(b));
  if (missing.length === 0) return undefined;
  const reason = `${missing.join(" and ")} not installed (apt-get install pebble)`;
  if (process.env.CI === "true") throw new Error(`${reason}; required when CI=true`);
  return reason;
}

function request(url: string, ca: string, method = "GET", body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca, headers: body ? { "Content-Type": "application/json" } : {} }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not happen within ${ms} ms${last ? `: ${(last as Error).message}` : ""}`);
}

/** Starts challtestsrv and pebble; `httpPort` is where pebble sends HTTP-01 validations. */
export async function startPebble(options: { httpPort: number }): Promise<Pebble> {
  const dir = await mkdtemp(join(tmpdir(), "deck-pebble-"));
  const [acmePort, managementPort, tlsPort, dnsPort, challMgmtPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const certFile = join(dir, "listener.pem");
  const keyFile = join(dir, "listener-key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-keyout", keyFile, "-out", certFile, "-subj", "/CN=pebble test listener", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { stdio: "ignore" });
  const configFile = join(dir, "pebble.json");
  await writeFile(configFile, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`, managementListenAddress: `127.0.0.1:${managementPort}`,
      certificate: certFile, privateKey: keyFile, httpPort: options.httpPort, tlsPort,
      ocspResponderURL: "", externalAccountBindingRequired: false,
    },
  }));
  const children: ChildProcess[] = [];
  const logOf = (name: string, child: ChildProcess) => {
    let text = "";
    child.stdout?.on("data", (c) => (text += c));
    child.stderr?.on("data", (c) => (text += c));
    return () => `${name}: ${text.slice(-1500)}`;
  };
  const stop = async () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // No AAAA answers: the router listens on 127.0.0.1 only.
    const dns = spawn("/usr/bin/pebble-challtestsrv", [
      "-dns01", `127.0.0.1:${dnsPort}`, "-http01", "", "-https01", "", "-tlsalpn01", "",
      "-management", `127.0.0.1:${challMgmtPort}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
    ], { stdio: ["ignore", "pipe", "pipe"] });
    children.push(dns);
    const dnsLog = logOf("pebble-challtestsrv", dns);
    await until("pebble-challtestsrv answering", async () => {
      if (dns.exitCode !== null) throw new Error(dnsLog());
      const r = await fetch(`http://127.0.0.1:${challMgmtPort}/`, { method: "POST", body: "{}" }).catch(() => undefined);
      return r ? true : undefined;
    });
    const ca = await readFile(certFile, "utf8");
    const pebble = spawn("/usr/bin/pebble", ["-config", configFile, "-dnsserver", `127.0.0.1:${dnsPort}`], {
      stdio: ["ignore", "pipe", "pipe"],
      // No artificial validation delays; never reject a good nonce (acme-client does not retry badNonce).
      env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" },
    });
    children.push(pebble);
    const pebbleLog = logOf("pebble", pebble);
    const directory = `https://127.0.0.1:${acmePort}/dir`;
    await until("pebble answering", async () => {
      if (pebble.exitCode !== null) throw new Error(pebbleLog());
      return (await request(directory, ca)).status === 200 ? true : undefined;
    });
    return {
      directory,
      listenerCaFile: certFile,
      root: async () => (await request(`https://127.0.0.1:${managementPort}/roots/0`, ca)).body,
      addA: async (host, address) => {
        const r = await fetch(`http://127.0.0.1:${challMgmtPort}/add-a`, { method: "POST", body: JSON.stringify({ host: `${host}.`, addresses: [address] }) });
        if (!r.ok) throw new Error(`challtestsrv add-a ${host}: ${r.status} ${await r.text()}`);
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
