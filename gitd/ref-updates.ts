/** Parses the `old new ref` lines git gives a pre-receive hook and picks what deck deploys. */
export interface RefUpdate { oldSha: string; newSha: string; ref: string }

const ZERO = /^0{40}$/;
const SHA = /^[0-9a-f]{40}$/;

export function parseRefUpdates(lines: string[]): RefUpdate[] {
  const out: RefUpdate[] = [];
  for (const line of lines) {
    const [oldSha, newSha, ref] = line.trim().split(/\s+/);
    if (SHA.test(oldSha ?? "") && SHA.test(newSha ?? "") && ref) out.push({ oldSha, newSha, ref });
  }
  return out;
}

export type PushPlan =
  | { kind: "deploy"; update: RefUpdate; ignored: RefUpdate[] }
  | { kind: "store-only"; ignored: RefUpdate[] }
  | { kind: "reject"; message: string };

export const DEPLOY_BRANCHES = ["refs/heads/main", "refs/heads/master"];

/** `main` deploys; `master` deploys when main is not part of the push. Anything else is stored only. */
export function planPush(updates: RefUpdate[]): PushPlan {
  // deck keeps the commits of pushes waiting in line there (gitd/queued-push.ts).
  const own = updates.find((u) => u.ref.startsWith("refs/deck/"));
  if (own) return { kind: "reject", message: `${own.ref.slice(0, 100)} is in refs/deck/, which deck keeps for itself; push branches or tags` };
  const deploy = DEPLOY_BRANCHES.map((b) => updates.find((u) => u.ref === b)).find(Boolean);
  const ignored = updates.filter((u) => u !== deploy);
  if (!deploy) return { kind: "store-only", ignored };
  if (ZERO.test(deploy.newSha)) return { kind: "reject", message: `deleting ${deploy.ref.slice(11)} is not allowed: it is the branch deck deploys (use apps:destroy to remove the app)` };
  return { kind: "deploy", update: deploy, ignored };
}
