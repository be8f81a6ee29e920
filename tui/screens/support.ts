/**
 * Support (platform admins): one user as a helper needs them — who they are, whether they may sign
 * in, their organisations, apps, credentials and what went wrong for them lately. `v` views the
 * whole dashboard as that user (read-only); `x` stops.
 */
import React from "react";
import { useInput } from "ink";
import type { ApiClient } from "../api-client.ts";
import type { ScreenDef, ScreenProps } from "../screen.ts";
import { formatAge, layoutTable } from "../table.ts";
import { usePoll } from "../use-poll.ts";
import { formatDate, renderLines, userPath, useSelection, type Line } from "./row-selection.ts";

const h = React.createElement;

/** `GET /users/:email`. */
export interface SupportUser {
  email: string; name: string | null; isAdmin: boolean; createdAt: string;
  suspendedAt: string | null; suspendReason: string | null; mfaEnabled: boolean; lastSignInAt: string | null;
  orgs: { slug: string; role: string }[];
  apps: { name: string; org: string; status: string }[];
  keys: number; tokens: number;
  recentErrors: { at: string; app: string | null; kind: string; message: string }[];
}

async function loadUser(client: ApiClient, email: string | undefined): Promise<SupportUser | null> {
  return email ? client.request<SupportUser>("GET", userPath(email)) : null;
}

/** "2026-12-07 10:04" from an ISO time. */
function formatMinute(iso: string): string {
  return iso.slice(0, 16).replace("T", " ");
}

/** Whether `v` (view as the user) is live: a platform admin, not read-only (nor already viewing, which is read-only). */
export function mayViewAs(p: { readonly: boolean; me: ScreenProps["me"] }): boolean {
  return !p.readonly && p.me?.isAdmin === true;
}

export function describeUser(u: SupportUser, now: number): Line[] {
  const state = u.suspendedAt ? `suspended since ${formatDate(u.suspendedAt)}${u.suspendReason ? `: ${u.suspendReason}` : ""}` : "active";
  const signIn = u.lastSignInAt ? `${formatMinute(u.lastSignInAt)} UTC (${formatAge(u.lastSignInAt, now)})` : "never";
  return [
    { key: "who", text: `${u.name ?? "(no name)"} <${u.email}>${u.isAdmin ? " · platform admin" : ""} · joined ${formatDate(u.createdAt)}`, bold: true },
    { key: "state", text: `state ${state}`, color: u.suspendedAt ? "yellow" : undefined },
    { key: "mfa", text: `MFA ${u.mfaEnabled ? "on" : "off"} · last sign-in ${signIn}` },
    { key: "creds", text: `SSH keys ${u.keys} · tokens ${u.tokens}` },
    { key: "orgs", text: `orgs ${u.orgs.length ? u.orgs.map((o) => `${o.slug} (${o.role})`).join(", ") : "none"}` },
  ];
}

export function SupportScreen(props: ScreenProps & { arg?: string }): React.ReactElement {
  const viewing = props.client.viewAs;
  const [email, setEmailState] = React.useState<string | undefined>(props.arg);
  const emailRef = React.useRef(email);
  const setEmail = (e: string) => {
    emailRef.current = e;
    setEmailState(e);
  };
  const find = () => props.ask("find user by email: ", (text) => {
    if (text.trim()) setEmail(text.trim());
  });
  // Opened without a user (and not while looking as someone): ask for one at once.
  React.useEffect(() => {
    if (props.arg === undefined && !viewing) find();
  }, []);

  const lastDeploy = [...props.events].reverse().find((e) => e.type === "deploy");
  const refreshKey = React.useMemo(() => ({ email, lastDeploy }), [email, lastDeploy]);
  const polled = usePoll(() => loadUser(props.client, emailRef.current), { refreshKey });
  // An answer about someone else (the email just changed) is not shown.
  const user = polled.data && polled.data.email.toLowerCase() === email?.toLowerCase() ? polled.data : undefined;
  const f = props.filter.toLowerCase();
  const apps = (user?.apps ?? []).filter((a) => a.name.toLowerCase().includes(f) || a.org.toLowerCase().includes(f));
  const sel = useSelection(apps);

  // Keys read who may act through a ref: a key may come before the handler that saw `me` arrive is in place.
  const mayView = !viewing && mayViewAs(props);
  const mayViewRef = React.useRef(mayView);
  mayViewRef.current = mayView;
  useInput((input, key) => {
    if (!props.keysLive()) return;
    if (sel.move(input, key)) return;
    const app = sel.now().row;
    if (key.return && app) props.openApp(app.name);
    else if (input === "f") find();
    // Switching views says so on the footer: after the root has handled this key, which clears the footer.
    else if (input === "x" && viewing) queueMicrotask(() => props.setViewAs(undefined));
    else if (input === "v" && mayViewRef.current && emailRef.current) {
      const email = emailRef.current;
      queueMicrotask(() => props.setViewAs(email));
    }
  });

  const lines: Line[] = [];
  if (viewing) lines.push({ key: "viewing", text: `viewing as ${viewing} · read-only — x stops viewing`, color: "magenta", bold: true });
  if (!email) {
    lines.push({ key: "find", text: "press f to find a user" });
    return renderLines(lines, props);
  }
  lines.push({ key: "title", text: `support: ${email}${mayView ? " — v views deck as this user" : ""}`, color: "cyan" });
  if (polled.error) lines.push({ key: "err", text: polled.error, color: "red" });
  if (!user) {
    if (!polled.error) lines.push({ key: "wait", text: "loading…" });
    return renderLines(lines, props);
  }
  lines.push(...describeUser(user, Date.now()));

  lines.push({ key: "apps", text: `apps (${user.apps.length})${props.filter ? `, filter "${props.filter}"` : ""}`, bold: true });
  const appTable = layoutTable<SupportUser["apps"][number]>([
    { title: "NAME", width: 20, grow: true, cell: (a) => a.name },
    { title: "ORG", width: 16, cell: (a) => a.org },
    { title: "STATUS", width: 10, cell: (a) => a.status },
  ], apps, props.width - 2);
  if (apps.length) lines.push({ key: "apps-h", text: "  " + appTable.header, dim: true });
  for (const [i, text] of appTable.lines.entries()) lines.push({ key: `a${apps[i]!.name}`, text: (i === sel.at ? "> " : "  ") + text, selected: i === sel.at });
  if (!apps.length) lines.push({ key: "apps-none", text: "  none" });

  lines.push({ key: "errors", text: `recent errors, 7 days (${user.recentErrors.length})`, bold: true, color: user.recentErrors.length ? "red" : undefined });
  const errTable = layoutTable<SupportUser["recentErrors"][number]>([
    { title: "AT", width: 16, cell: (e) => formatMinute(e.at) },
    { title: "APP", width: 14, cell: (e) => e.app ?? "–" },
    { title: "KIND", width: 7, cell: (e) => e.kind },
    { title: "MESSAGE", width: 20, grow: true, cell: (e) => e.message },
  ], user.recentErrors, props.width - 2);
  if (user.recentErrors.length) lines.push({ key: "err-h", text: "  " + errTable.header, dim: true });
  for (const [i, text] of errTable.lines.entries()) lines.push({ key: `e${i}`, text: "  " + text });
  if (!user.recentErrors.length) lines.push({ key: "err-none", text: "  none" });
  return renderLines(lines, props);
}

export const SUPPORT_SCREEN: ScreenDef = {
  name: "support", aliases: ["s"], title: (arg) => (arg ? `support ${arg}` : "support"),
  component: (p) => h(SupportScreen, p),
  // `x` (stop viewing) is shown on the screen itself while viewing: the footer cannot tell viewing
  // from `--readonly`.
  keys: (p) => `f find  Enter open app${p.viewAs ? "  x stop viewing" : mayViewAs(p) ? "  v view as" : ""}`,
  help: (p) => [
    "f                            find a user by email",
    "Enter                        open the selected app",
    ...(p.viewAs ? ["x                            stop viewing as another user"] : mayViewAs(p) ? ["v                            view deck as this user, read-only"] : []),
  ],
};
