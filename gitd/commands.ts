import { DeckError } from "../core/index.ts";
import {
  addAppDomain, addKey, addOwnCertificate, appAudit, bandwidthReport, cancelBuilds, changeConfig, clearBuildCache, configValue, createApp, describeRouterStatus,
  describeSetting, destroyApp, domainsOf, findBuildOutput, grantAppAccess, listAppAccess, listBuilds, listKeys, listVisibleApps, maintenanceReport,
  parseAssignments, parseFormation, parseRouterSetting, releasesOf, removeAppDomain, removeCertificate, removeDefaultCertificate, removeKey,
  report, restart, revokeAppAccess, rollback, ROUTER_KEYS, routerReport, scale, setBuilder, setDefaultCertificate, setHealthCheck, setMaintenance, setResourceLimits,
  setRouterSettings, showConfig, startApp, stopApp, type BuildSummary, type Caller, type DeployDeps,
} from "../ops/index.ts";
import { describeCommandError } from "./command-errors.ts";
import { Args, EXTRA_COMMANDS, pad, type CommandIO, type CommandSpec } from "./command-kit.ts";
import "./commands-monitoring.ts";
import "./commands-notify.ts";
import "./commands-logs.ts";
import "./commands-alerts.ts";
import "./commands-autoscale.ts";
import "./commands-billing.ts";
import "./commands-users.ts";
import { parsePublicKey } from "./ssh-keys.ts";

const shortTime = (iso: string) => iso.slice(0, 19).replace("T", " ");
const seconds = (ms: number | null) => (ms === null ? "-" : `${(ms / 1000).toFixed(1)}s`);
/** One decimal in the largest unit that keeps the number at 1 or more, so small repositories do not read "0.0 MB". */
const humanSize = (bytes: number | null) => {
  if (bytes === null) return "-";
  const [n, unit] = bytes >= 1024 ** 3 ? [bytes / 1024 ** 3, "GB"] : bytes >= 1024 ** 2 ? [bytes / 1024 ** 2, "MB"] : [bytes / 1024, "KB"];
  return `${n.toFixed(1)} ${unit}`;
};

function buildRow(b: BuildSummary): string[] {
  const slug = b.artifact === "pruned" ? `${humanSize(b.sizeBytes)} (pruned)` : humanSize(b.sizeBytes);
  return [b.id === null ? "-" : String(b.id), b.status, b.commit.slice(0, 7), b.buildpack ?? "-", seconds(b.durationMs), slug, humanSize(b.repoSizeBytes), shortTime(b.startedAt)];
}

const COMMANDS: Record<string, CommandSpec> = {
  help: { usage: "help", help: "list the commands", run: async (_d, _c, _a, io) => { for (const l of helpText()) io.out(l); } },
  "apps:list": {
    usage: "apps:list [--json]", help: "list the apps you can see", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const apps = await listVisibleApps(deps, caller);
      if (args.json) return io.out(JSON.stringify(apps.map((a) => ({ name: a.name, status: a.status, framework: a.framework, createdAt: a.createdAt }))));
      if (apps.length === 0) return io.out("no apps yet: push one with `git push deck main` or run apps:create NAME");
      for (const l of pad([["NAME", "STATUS", "TYPE"], ...apps.map((a) => [a.name, a.status, a.framework ?? "-"])])) io.out(l);
    },
  },
  "apps:create": {
    usage: "apps:create APP", help: "create an app (a first git push creates it too)",
    run: async (deps, caller, args, io) => {
      const app = await createApp(deps, caller, args.app("apps:create APP"));
      io.out(`created ${app.name}; push to it with: git remote add deck ssh://deck@${deps.config.host}:${deps.config.sshPort}/${app.name}`);
    },
  },
  "apps:destroy": {
    usage: "apps:destroy APP --confirm APP", help: "stop and delete an app with its releases, logs and repository", flags: ["--confirm"], bools: ["--force"],
    run: async (deps, caller, args, io) => {
      const name = args.app("apps:destroy APP --confirm APP");
      if (args.flags.get("--confirm") !== name && !args.flags.has("--force")) {
        throw new DeckError("confirmation_required", `this permanently deletes ${name}; run again with --confirm ${name}`);
      }
      await destroyApp(deps, caller, name);
      io.out(`destroyed ${name}`);
    },
  },
  "config:show": {
    usage: "config:show APP [--reveal] [--json]", help: "show an app's config vars (values masked unless --reveal)", bools: ["--json", "--reveal"],
    run: async (deps, caller, args, io) => {
      const name = args.app("config:show APP");
      const vars = await showConfig(deps, caller, name, { reveal: args.flags.has("--reveal") });
      if (args.json) return io.out(JSON.stringify(vars));
      const keys = Object.keys(vars).sort();
      if (keys.length === 0) return io.out(`no config vars set; set one with config:set ${args.positional[0]} KEY=VALUE`);
      const w = Math.max(...keys.map((k) => k.length)) + 1;
      for (const k of keys) io.out(`${`${k}:`.padEnd(w)} ${vars[k]}`);
    },
  },
  "config:get": {
    usage: "config:get APP KEY", help: "print one config var's value",
    run: async (deps, caller, args, io) => {
      const key = args.positional[1];
      if (!key) throw new DeckError("bad_argument", "missing KEY; usage: config:get APP KEY");
      io.out(await configValue(deps, caller, args.app("config:get APP KEY"), key));
    },
  },
  "config:set": {
    usage: "config:set APP KEY=VALUE ...", help: "set config vars and redeploy",
    run: async (deps, caller, args, io) => {
      const name = args.app("config:set APP KEY=VALUE ...");
      const set = parseAssignments(args.positional.slice(1));
      const r = await changeConfig(deps, caller, name, { set }, io.out);
      io.out(r.version ? `set ${Object.keys(set).join(", ")} and deployed v${r.version}` : `set ${Object.keys(set).join(", ")}`);
    },
  },
  "config:unset": {
    usage: "config:unset APP KEY ...", help: "remove config vars and redeploy",
    run: async (deps, caller, args, io) => {
      const name = args.app("config:unset APP KEY ...");
      const keys = args.positional.slice(1);
      if (keys.length === 0) throw new DeckError("bad_argument", "no KEY given; usage: config:unset APP KEY ...");
      const r = await changeConfig(deps, caller, name, { unset: keys }, io.out);
      io.out(r.version ? `unset ${keys.join(", ")} and deployed v${r.version}` : `unset ${keys.join(", ")}`);
    },
  },
  releases: {
    usage: "releases APP [--json]", help: "list an app's releases", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const { releases } = await releasesOf(deps, caller, args.app("releases APP"));
      if (args.json) return io.out(JSON.stringify(releases.map((r) => ({ version: r.version, status: r.status, description: r.description, commit: r.commitSha, createdAt: r.createdAt }))));
      if (releases.length === 0) return io.out("no releases yet");
      for (const l of pad([["VERSION", "STATUS", "COMMIT", "CREATED", "DESCRIPTION"], ...releases.map((r) => [`v${r.version}`, r.status, r.commitSha.slice(0, 7), r.createdAt.slice(0, 19).replace("T", " "), r.description])])) io.out(l);
    },
  },
  rollback: {
    usage: "rollback APP [vN]", help: "put an earlier release live again (no rebuild)",
    run: async (deps, caller, args, io) => {
      const r = await rollback(deps, caller, args.app("rollback APP [vN]"), args.positional[1], io.out);
      io.out(`rolled back to v${r.target} as v${r.version}`);
    },
  },
  "ps:scale": {
    usage: "ps:scale APP TYPE=N ...", help: "set how many processes of each type run",
    run: async (deps, caller, args, io) => {
      const name = args.app("ps:scale APP web=2");
      const formation = await scale(deps, caller, name, parseFormation(args.positional.slice(1)), io.out);
      io.out(`scaled ${name}: ${Object.entries(formation).map(([t, n]) => `${t}=${n}`).join(" ")}`);
    },
  },
  "ps:restart": {
    usage: "ps:restart APP", help: "restart an app's processes (blue-green)",
    run: async (deps, caller, args, io) => {
      const name = args.app("ps:restart APP");
      await restart(deps, caller, name, io.out);
      io.out(`restarted ${name}`);
    },
  },
  "resource:limit": {
    usage: "resource:limit APP [--memory SIZE] [--cpus N] [--clear]", help: "memory/CPU limits of the app's processes (Docker runtime; applies from the next deploy or ps:restart)",
    flags: ["--memory", "--cpus"], bools: ["--clear", "--json"],
    run: async (deps, caller, args, io) => {
      const name = args.app("resource:limit APP --memory 512m --cpus 1");
      const clear = args.flags.has("--clear");
      const memory = clear ? null : (args.flags.get("--memory") as string | undefined);
      const cpus = clear ? null : (args.flags.get("--cpus") as string | undefined);
      const r = await setResourceLimits(deps, caller, name, { memory, cpus });
      if (args.json) return io.out(JSON.stringify(r));
      const mem = r.memoryLimit === null ? `default (${Math.round(deps.config.appMemory / 1024 ** 2)}m)` : `${Math.round(r.memoryLimit / 1024 ** 2)}m`;
      io.out(`${name}: memory ${mem}, cpus ${r.cpuLimit ?? `default (${deps.config.appCpus})`}`);
    },
  },
  "builder:set": {
    usage: "builder:set APP BUILDER", help: "build with a given buildpack or the Dockerfile instead of detecting (auto = detect)",
    run: async (deps, caller, args, io) => {
      const name = args.app("builder:set APP BUILDER");
      const choice = args.positional[1];
      if (!choice) throw new DeckError("bad_argument", "missing BUILDER; usage: builder:set APP dockerfile|node|python|go|rust|static|generic|auto");
      const value = await setBuilder(deps, caller, name, choice);
      io.out(value ? `${name} is built with ${value} from the next push` : `${name}'s builder is detected from the repository again`);
    },
  },
  "healthcheck:set": {
    usage: "healthcheck:set APP PATH", help: "path a new release must answer before it gets traffic (default /)",
    run: async (deps, caller, args, io) => {
      const name = args.app("healthcheck:set APP PATH");
      const path = args.positional[1];
      if (!path) throw new DeckError("bad_argument", "missing PATH; usage: healthcheck:set APP /health");
      await setHealthCheck(deps, caller, name, path);
      io.out(`new releases of ${name} must answer ${path} before they get traffic`);
    },
  },
  "ps:report": {
    usage: "ps:report APP [--json]", help: "show an app's release and processes", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const r = await report(deps, caller, args.app("ps:report APP"));
      const status = r.app.stopped ? "stopped" : r.app.status;
      if (args.json) return io.out(JSON.stringify({ app: r.app.name, status, stopped: r.app.stopped, maintenance: r.app.router.maintenance, router: r.router.state, url: r.url, healthCheckPath: r.app.healthCheckPath, release: r.release ? `v${r.release.version}` : null, formation: Object.fromEntries(r.formation), processes: r.processes.map((p) => ({ name: `${p.type}.${p.index}`, state: p.state, port: p.port ?? null, pid: p.pid ?? null, restarts: p.restarts, startedAt: p.startedAt })) }));
      io.out(`=== ${r.app.name}`);
      io.out(`Status:     ${r.app.stopped ? `stopped (ps:start ${r.app.name} runs it again)` : status}`);
      io.out(`Router:     ${describeRouterStatus(r.router)}${r.router.state === "maintenance" && r.app.router.maintenance ? `; maintenance:off ${r.app.name} ends it` : ""}`);
      io.out(`URL:        ${r.url}`);
      io.out(`Release:    ${r.release ? `v${r.release.version} (${r.release.description})` : "none"}`);
      io.out(`Health:     ${r.app.healthCheckPath}`);
      io.out(`Builder:    ${r.app.builder ?? "auto (detected)"}`);
      io.out(`Limits:     memory ${r.app.memoryLimit === null ? "default" : `${Math.round(r.app.memoryLimit / 1024 ** 2)}m`}, cpus ${r.app.cpuLimit ?? "default"}`);
      io.out(`Formation:  ${r.formation.map(([t, n]) => `${t}=${n}`).join(" ") || "-"}`);
      if (r.processes.length) for (const l of pad([["PROCESS", "STATE", "PORT", "PID", "RESTARTS", "STARTED"], ...r.processes.map((p) => [`${p.type}.${p.index}`, p.state, String(p.port ?? "-"), String(p.pid ?? "-"), String(p.restarts), p.startedAt.slice(0, 19).replace("T", " ")])])) io.out(l);
    },
  },
  "maintenance:on": {
    usage: "maintenance:on APP", help: "answer every request to the app with a maintenance page (503); processes keep running",
    run: async (deps, caller, args, io) => {
      const name = args.app("maintenance:on APP");
      await setMaintenance(deps, caller, name, true);
      io.out(`${name} is in maintenance mode: every request gets the maintenance page (503) until maintenance:off ${name}`);
    },
  },
  "maintenance:off": {
    usage: "maintenance:off APP", help: "serve the app again after maintenance:on",
    run: async (deps, caller, args, io) => {
      const name = args.app("maintenance:off APP");
      const s = await setMaintenance(deps, caller, name, false);
      io.out(s.stopped ? `${name} is out of maintenance mode, but stopped: it shows the maintenance page until ps:start ${name}` : `${name} is out of maintenance mode and serves requests again`);
    },
  },
  "maintenance:report": {
    usage: "maintenance:report APP [--json]", help: "whether the app shows the maintenance page, and why", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const s = await maintenanceReport(deps, caller, args.app("maintenance:report APP"));
      if (args.json) return io.out(JSON.stringify(s));
      io.out(`=== ${s.app} maintenance`);
      io.out(`Maintenance:  ${s.maintenance ? "on" : "off"}`);
      io.out(`Stopped:      ${s.stopped ? "yes (ps:stop)" : "no"}`);
      // What the router itself answers, not what it was asked to do.
      io.out(`Router:       ${describeRouterStatus((await report(deps, caller, s.app)).router)}`);
    },
  },
  "ps:stop": {
    usage: "ps:stop APP", help: "stop all of the app's processes until ps:start; the router shows the maintenance page (503)",
    run: async (deps, caller, args, io) => {
      const name = args.app("ps:stop APP");
      const r = await stopApp(deps, caller, name, io.out);
      io.out(`stopped ${name} (${r.stopped} process${r.stopped === 1 ? "" : "es"}); it shows the maintenance page until ps:start ${name}`);
    },
  },
  "ps:start": {
    usage: "ps:start APP", help: "start a stopped app's live release again",
    run: async (deps, caller, args, io) => {
      const name = args.app("ps:start APP");
      const r = await startApp(deps, caller, name, io.out);
      if (r.outcome === "not_stopped") io.out(`${name} is not stopped; ps:restart ${name} restarts its processes`);
      else if (r.outcome === "no_release") io.out(`${name} is no longer stopped; it has no release yet, so its first push starts it`);
      else io.out(`started ${name} (v${r.version})`);
    },
  },
  "router:set": {
    usage: "router:set APP KEY [VALUE]", help: `set a router setting (${Object.keys(ROUTER_KEYS).join(", ")}); no VALUE = the server default`,
    run: async (deps, caller, args, io) => {
      const usage = `router:set APP KEY [VALUE] (KEY: ${Object.keys(ROUTER_KEYS).join(", ")})`;
      const name = args.app(usage);
      const [key, value, extra] = args.positional.slice(1);
      if (!key) throw new DeckError("bad_argument", `missing KEY; usage: ${usage}`);
      if (extra !== undefined) throw new DeckError("bad_argument", `too many arguments; usage: ${usage}`);
      const change = parseRouterSetting(key, value);
      const r = await setRouterSettings(deps, caller, name, change);
      const s = Object.values(r.settings).find((v) => v.key === key)!;
      const now = value !== undefined ? `${name}: ${key} ${describeSetting(s)}`
        : s.derivedFrom === "rate-limit" ? `${name}: ${key} is back to twice the app's rate-limit, ${s.value}`
        : `${name}: ${key} is back to the server default, ${describeSetting(s)}`;
      // The burst follows the rate unless the app sets its own: say what it is now (no limit has none).
      const burst = r.settings.rateLimitBurst;
      io.out(key === "rate-limit" && burst.default && s.value !== 0 ? `${now}; rate-burst ${describeSetting(burst)}` : now);
    },
  },
  "router:report": {
    usage: "router:report APP [--json]", help: "the app's router settings in effect, and which are the server defaults", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const r = await routerReport(deps, caller, args.app("router:report APP"));
      if (args.json) return io.out(JSON.stringify(r));
      io.out(`=== ${r.app} router`);
      io.out(`maintenance:     ${r.maintenance ? "on" : "off"}${r.stopped ? " (stopped: maintenance page until ps:start)" : ""}`);
      for (const s of Object.values(r.settings)) io.out(`${`${s.key}:`.padEnd(16)} ${describeSetting(s)}`);
    },
  },
  "keys:list": {
    usage: "keys:list [--json]", help: "list your SSH keys", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const keys = await listKeys(deps, caller);
      if (args.json) return io.out(JSON.stringify(keys.map((k) => ({ id: k.id, name: k.name, fingerprint: k.fingerprint, createdAt: k.createdAt, lastUsedAt: k.lastUsedAt }))));
      for (const l of pad([["ID", "NAME", "FINGERPRINT", "LAST USED"], ...keys.map((k) => [String(k.id), k.name, k.fingerprint, k.lastUsedAt?.slice(0, 19).replace("T", " ") ?? "never"])])) io.out(l);
    },
  },
  "keys:add": {
    usage: "keys:add [NAME] < KEY.pub", help: "add an SSH public key, read from standard input", stdin: true,
    run: async (deps, caller, args, io) => {
      const text = (io.stdin ? await io.stdin() : "").trim();
      if (!text) throw new DeckError("bad_argument", "send the public key on standard input: ssh deck@HOST keys:add laptop < ~/.ssh/id_ed25519.pub");
      const key = parsePublicKey(text);
      const row = await addKey(deps, caller, { publicKey: key.publicKey, fingerprint: key.fingerprint, name: args.positional[0] ?? key.comment });
      io.out(`added ${row.fingerprint} as key ${row.id}`);
    },
  },
  "keys:remove": {
    usage: "keys:remove ID|FINGERPRINT", help: "remove one of your SSH keys",
    run: async (deps, caller, args, io) => {
      const id = args.positional[0];
      if (!id) throw new DeckError("bad_argument", "missing key; usage: keys:remove ID|FINGERPRINT (see keys:list)");
      await removeKey(deps, caller, id);
      io.out(`removed key ${id}`);
    },
  },
  "usage:report": {
    usage: "usage:report APP [--hours N] [--json]", help: "requests and bandwidth the router counted for the app, per hour", flags: ["--hours"], bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const name = args.app("usage:report APP [--hours 24]");
      const rawHours = args.flags.get("--hours");
      const hours = rawHours === undefined ? 24 : Number(rawHours);
      if (!Number.isInteger(hours) || hours < 1 || hours > 24 * 366) throw new DeckError("bad_argument", "--hours must be a whole number of hours from 1 to 8784");
      const rows = await bandwidthReport(deps, caller, name, hours);
      if (args.json) return io.out(JSON.stringify(rows));
      if (rows.length === 0) return io.out(`no traffic counted for ${name} in the last ${hours} hour(s) (counts are saved every DECK_METERING_INTERVAL seconds)`);
      const total = rows.reduce((t, r) => ({ requests: t.requests + r.requests, bytesIn: t.bytesIn + r.bytesIn, bytesOut: t.bytesOut + r.bytesOut }), { requests: 0, bytesIn: 0, bytesOut: 0 });
      const fmt = (n: number) => (n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(2)} GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
      for (const l of pad([["HOUR (UTC)", "REQUESTS", "IN", "OUT"], ...rows.map((r) => [shortTime(r.hour).slice(0, 16), String(r.requests), fmt(r.bytesIn), fmt(r.bytesOut)]),
        ["total", String(total.requests), fmt(total.bytesIn), fmt(total.bytesOut)]])) io.out(l);
    },
  },
  "domains:list": {
    usage: "domains:list APP [--json]", help: "list an app's domains", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const domains = await domainsOf(deps, caller, args.app("domains:list APP"));
      if (args.json) return io.out(JSON.stringify(domains));
      for (const d of domains) io.out(d.default ? `${d.domain} (default)` : d.domain);
    },
  },
  "domains:add": {
    usage: "domains:add APP DOMAIN", help: "serve the app on a custom domain too",
    run: async (deps, caller, args, io) => {
      const name = args.app("domains:add APP DOMAIN");
      const domain = args.positional[1];
      if (!domain) throw new DeckError("bad_argument", "missing DOMAIN; usage: domains:add APP www.example.com");
      await addAppDomain(deps, caller, name, domain);
      io.out(`${name} now answers on ${domain.toLowerCase()}`);
    },
  },
  "domains:remove": {
    usage: "domains:remove APP DOMAIN", help: "stop serving the app on a custom domain",
    run: async (deps, caller, args, io) => {
      const name = args.app("domains:remove APP DOMAIN");
      const domain = args.positional[1];
      if (!domain) throw new DeckError("bad_argument", "missing DOMAIN; usage: domains:remove APP www.example.com");
      await removeAppDomain(deps, caller, name, domain);
      io.out(`removed ${domain.toLowerCase()} from ${name}`);
    },
  },
  "domains:report": {
    usage: "domains:report APP [--json]", help: "each domain of the app with its HTTPS certificate status", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const domains = await domainsOf(deps, caller, args.app("domains:report APP"));
      if (args.json) return io.out(JSON.stringify(domains));
      for (const l of pad([["DOMAIN", "TLS"], ...domains.map((d) => [d.default ? `${d.domain} (default)` : d.domain, d.tls])])) io.out(l);
    },
  },
  "certs:add": {
    usage: "certs:add APP < BUNDLE.pem", help: "serve your own certificate: its chain and private key as PEM on standard input", stdin: true,
    run: async (deps, caller, args, io) => {
      const name = args.app("certs:add APP < BUNDLE.pem");
      const text = io.stdin ? await io.stdin() : "";
      if (!text.trim()) throw new DeckError("bad_argument", `send the certificate chain and its private key on standard input: cat cert.pem key.pem | ssh deck@HOST certs:add ${name}`);
      const r = await addOwnCertificate(deps, caller, name, text);
      io.out(`${name} now serves your certificate for ${r.domains.join(", ")} (expires ${r.expiresAt.slice(0, 10)})`);
    },
  },
  "certs:remove": {
    usage: "certs:remove APP DOMAIN", help: "stop serving a domain's certificate (a custom domain then gets an automatic one)",
    run: async (deps, caller, args, io) => {
      const name = args.app("certs:remove APP DOMAIN");
      const domain = args.positional[1];
      if (!domain) throw new DeckError("bad_argument", "missing DOMAIN; usage: certs:remove APP www.example.com");
      await removeCertificate(deps, caller, name, domain);
      io.out(`removed the certificate of ${domain.toLowerCase()} from ${name}`);
    },
  },
  "certs:default:add": {
    usage: "certs:default:add < BUNDLE.pem", help: "platform admins: a wildcard certificate for *.DECK_DOMAIN, served for every app's default name", stdin: true,
    run: async (deps, caller, _args, io) => {
      const text = io.stdin ? await io.stdin() : "";
      if (!text.trim()) throw new DeckError("bad_argument", "send the wildcard certificate chain and its private key on standard input: cat cert.pem key.pem | ssh deck@HOST certs:default:add");
      const r = await setDefaultCertificate(deps, caller, text);
      io.out(`every app's default name now gets the certificate for ${r.domain} (expires ${r.expiresAt.slice(0, 10)})`);
    },
  },
  "certs:default:remove": {
    usage: "certs:default:remove", help: "platform admins: default names go back to the self-signed fallback",
    run: async (deps, caller, _args, io) => {
      await removeDefaultCertificate(deps, caller);
      io.out("removed the default domain's certificate; default names get the self-signed fallback");
    },
  },
  "access:list": {
    usage: "access:list APP [--json]", help: "roles granted on this app alone", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const rows = await listAppAccess(deps, caller, args.app("access:list APP"));
      if (args.json) return io.out(JSON.stringify(rows));
      if (!rows.length) return io.out("no per-app roles granted (organisation roles apply)");
      for (const l of pad([["EMAIL", "ROLE"], ...rows.map((r) => [r.email, r.role])])) io.out(l);
    },
  },
  "access:add": {
    usage: "access:add APP EMAIL ROLE", help: "grant a user a role (viewer, member, admin, owner) on one app",
    run: async (deps, caller, args, io) => {
      const [name, email, role] = args.positional;
      if (!name || !email || !role) throw new DeckError("bad_argument", "usage: access:add APP EMAIL ROLE");
      await grantAppAccess(deps, caller, name, email, role);
      io.out(`${email} is now ${role} on ${name}`);
    },
  },
  "access:remove": {
    usage: "access:remove APP EMAIL", help: "remove a user's role on one app",
    run: async (deps, caller, args, io) => {
      const [name, email] = args.positional;
      if (!name || !email) throw new DeckError("bad_argument", "usage: access:remove APP EMAIL");
      await revokeAppAccess(deps, caller, name, email);
      io.out(`removed ${email}'s role on ${name}`);
    },
  },
  "builds:list": {
    usage: "builds:list APP [--json]", help: "an app's recent builds: status, commit, buildpack, duration, artifact (slug) size, repository size after the push", bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const builds = await listBuilds(deps, caller, args.app("builds:list APP"));
      if (args.json) return io.out(JSON.stringify(builds));
      if (!builds.length) return io.out("no builds yet; push to build the app");
      for (const l of pad([["ID", "STATUS", "COMMIT", "BUILDPACK", "DURATION", "SLUG", "REPO", "STARTED"], ...builds.map(buildRow)])) io.out(l);
    },
  },
  "builds:output": {
    usage: "builds:output APP [ID]", help: "a build's output: follows a build in progress, prints a finished one (default: the latest)",
    run: async (deps, caller, args, io) => {
      const name = args.app("builds:output APP [ID]");
      const rawId = args.positional[1];
      if (rawId !== undefined && !/^\d{1,15}$/.test(rawId)) throw new DeckError("bad_argument", `"${rawId.slice(0, 20)}" is not a build id (see builds:list ${name})`);
      const target = await findBuildOutput(deps, caller, name, rawId === undefined ? undefined : Number(rawId));
      if (target.kind === "live") return target.run.follow(io.out, io.signal);
      if (!target.lines.length) io.out(`(no output was recorded for build ${target.summary.id})`);
      for (const l of target.lines) io.out(l);
    },
  },
  "builds:cancel": {
    usage: "builds:cancel APP", help: "stop the app's running build and any push of it waiting; those pushes are rejected",
    run: async (deps, caller, args, io) => {
      const name = args.app("builds:cancel APP");
      for (const c of await cancelBuilds(deps, caller, name)) {
        io.out(c.id === null ? `cancelled a push of ${name} waiting for its turn` : `cancelled build ${c.id} of ${name}`);
      }
    },
  },
  "builds:cache:clear": {
    usage: "builds:cache:clear APP", help: "delete the app's build cache; the next build starts cold",
    run: async (deps, caller, args, io) => {
      const name = args.app("builds:cache:clear APP");
      const { freedBytes } = await clearBuildCache(deps, caller, name);
      io.out(`cleared the build cache of ${name} (${(freedBytes / (1024 * 1024)).toFixed(1)} MB)`);
    },
  },
  audit: {
    usage: "audit APP [-n N] [--json]", help: "who did what to an app, newest first", flags: ["-n"], bools: ["--json"],
    run: async (deps, caller, args, io) => {
      const rawN = (args.flags.get("-n") ?? "50") as string;
      if (!/^\d{1,3}$/.test(rawN) || Number(rawN) < 1) throw new DeckError("bad_argument", `-n needs a number from 1 to 999, got "${rawN.slice(0, 20)}"`);
      const rows = await appAudit(deps, caller, args.app("audit APP"), Number(rawN));
      if (args.json) return io.out(JSON.stringify(rows));
      if (!rows.length) return io.out("no audit entries yet");
      for (const l of pad([["TIME", "WHO", "ACTION", "RESULT", "FROM"], ...rows.map((r) => [r.createdAt.slice(0, 19).replace("T", " "), r.userEmail ?? "-", r.action, r.result, `${(r.data as { via?: string }).via ?? "-"} ${r.sourceIp ?? ""}`.trim()])])) io.out(l);
    },
  },
};

// Commands defined beside their feature (gitd/commands-*.ts) join the table.
Object.assign(COMMANDS, EXTRA_COMMANDS);

const ALIASES: Record<string, string> = { apps: "apps:list", config: "config:show", "ps": "ps:report", "--help": "help", "-h": "help" };

export function helpText(): string[] {
  const rows = Object.values(COMMANDS).map((c) => [c.usage, c.help]);
  return ["Usage: ssh deck@HOST COMMAND [ARGS]", "", ...pad(rows).map((l) => `  ${l}`), "", "Deploy with: git push deck main"];
}

/** Runs one deck command; returns the exit status. Errors become one line on stderr. */
export async function runCommand(deps: DeployDeps, caller: Caller, words: string[], io: CommandIO): Promise<number> {
  const name = ALIASES[words[0]] ?? words[0];
  const spec = COMMANDS[name];
  try {
    if (!spec) throw new DeckError("unknown_command", `unknown command "${(words[0] ?? "").slice(0, 40)}"; run \`help\` to list the commands`);
    const args = new Args(words.slice(1), spec.flags ?? [], spec.bools ?? [], spec.usage);
    const code = await spec.run(deps, caller, args, io);
    return typeof code === "number" ? code : 0;
  } catch (e) {
    const report = describeCommandError(e, name);
    if (report.log) deps.log(report.log);
    io.err(report.line);
    return 1;
  }
}

