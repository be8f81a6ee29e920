import { DeckError, type LineSink } from "../core/index.ts";
import { gitArchiveArgv, isCommitSha, tarExtractArgv } from "./commands.ts";
import { execPipeline, type ExecResult } from "./exec.ts";

export interface CheckoutOptions {
  /** Bare repository holding the commit. */
  repoDir: string;
  commitSha: string;
  /** Existing, empty directory the commit's files are written into. */
  dir: string;
  /** Extra env for git, e.g. the push quarantine's GIT_OBJECT_DIRECTORY while a pre-receive hook runs. */
  gitEnv: Record<string, string>;
  /** A tar of the commit's tree made elsewhere (`git archive` on the deck server that took the push): read instead of the repository. */
  sourceArchive?: string;
  signal?: AbortSignal;
  /** Receives git's and tar's stderr lines. */
  onLine?: LineSink;
}

export class CheckoutError extends DeckError {
  constructor(message: string, data: Record<string, unknown> = {}) {
    super("checkout_failed", message, data);
    this.name = "CheckoutError";
  }
}

export function validateCommitSha(sha: string): void {
  if (!isCommitSha(sha)) throw new CheckoutError(`invalid commit sha ${JSON.stringify(sha.slice(0, 80))}: expected 40 lowercase hex characters`);
}

/**
 * Writes the tree of `commitSha` into `dir` with `git archive | tar -x` (no .git, no index: just the
 * files, the way they were pushed). Throws CheckoutError when git or tar fail; returns normally when
 * aborted, leaving the caller to check its signal.
 */
export async function checkoutCommit(opts: CheckoutOptions): Promise<void> {
  validateCommitSha(opts.commitSha);
  const env = { ...process.env, ...opts.gitEnv };
  const source = opts.sourceArchive ? ["cat", "--", opts.sourceArchive] : gitArchiveArgv(opts.repoDir, opts.commitSha);
  const [git, tar] = await execPipeline(source, tarExtractArgv(opts.dir), {
    cwd: opts.dir,
    env,
    signal: opts.signal,
    onLine: opts.onLine,
  });
  if (git.aborted || tar.aborted) return;
  for (const [step, r] of [[opts.sourceArchive ? "reading the source" : "git archive", git], ["tar", tar]] as const) {
    const problem = describeFailure(r);
    if (problem) throw new CheckoutError(`checkout of ${opts.commitSha.slice(0, 7)} failed: ${step} ${problem}`, { step, exitCode: r.exitCode });
  }
}

function describeFailure(r: ExecResult): string | undefined {
  if (r.spawnError) return `could not start (${r.spawnError.code ?? r.spawnError.message})`;
  if (r.exitCode === 0) return undefined;
  const why = r.stderrTail.find((l) => l.trim() !== "")?.trim();
  const status = r.exitCode === null ? `was killed by ${r.exitSignal}` : `exited with code ${r.exitCode}`;
  return why ? `${status}: ${why}` : status;
}
