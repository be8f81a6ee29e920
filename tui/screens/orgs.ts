/**
 * Organisations: every one of them for platform admins (your own otherwise), with plan, members and
 * apps; Enter opens one, with its members and plan, where owners, admins and platform admins change
 * roles, add and remove members and change the plan.
 */
import React from "react";
import { Box, Text, useInput } from "ink";
import type { ApiClient, Me } from "../api-client.ts";
import { runAction, type ScreenDef, type ScreenProps } from "../screen.ts";
import { layoutTable, type Column } from "../table.ts";
import { usePoll } from "../use-poll.ts";
import { formatDate, formatDollars, parseRole, renderLines, useRefreshKey, useSelection, type Line } from "./row-selection.ts";

const h = React.createElement;

/** One row of `GET /orgs?all=true` (members and apps are absent from a non-admin's `GET /orgs`). */
export interface OrgRow { slug: string; name: string; plan: string | null; members?: number; apps?: number; createdAt: string }

async function loadOrgs(client: ApiClient, me: Me | undefined): Promise<OrgRow[]> {
  return (await client.request<{ items: OrgRow[] }>("GET", me?.isAdmin ? "/orgs?all=true" : "/orgs")).items;
}

const ORG_COLUMNS: Column<OrgRow>[] = [
  { title: "SLUG", width: 16, grow: true, cell: (o) => o.slug },
  { title: "NAME", width: 20, cell: (o) => o.name },
  { title: "PLAN", width: 12, cell: (o) => o.plan ?? "–" },
  { title: "MEMBERS", width: 7, align: "right", cell: (o) => (o.members === undefined ? "–" : String(o.members)) },
  { title: "APPS", width: 5, align: "right", cell: (o) => (o.apps === undefined ? "–" : String(o.apps)) },
  { title: "CREATED", width: 10, cell: (o) => formatDate(o.createdAt) },
];

export function OrgsScreen(props: ScreenProps): React.ReactElement {
  // An admin's answer is known only once `me` is: load again when it arrives.
  const polled = usePoll(() => loadOrgs(props.client, props.me), { refreshKey: props.me?.isAdmin });
  const f = props.filter.toLowerCase();
  const rows = (polled.data ?? []).filter((o) => [o.slug, o.name, o.plan ?? ""].some((s) => s.toLowerCase().includes(f)));
  const sel = useSelection(rows);
  useInput((input, key) => {
    if (!props.keysLive()) return;
    if (sel.move(input, key)) return;
    const org = sel.now().row;
    if (key.return && org) props.open("org", org.slug);
  });

  if (!polled.data) return h(Text, { color: props.color && polled.error ? "red" : undefined, wrap: "truncate" }, polled.error ?? "loading…");
  const table = layoutTable(ORG_COLUMNS, rows, props.width - 2);
  const visible = Math.max(1, props.height - 3);
  const first = Math.max(0, Math.min(sel.at - visible + 1, rows.length - visible));
  const summary = `${rows.length} of ${polled.data.length} organisations${props.me?.isAdmin ? "" : " (yours)"}${props.filter ? `, filter "${props.filter}"` : ""}`;
  return h(Box, { flexDirection: "column" },
    h(Text, { wrap: "truncate", dimColor: props.color }, summary),
    h(Text, { wrap: "truncate", bold: props.color }, "  " + table.header),
    ...table.lines.slice(first, first + visible).map((text, i) => {
      const mine = first + i === sel.at;
      return h(Text, { key: rows[first + i]!.slug, wrap: "truncate", color: props.color && mine ? "cyan" : undefined }, (mine ? "> " : "  ") + text);
    }),
    rows.length === 0 ? h(Text, { key: "none" }, props.filter ? "  no organisation matches the filter" : "  no organisations") : null,
    polled.error ? h(Text, { wrap: "truncate", color: props.color ? "red" : undefined }, polled.error) : null);
}

export const ORGS_SCREEN: ScreenDef = {
  name: "orgs", aliases: ["organisations"], title: () => "organisations", component: OrgsScreen, keys: "Enter members and plan",
};

// ---------- one organisation ----------

export interface MemberRow { email: string; role: string; joinedAt?: string }

/** `GET /orgs/:org/billing/plan`: the plan in force and a change not yet in force. */
export interface OrgPlan {
  org: string; plan: { code: string; name: string; monthlyCents: number; custom: boolean }; since: string;
  scheduled: { plan: string; from: string } | null;
}

/** `PUT /orgs/:org/billing/plan`'s answer. */
type PlanChange = OrgPlan & { changed: boolean; kept?: boolean };

interface OrgData { members: MemberRow[]; plan: OrgPlan | string }

async function loadOrg(client: ApiClient, slug: string): Promise<OrgData> {
  const org = encodeURIComponent(slug);
  const [members, plan] = await Promise.all([
    client.request<{ items: MemberRow[] }>("GET", `/orgs/${org}/members`),
    // Members and viewers may not read the plan: the members still show, with the reason.
    client.request<OrgPlan>("GET", `/orgs/${org}/billing/plan`).catch((err: unknown) => `plan: ${err instanceof Error ? err.message : String(err)}`),
  ]);
  return { members: members.items, plan };
}

/** Whether the caller may manage the org's members and plan: a platform admin, or its owner or admin; never read-only. */
export function mayManageOrg(p: { readonly: boolean; me: Me | undefined }, slug: string): boolean {
  if (p.readonly || !p.me) return false;
  const role = p.me.organizations.find((o) => o.slug === slug)?.role;
  return p.me.isAdmin || role === "owner" || role === "admin";
}

export function describePlan(p: OrgPlan): string {
  const fee = p.plan.custom ? "custom terms" : `${formatDollars(p.plan.monthlyCents)}/month`;
  return `plan ${p.plan.name} (${p.plan.code}), ${fee}, since ${formatDate(p.since)}`;
}

export function OrgScreen(props: ScreenProps & { org: string }): React.ReactElement {
  const refresh = useRefreshKey(undefined);
  const polled = usePoll(() => loadOrg(props.client, props.org), { refreshKey: refresh.key });
  const f = props.filter.toLowerCase();
  const rows = (polled.data?.members ?? []).filter((m) => m.email.toLowerCase().includes(f) || m.role.includes(f));
  const sel = useSelection(rows);
  const may = mayManageOrg(props, props.org);
  // Keys read who may act through a ref: a key may come before the handler that saw `me` arrive is in place.
  const mayRef = React.useRef(may);
  mayRef.current = may;
  const base = `/orgs/${encodeURIComponent(props.org)}`;

  const act = (doing: string, call: () => Promise<string>) => void runAction(props, doing, call).then(refresh.bump);
  const setRole = (email: string, raw: string) => {
    const role = parseRole(raw);
    if (!role) return props.notify(`"${raw.trim()}" is not a role: owner, admin, member or viewer; nothing changed`, "error");
    act(`making ${email} ${role} of ${props.org}`, async () => {
      await props.client.request("PUT", `${base}/members`, { email, role });
      return `${email} is now ${role} of ${props.org}`;
    });
  };

  useInput((input, key) => {
    if (!props.keysLive()) return;
    if (sel.move(input, key)) return;
    if (!mayRef.current) return;
    const member = sel.now().row;
    if (input === "a") {
      props.ask(`add to ${props.org}, email: `, (raw) => {
        const email = raw.trim();
        if (!email) return props.notify("no email given; nothing changed", "error");
        props.ask(`role for ${email} (owner/admin/member/viewer): `, (role) => setRole(email, role));
      });
    } else if (input === "p") {
      props.ask(`new plan for ${props.org} (a plan's code, as in billing:plans): `, (raw) => {
        const plan = raw.trim();
        if (!plan) return props.notify("no plan given; nothing changed", "error");
        act(`moving ${props.org} to ${plan}`, async () => {
          const r = await props.client.request<PlanChange>("PUT", `${base}/billing/plan`, { plan });
          if (r.kept) return `${props.org} stays on ${r.plan.name}; the scheduled change is cancelled`;
          if (r.scheduled) return `${props.org} moves to ${r.scheduled.plan} on ${formatDate(r.scheduled.from)}`;
          return r.changed ? `${props.org} is now on ${r.plan.name}` : `${props.org} was already on ${r.plan.name}`;
        });
      });
    } else if (!member) return;
    else if (input === "r") props.ask(`role for ${member.email} (owner/admin/member/viewer): `, (role) => setRole(member.email, role));
    else if (input === "x") {
      props.confirm(`remove ${member.email} from ${props.org}?`, member.email, () => act(`removing ${member.email} from ${props.org}`, async () => {
        await props.client.request("DELETE", `${base}/members/${encodeURIComponent(member.email).replace(/%40/g, "@")}`);
        return `${member.email} is no longer a member of ${props.org}`;
      }));
    }
  });

  const lines: Line[] = [{ key: "title", text: `organisation ${props.org}`, color: "cyan", bold: true }];
  if (!polled.data) lines.push({ key: "wait", text: polled.error ?? "loading…", color: polled.error ? "red" : undefined });
  else {
    if (polled.error) lines.push({ key: "err", text: polled.error, color: "red" });
    const plan = polled.data.plan;
    if (typeof plan === "string") lines.push({ key: "plan", text: plan, color: "red" });
    else {
      lines.push({ key: "plan", text: describePlan(plan) });
      if (plan.scheduled) lines.push({ key: "next", text: `changes to ${plan.scheduled.plan} on ${formatDate(plan.scheduled.from)}`, color: "yellow" });
    }
    lines.push({ key: "members", text: `members (${rows.length}${props.filter ? ` of ${polled.data.members.length}, filter "${props.filter}"` : ""})`, bold: true });
    const table = layoutTable<MemberRow>([
      { title: "EMAIL", width: 30, grow: true, cell: (m) => m.email },
      { title: "ROLE", width: 7, cell: (m) => m.role },
      { title: "JOINED", width: 10, cell: (m) => formatDate(m.joinedAt) },
    ], rows, props.width - 2);
    lines.push({ key: "head", text: "  " + table.header, dim: true });
    for (const [i, text] of table.lines.entries()) lines.push({ key: `m${rows[i]!.email}`, text: (i === sel.at ? "> " : "  ") + text, selected: i === sel.at });
    if (rows.length === 0) lines.push({ key: "none", text: props.filter ? "  no member matches the filter" : "  no members" });
    if (!may && !props.readonly && props.me) {
      const role = props.me.organizations.find((o) => o.slug === props.org)?.role;
      lines.push({ key: "why", text: `you are ${role ? `${role} here` : "not a member here"}: only its owners and admins change members or the plan`, dim: true });
    }
  }
  return renderLines(lines, props);
}

export const ORG_SCREEN: ScreenDef = {
  name: "org", title: (arg) => `organisation ${arg ?? ""}`,
  component: (p) => h(OrgScreen, { ...p, org: p.arg ?? "" }),
  // Whether the keys apply depends on the role in this org; the footer cannot know which org, so it
  // shows them to anyone who could hold such a role and the screen's body says when they do not apply.
  keys: (p) => (mayManageOrg(p, p.arg ?? "") ? "r role  a add  x remove  p plan" : ""),
  help: (p) => (mayManageOrg(p, p.arg ?? "") ? [
    "r                            change the selected member's role",
    "a                            add a member (email, then role)",
    "x                            remove the selected member (type their email)",
    "p                            change the organisation's plan",
  ] : []),
};
