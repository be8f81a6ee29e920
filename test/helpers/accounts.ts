/**
 * Accounts for end-to-end tests: users made the way an admin makes them (REST API), signed in with a
 * password, with their own SSH key and API token; git and REST calls made as that user; and a direct
 * connection to deck's database for checks a user cannot make through the API.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import type { DbBackend } from "./database.ts";
import { run, type Deck, type PushResult } from "./deck.ts";

export interface ApiAnswer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
  text: string;
  headers: Headers;
}

export interface ApiCallOptions {
  /** Bearer token; the bootstrapped admin's API token unless given, none when null. */
  token?: string | null;
  raw?: string;
  headers?: Record<string, string>;
}

export type Api = (method: string, path: string, body?: unknown, opts?: ApiCallOptions) => Promise<ApiAnswer>;

/** Calls deck's REST API under /api/v1 and parses the JSON answer (null when it is not JSON). */
export function apiClient(deck: Deck): Api {
  return async (method, path, body, opts = {}) => {
    const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
    const token = opts.token === undefined ? deck.token : opts.token;
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`http://127.0.0.1:${deck.ports.api}/api/v1${path}`, {
      method,
      headers,
      body: opts.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
    return { status: res.status, json, text, headers: res.headers };
  };
}

export interface TestUser {
  id: number;
  email: string;
  password: string;
  /** Short-lived access token from POST /session. */
  accessToken: string;
  /** Personal access token with the `admin` scope ("" when not asked for): the git-over-HTTP password. */
  apiToken: string;
  /** Private key file; `${keyFile}.pub` is registered to the user. */
  keyFile: string;
}

export interface AddUserOptions {
  email: string;
  org?: string;
  role?: "owner" | "admin" | "member" | "viewer";
  /** Create a personal access token too (default true). */
  apiToken?: boolean;
  /** Register an SSH key (default true). */
  sshKey?: boolean;
}

function expect(answer: ApiAnswer, status: number, what: string): void {
  if (answer.status !== status) throw new Error(`${what}: expected ${status}, got ${answer.status} ${answer.text.slice(0, 300)}`);
}

/** Creates an SSH key pair in `dir`, named after `label`; returns the private key file. */
export function makeSshKey(dir: string, label: string): string {
  const file = join(dir, `${label.replace(/[^a-z0-9]/gi, "_")}_${randomBytes(3).toString("hex")}`);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", label, "-f", file]);
  return file;
}

/** A user created by the platform admin, signed in, with an SSH key and (by default) an API token. */
export async function addUser(api: Api, dir: string, opts: AddUserOptions): Promise<TestUser> {
  const password = `pw-${randomBytes(9).toString("hex")}`;
  const created = await api("POST", "/users", { email: opts.email, password, ...(opts.org ? { org: opts.org, role: opts.role ?? "member" } : {}) });
  expect(created, 201, `create ${opts.email}`);
  const session = await api("POST", "/session", { email: opts.email, password }, { token: null });
  expect(session, 201, `sign in ${opts.email}`);
  const accessToken = session.json.accessToken as string;
  let keyFile = "";
  if (opts.sshKey !== false) {
    keyFile = makeSshKey(dir, opts.email);
    const key = await api("POST", "/keys", { publicKey: readFileSync(`${keyFile}.pub`, "utf8").trim() }, { token: accessToken });
    expect(key, 201, `add ${opts.email}'s SSH key`);
  }
  let apiToken = "";
  if (opts.apiToken !== false) {
    const t = await api("POST", "/tokens", { name: "git", scopes: ["admin"] }, { token: accessToken });
    expect(t, 201, `create ${opts.email}'s API token`);
    apiToken = t.json.token as string;
  }
  return { id: Number(created.json.id), email: opts.email, password, accessToken, apiToken, keyFile };
}

/** Environment that makes git's SSH transport use `keyFile`. */
export function gitSshEnv(keyFile: string): NodeJS.ProcessEnv {
  const ssh = `ssh -i ${keyFile} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes`;
  return { ...process.env, GIT_SSH_COMMAND: ssh, GIT_TERMINAL_PROMPT: "0" };
}

export interface GitAsOptions {
  op: "push" | "fetch";
  via: "ssh" | "http";
  app: string;
  /** Ref pushed to (push) or fetched (fetch); `refs/heads/main` unless given. */
  ref?: string;
}

/** `git push HEAD:REF` or `git fetch REF` against deck as the user (their key over SSH, their API token over HTTP). */
export function gitAs(deck: Deck, user: { keyFile: string; apiToken: string }, repo: string, opts: GitAsOptions): Promise<PushResult> {
  const url = opts.via === "ssh" ? deck.sshUrl(opts.app) : deck.httpUrl(opts.app, user.apiToken);
  const ref = opts.ref ?? "refs/heads/main";
  const args = opts.op === "push" ? ["-C", repo, "push", url, `HEAD:${ref}`] : ["-C", repo, "fetch", "--no-tags", url, ref];
  return run("git", args, { env: gitSshEnv(user.keyFile), timeoutMs: 120_000 });
}

/** deck's database as its superuser sees it: the embedded cluster's own superuser, or the external test database. */
export function deckDatabaseUrl(deck: Deck, backend: DbBackend): string {
  if (backend.name === "external") return backend.url;
  const s = JSON.parse(readFileSync(join(deck.dataDir, "postgres", "state.json"), "utf8")) as { port: number; password: string };
  return `postgres://postgres:${encodeURIComponent(s.password)}@127.0.0.1:${s.port}/deck`;
}

/** Runs one parameterised statement on deck's database and returns its rows. */
export async function queryDeckDatabase<T extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {});
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** Every audit row of an organisation, newest first, as the bootstrapped admin reads them through the API. */
export async function orgAuditRows(api: Api, org: string): Promise<{ id: number; userEmail: string | null; action: string; target: string | null; result: string; data: Record<string, unknown> }[]> {
  const rows = [];
  let before: number | null = null;
  for (;;) {
    const page: ApiAnswer = await api("GET", `/orgs/${org}/audit?limit=100${before ? `&before=${before}` : ""}`);
    expect(page, 200, `read the audit log of ${org}`);
    rows.push(...page.json.items);
    before = page.json.next;
    if (before === null) return rows;
  }
}
