/**
 * Files a repository commits as symbolic links, and files the build swaps for links, FIFOs or huge
 * files before deck reads them: every case goes through a real push, checkout and build, and the
 * build fails with one line naming the file, never showing what is behind the link.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { BuildResult } from "../core/index.ts";
import { runBuild } from "../builder/build.ts";
import { checkoutCommit } from "../builder/checkout.ts";
import { goBuildpack, readProcfile, readRepoFile, writeRepoFile } from "./index.ts";

const root = mkdtempSync(join(tmpdir(), "deck-repo-links-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** A host file the tenant must never see: unique content, outside every checkout. */
const SECRET = `host-secret-${process.pid}-${Date.now()}`;
const SECRET_DIR = join(root, "host");
mkdirSync(SECRET_DIR);
writeFileSync(join(SECRET_DIR, "secret.txt"), `web: echo ${SECRET}\n`);
const HOSTNAME = readFileSync("/etc/hostname", "utf8").trim();

const GIT = ["-c", "user.name=Deck Test", "-c", "user.email=test@deck.invalid", "-c", "init.defaultBranch=main"];
const git = (cwd: string, ...args: string[]) => execFileSync("git", [...GIT, ...args], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();

let count = 0;

/** Commits `files` and `links` (path → link target, committed as a symlink) and pushes to a bare repo. */
function pushRepo(files: Record<string, string>, links: Record<string, string> = {}): { repoDir: string; sha: string; dir: string } {
  const dir = join(root, `case-${++count}`);
  const work = join(dir, "work");
  const repoDir = join(dir, "repo.git");
  mkdirSync(work, { recursive: true });
  git(dir, "init", "--bare", "-q", repoDir);
  git(work, "init", "-q");
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(work, path)), { recursive: true });
    writeFileSync(join(work, path), content);
  }
  for (const [path, target] of Object.entries(links)) {
    mkdirSync(dirname(join(work, path)), { recursive: true });
    symlinkSync(target, join(work, path));
  }
  git(work, "add", "-A");
  git(work, "commit", "-q", "-m", "deploy me");
  git(work, "push", "-q", repoDir, "HEAD:refs/heads/main");
  return { repoDir, sha: git(work, "rev-parse", "HEAD"), dir };
}

interface Built {
  result: BuildResult;
  text: string;
  dir: string;
}

async function build(files: Record<string, string>, links: Record<string, string> = {}): Promise<Built> {
  const repo = pushRepo(files, links);
  const lines: string[] = [];
  const result = await runBuild({
    app: "linked", commitSha: repo.sha, repoDir: repo.repoDir, gitEnv: {}, slugDir: join(repo.dir, "slugs", "v1"), cacheDir: join(repo.dir, "cache"),
    env: {}, timeoutMs: 120_000, onLine: (line) => lines.push(line),
  });
  return { result, text: lines.join("\n"), dir: repo.dir };
}

/** The build failed with exactly `message` and nothing from behind a link shows anywhere. */
function assertRefused(run: Built, message: RegExp): void {
  assert.equal(run.result.ok, false, `the build succeeded:\n${run.text}`);
  if (run.result.ok) return;
  assert.equal(run.result.code, "build_failed", run.result.message);
  assert.match(run.result.message, message);
  assert.ok(!run.result.message.includes("\n"), "one line");
  const everything = `${run.text}\n${run.result.message}`;
  assert.ok(!everything.includes(SECRET), "the secret file's content never shows");
  if (HOSTNAME.length >= 2) assert.ok(!everything.includes(`web: ${HOSTNAME}`) && !run.result.message.includes(HOSTNAME), "/etc/hostname never shows");
}

const LINK = /is a symbolic link; deck never follows links for the files it reads, even to a path inside the repository: commit the file itself$/;

describe("files committed as symbolic links", () => {
  test("a Procfile linked to /etc/hostname is refused, naming the Procfile", async () => {
    const run = await build({ "app.sh": "echo hi\n" }, { Procfile: "/etc/hostname" });
    assertRefused(run, new RegExp(`^Procfile ${LINK.source}`));
  });

  test("a package.json linked out of the repository with ../ is refused, naming package.json", async () => {
    const run = await build({ "index.js": "" }, { "package.json": "../../host/secret.txt" });
    assertRefused(run, new RegExp(`^package.json ${LINK.source}`));
  });

  test("a link that stays inside the repository is refused too, and the message says so", async () => {
    const run = await build({ "config/Procfile": "web: ./app.sh\n", "app.sh": "" }, { Procfile: "config/Procfile" });
    assertRefused(run, new RegExp(`^Procfile ${LINK.source}`));
  });

  test("a directory linked out of the repository is never written through", async () => {
    // The static buildpack writes its file server to .deck/: committed as a link, that would put a
    // file wherever the link points, with deck's rights.
    const target = join(root, "outside-dir");
    mkdirSync(target);
    const run = await build({ "index.html": "<h1>hi</h1>" }, { ".deck": target });
    assertRefused(run, new RegExp(`^\\.deck ${LINK.source}`));
    assert.deepEqual(readdirSync(target), [], "nothing was written outside the checkout");
  });

  test("a directory linked out of the repository is never listed (compiled apps' bin/)", async () => {
    // Run on the checkout directly: the release step lists bin/ and would name what it found.
    const repo = pushRepo({ "go.mod": "module example.com/hello\n" }, { bin: SECRET_DIR });
    const dir = join(repo.dir, "checkout");
    mkdirSync(dir);
    await checkoutCommit({ repoDir: repo.repoDir, commitSha: repo.sha, dir, gitEnv: {} });
    await assert.rejects(goBuildpack.release(dir), (e: Error) => new RegExp(`^bin ${LINK.source}`).test(e.message) && !e.message.includes("secret"));
  });

  test("a file read through a linked directory is refused, naming the directory", async () => {
    const repo = pushRepo({ "a.txt": "" }, { conf: SECRET_DIR });
    const dir = join(repo.dir, "checkout");
    mkdirSync(dir);
    await checkoutCommit({ repoDir: repo.repoDir, commitSha: repo.sha, dir, gitEnv: {} });
    await assert.rejects(readRepoFile(dir, "conf/secret.txt"), (e: Error) => new RegExp(`^conf ${LINK.source}`).test(e.message));
    await assert.rejects(writeRepoFile(dir, "conf/new.txt", "x"), (e: Error) => new RegExp(`^conf ${LINK.source}`).test(e.message));
    assert.equal(existsSync(join(SECRET_DIR, "new.txt")), false);
    assert.equal(await readRepoFile(dir, "a.txt"), "");
    assert.equal(await readRepoFile(dir, "missing/file"), undefined);
  });
});

describe("files the build replaces before deck reads them", () => {
  // The build script is tenant code: it runs between detection and the Procfile read at release.
  const app = (script: string) => ({
    "package.json": JSON.stringify({ name: "app", version: "1.0.0", scripts: { build: script, start: "node index.js" } }),
    "index.js": "",
    Procfile: "web: node index.js\n",
  });

  test("a Procfile swapped for a link to /etc/hostname during the build is refused", async () => {
    const run = await build(app("rm Procfile && ln -s /etc/hostname Procfile"));
    assertRefused(run, new RegExp(`^Procfile ${LINK.source}`));
  });

  test("a Procfile swapped for a FIFO does not hang deck: it is not a regular file", async () => {
    const run = await build(app("rm Procfile && mkfifo Procfile"));
    assertRefused(run, /^Procfile is not a regular file: deck expects Procfile to be a file in the repository$/);
  });

  test("a 2 GiB Procfile is refused by size without being read", async () => {
    // Sparse: no disk is used, but a reader without a limit would try to hold 2 GiB.
    const run = await build(app("truncate -s 2G Procfile"));
    assertRefused(run, /^Procfile is larger than 1 MiB, the most deck reads of it: make it smaller$/);
  });

  test("an ordinary Procfile still gives the process types", async () => {
    const run = await build(app("true"));
    assert.equal(run.result.ok, true, run.result.ok ? "" : run.result.message);
    if (run.result.ok) assert.deepEqual(run.result.procfile, { web: "node index.js" });
    assert.deepEqual(await readProcfile(join(run.dir, "slugs", "v1")), { web: "node index.js" });
  });
});
