/**
 * Every user of this deck (platform admins): state, two-factor, admin, joined. Keys create, suspend,
 * unsuspend and delete users, reset their two-factor and revoke their tokens and SSH keys; Enter
 * opens the Support screen for the selected user.
 */
import React from "react";
import { Box, Text, useInput } from "ink";
import type { ApiClient, Me } from "../api-client.ts";
import { runAction, type ScreenDef, type ScreenProps } from "../screen.ts";
import { layoutTable, type Column } from "../table.ts";
import { usePoll } from "../use-poll.ts";
import { formatDate, parseRole, useRefreshKey, userPath, useSelection } from "./row-selection.ts";

const h = React.createElement;

/** One row of `GET /users`. */
export interface UserRow {
  email: string; name: string | null; isAdmin: boolean; createdAt: string;
  suspendedAt: string | null; suspendReason: string | null; mfaEnabled: boolean;
}

async function loadUsers(client: ApiClient): Promise<UserRow[]> {
  return (await client.request<{ items: UserRow[] }>("GET", "/users?limit=100")).items;
}

export function describeState(u: UserRow): string {
  return u.suspendedAt ? `suspended since ${formatDate(u.suspendedAt)}` : "active";
}

/** Rows whose email, name or state holds the filter. */
export function filterUsers(rows: readonly UserRow[], filter: string): UserRow[] {
  const f = filter.toLowerCase();
  return rows.filter((u) => [u.email, u.name ?? "", describeState(u)].some((s) => s.toLowerCase().includes(f)));
}

const COLUMNS: Column<UserRow>[] = [
  { title: "EMAIL", width: 18, grow: true, cell: (u) => u.email },
  { title: "NAME", width: 10, cell: (u) => u.name ?? "–" },
  { title: "STATE", width: 26, cell: describeState },
  { title: "MFA", width: 3, cell: (u) => (u.mfaEnabled ? "on" : "off") },
  { title: "ADMIN", width: 5, cell: (u) => (u.isAdmin ? "yes" : "") },
  { title: "CREATED", width: 10, cell: (u) => formatDate(u.createdAt) },
];

/** Whether the user-changing keys are live: a platform admin, not read-only. */
export function mayAdministerUsers(p: { readonly: boolean; me: Me | undefined }): boolean {
  return !p.readonly && p.me?.isAdmin === true;
}

export function UsersScreen(props: ScreenProps): React.ReactElement {
  const refresh = useRefreshKey(undefined);
  const polled = usePoll(() => loadUsers(props.client), { refreshKey: refresh.key });
  const rows = filterUsers(polled.data ?? [], props.filter);
  const sel = useSelection(rows);
  const may = mayAdministerUsers(props);
  // Keys read who may act through a ref: a key may come before the handler that saw `me` arrive is in place.
  const mayRef = React.useRef(may);
  mayRef.current = may;

  const act = (doing: string, call: () => Promise<string>) => void runAction(props, doing, call).then(refresh.bump);
  const create = () => props.ask("new user's email: ", (raw) => {
    const email = raw.trim();
    if (!email) return props.notify("no email given; nobody created", "error");
    props.ask("organisation (empty for none): ", (rawOrg) => {
      const org = rawOrg.trim();
      if (!org) return act(`creating ${email}`, async () => {
        await props.client.request("POST", "/users", { email });
        return `created ${email}`;
      });
      props.ask(`role in ${org} (owner/admin/member/viewer, empty for member): `, (rawRole) => {
        const role = rawRole.trim() ? parseRole(rawRole) : "member";
        if (!role) return props.notify(`"${rawRole.trim()}" is not a role: owner, admin, member or viewer; nobody created`, "error");
        act(`creating ${email}`, async () => {
          await props.client.request("POST", "/users", { email, org, role });
          return `created ${email}, ${role} of ${org}`;
        });
      });
    });
  });

  useInput((input, key) => {
    if (!props.keysLive()) return;
    if (sel.move(input, key)) return;
    const user = sel.now().row;
    if (key.return && user) return props.open("support", user.email);
    if (!mayRef.current) return;
    if (input === "n") return create();
    if (!user) return;
    const email = user.email;
    const path = userPath(email);
    if (input === "S") {
      props.confirm(`suspend ${email}?`, "y", () => props.ask("reason (optional): ", (reason) => act(`suspending ${email}`, async () => {
        await props.client.request("POST", `${path}/suspend`, reason.trim() ? { reason: reason.trim() } : {});
        return `suspended ${email}: they can no longer sign in, push or use tokens`;
      })));
    } else if (input === "U") {
      props.confirm(`unsuspend ${email}?`, "y", () => act(`unsuspending ${email}`, async () => {
        await props.client.request("POST", `${path}/unsuspend`);
        return `${email} may sign in again`;
      }));
    } else if (input === "D") {
      props.confirm(`delete ${email} and everything only they own?`, email, () => act(`deleting ${email}`, async () => {
        await props.client.request("DELETE", `${path}?confirm=${encodeURIComponent(email).replace(/%40/g, "@")}`);
        return `deleted ${email}`;
      }));
    } else if (input === "M") {
      props.confirm(`reset the two-factor authentication of ${email}?`, "y", () => act(`resetting MFA of ${email}`, async () => {
        const r = await props.client.request<{ mfaWasEnabled?: boolean }>("POST", `${path}/mfa/reset`);
        return r?.mfaWasEnabled === false ? `${email} had no two-factor authentication; nothing to reset` : `two-factor authentication of ${email} is off; they may enrol again`;
      }));
    } else if (input === "R") {
      props.confirm(`revoke every token and SSH key of ${email}?`, "y", () => act(`revoking credentials of ${email}`, async () => {
        const r = await props.client.request<{ tokensRevoked?: number; keysRemoved?: number }>("POST", `${path}/credentials/revoke`);
        return `${email}: ${r?.tokensRevoked ?? 0} token(s) revoked, ${r?.keysRemoved ?? 0} SSH key(s) removed`;
      }));
    }
  });

  if (!polled.data) return h(Text, { color: props.color && polled.error ? "red" : undefined, wrap: "truncate" }, polled.error ?? "loading…");
  const table = layoutTable(COLUMNS, rows, props.width - 2);
  const visible = Math.max(1, props.height - 3);
  const first = Math.max(0, Math.min(sel.at - visible + 1, rows.length - visible));
  const suspended = polled.data.filter((u) => u.suspendedAt).length;
  const summary = `${rows.length} of ${polled.data.length} users, ${suspended} suspended${props.filter ? `, filter "${props.filter}"` : ""}`;
  return h(Box, { flexDirection: "column" },
    h(Text, { wrap: "truncate", dimColor: props.color }, summary),
    h(Text, { wrap: "truncate", bold: props.color }, "  " + table.header),
    ...table.lines.slice(first, first + visible).map((text, i) => {
      const mine = first + i === sel.at;
      const user = rows[first + i]!;
      const color = !props.color ? undefined : mine ? "cyan" : user.suspendedAt ? "yellow" : undefined;
      return h(Text, { key: user.email, wrap: "truncate", color }, (mine ? "> " : "  ") + text);
    }),
    rows.length === 0 ? h(Text, { key: "none" }, props.filter ? "  no user matches the filter" : "  no users") : null,
    polled.error ? h(Text, { wrap: "truncate", color: props.color ? "red" : undefined }, polled.error) : null);
}

export const USERS_SCREEN: ScreenDef = {
  name: "users", aliases: ["u"], title: () => "users", component: UsersScreen,
  keys: (p) => (mayAdministerUsers(p) ? "n new  S/U suspend  D delete  M MFA  R revoke" : "Enter support"),
  help: (p) => [
    "Enter                        the Support screen for the selected user",
    ...(!mayAdministerUsers(p) ? [] : [
    "n                            create a user (email, then an organisation and role)",
    "S / U                        suspend (y, then a reason) / unsuspend the selected user",
    "D                            delete the selected user (type their email)",
    "M                            reset the user's two-factor authentication (y)",
    "R                            revoke all the user's tokens and SSH keys (y)",
    ]),
  ],
};
