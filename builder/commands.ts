/** Pure builders of the git/tar command lines the builder runs; tested by equality, run by exec.ts. */

const COMMIT_SHA = /^[0-9a-f]{40}$/;

export function isCommitSha(sha: string): boolean {
  return COMMIT_SHA.test(sha);
}

export function shortSha(sha: string): string {
  return sha.slice(0, 7);
}

/** `git archive` of one commit as a tar stream on stdout. The sha must already be validated. */
export function gitArchiveArgv(repoDir: string, commitSha: string): string[] {
  if (!isCommitSha(commitSha)) throw new Error(`gitArchiveArgv: not a 40-hex commit sha: ${JSON.stringify(commitSha)}`);
  return ["git", `--git-dir=${repoDir}`, "archive", "--format=tar", commitSha];
}

/** Extracts a tar stream from stdin into `dir`. */
export function tarExtractArgv(dir: string): string[] {
  return ["tar", "-x", "-f", "-", "-C", dir];
}
