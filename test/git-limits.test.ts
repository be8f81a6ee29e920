import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { deflateSync } from "node:zlib";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { measureDir } from "../builder/index.ts";
import { TOO_MANY_LINE } from "../gitd/ssh-admission.ts";
import { pktLine } from "../gitd/push-request.ts";
import { commitFiles, Deck, makeRepo, nodeApp, run } from "./helpers/deck.ts";

/**
 * The git endpoints against a hostile or clumsy client: malformed URLs, connections that never
 * authenticate, pushes over DECK_MAX_PUSH_SIZE and pushes cut off halfway. Each must leave the app's
 * repository and release exactly as they were.
 */

const LIMIT = "1m";

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000, state?: () => unknown): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting: ${what}${state ? `: ${JSON.stringify(state())}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function rawRequest(port: number, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, agent: false }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

function gitOut(repoDir: string, ...args: string[]): Promise<string> {
  return run("git", ["--git-dir", repoDir, ...args]).then((r) => r.stdout.trim());
}

/** What a push may leave behind in a bare repository when it is refused or cut off. */
function strayFiles(repoDir: string): string[] {
  const objects = join(repoDir, "objects");
  const packs = readdirSync(join(objects, "pack")).filter((f) => f.startsWith("tmp_"));
  return [...readdirSync(objects).filter((f) => f.startsWith("tmp_objdir") || f.startsWith("incoming")), ...packs];
}

/** Processes whose command line names `repoDir`: git still working on it. */
function gitProcessesOn(repoDir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmd.includes(repoDir) && cmd.includes("git")) found.push(`${pid}: ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/**
 * The first part of a valid push request: one ref update, then a pack (gitformat-pack) of one 4 MiB
 * blob of which only the first 256 KiB arrive, so git keeps waiting for the rest.
 */
function partialPush(oldSha: string): Buffer {
  const header = Buffer.alloc(12);
  header.write("PACK", 0);
  header.writeUInt32BE(2, 4);
  header.writeUInt32BE(1, 8);
  let size = 4 * 1024 * 1024;
  const objectHeader: number[] = [];
  let byte = (3 << 4) | (size & 15); // type 3 = blob
  size = Math.floor(size / 16);
  while (size > 0) {
    objectHeader.push(byte | 0x80);
    byte = size & 0x7f;
    size = Math.floor(size / 128);
  }
  objectHeader.push(byte);
  const data = deflateSync(randomBytes(4 * 1024 * 1024), { level: 1 });
  return Buffer.concat([
    pktLine(`${oldSha} ${"1".repeat(40)} refs/heads/main\0report-status side-band-64k agent=git/2.39\n`), Buffer.from("0000"),
    header, Buffer.from(objectHeader), data.subarray(0, 256 * 1024),
  ]);
}

describe("git endpoints under abuse", { timeout: 600_000 }, () => {
  let deck: Deck;
  let work: string;
  let repo: string;
  let bare: string;
  let good = "";
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "deck-work-"));
    deck = await Deck.start({
      backend: { name: "embedded" },
      env: { DECK_MAX_PUSH_SIZE: LIMIT, DECK_SSH_AUTH_TIMEOUT: "4", DECK_SSH_MAX_UNAUTHENTICATED_PER_IP: "3" },
    });
    repo = await makeRepo(join(work, "web"), nodeApp("v1"));
    const first = await deck.push(repo, "web");
    assert.equal(first.code, 0, first.stderr);
    bare = join(deck.dataDir, "repos", "web.git");
    good = await gitOut(bare, "rev-parse", "refs/heads/main");
  });
  after(async () => {
    await deck?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it("answers malformed git URLs with one 400 (405 for a wrong method) line before authentication", async () => {
    const table: [string, string, number, RegExp][] = [
      ["GET", "/git/%/info/refs?service=git-upload-pack", 400, /bad percent-encoding/],
      ["GET", "/git/%ZZweb/info/refs?service=git-upload-pack", 400, /bad percent-encoding/],
      ["GET", "/git/../info/refs?service=git-receive-pack", 400, /names a path/],
      ["GET", "/git/%2e%2e%2f%2e%2e%2fetc/info/refs?service=git-receive-pack", 400, /names a path/],
      ["GET", "/git/web%00.git/info/refs?service=git-upload-pack", 400, /control characters/],
      ["GET", `/git/${"w".repeat(300)}.git/info/refs?service=git-upload-pack`, 400, /invalid app name/],
      ["GET", `/git/${"w".repeat(3000)}.git/info/refs?service=git-upload-pack`, 400, /longer than/],
      ["GET", "/git/Web.git/info/refs?service=git-upload-pack", 400, /invalid app name/],
      ["GET", "/git/web.git/info/refs?service=git-evil", 400, /smart HTTP only/],
      ["GET", "/git/web.git/HEAD", 400, /not a smart HTTP git URL/],
      ["DELETE", "/git/web.git/info/refs?service=git-upload-pack", 405, /takes GET/],
      ["GET", "/git/web.git/git-receive-pack", 405, /takes POST/],
    ];
    const logBefore = deck.log().length;
    for (const [method, path, status, message] of table) {
      const r = await rawRequest(deck.ports.api, method, path);
      assert.equal(r.status, status, `${method} ${path.slice(0, 60)}: ${r.body}`);
      assert.match(r.body, /^deck: [^\n]+\n$/, path.slice(0, 60));
      assert.match(r.body, message, path.slice(0, 60));
    }
    assert.doesNotMatch(deck.log().slice(logBefore), /git http|internal error/);
  });

  it("closes SSH connections that do not authenticate in time, and caps them per client address", async () => {
    // A client at 127.0.0.5 opens connections and never says a word.
    const idle = [1, 2, 3].map(() => net.connect({ port: deck.ports.ssh, host: "127.0.0.1", localAddress: "127.0.0.5" }));
    const got = idle.map(() => "");
    const greeted = idle.map((s, i) => new Promise<string>((resolve) => {
      s.on("data", (c) => (got[i] += c));
      s.on("error", () => undefined);
      s.on("close", () => resolve(got[i]));
    }));
    // The server greets a connection it has admitted.
    await until("the server's greeting on each idle connection", () => got.every((g) => g.startsWith("SSH-2.0-deck")));
    // One more from the same address is turned away at once; a real ssh client is too.
    let over = "";
    const fourth = net.connect({ port: deck.ports.ssh, host: "127.0.0.1", localAddress: "127.0.0.5" });
    fourth.on("data", (c) => (over += c));
    fourth.on("error", () => undefined);
    await new Promise((r) => fourth.on("close", r));
    assert.equal(over, TOO_MANY_LINE);
    assert.notEqual((await run("ssh", [...deck.sshArgs().slice(0, -2), "-b", "127.0.0.5", "-p", String(deck.ports.ssh), "deck@127.0.0.1", "help"])).code, 0);
    assert.match(deck.log(), /ssh: 127\.0\.0\.5 holds 3 connections that have not authenticated \(DECK_SSH_MAX_UNAUTHENTICATED_PER_IP\)/);
    // Other clients are not affected.
    assert.equal((await deck.ssh("apps:list")).code, 0);
    // The idle ones are closed by the server after DECK_SSH_AUTH_TIMEOUT, having had only its greeting.
    for (const g of await Promise.all(greeted)) assert.match(g, /^SSH-2\.0-deck\r\n/);
    const again = await run("ssh", [...deck.sshArgs().slice(0, -2), "-b", "127.0.0.5", "-p", String(deck.ports.ssh), "deck@127.0.0.1", "apps:list"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^web /m);
  });

  it("refuses a push over DECK_MAX_PUSH_SIZE over SSH and HTTP, and the app keeps its commit and release", async () => {
    await writeFile(join(repo, "big.bin"), randomBytes(3 * 1024 * 1024));
    await commitFiles(repo, { "VERSION": "big" }, "a big binary");
    const attempts = [
      { via: "ssh" as const, env: {} },
      { via: "http" as const, env: {} },
      // git sends a Content-Length when the whole request fits its post buffer: refused before git sees the pack.
      { via: "http" as const, env: { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "http.postBuffer", GIT_CONFIG_VALUE_0: "67108864" } },
    ];
    for (const a of attempts) {
      const args = ["-C", repo, "push", a.via === "http" ? deck.httpUrl("web") : deck.sshUrl("web"), "HEAD:refs/heads/main"];
      const r = await run("git", args, { env: { ...deck.gitEnv(), ...a.env } });
      const label = `${a.via} ${JSON.stringify(a.env)}`;
      assert.notEqual(r.code, 0, label);
      assert.match(r.stderr, /deck: push refused: the pack is larger than DECK_MAX_PUSH_SIZE \(1 MiB\); nothing was changed\./, `${label}: ${r.stderr}`);
      assert.match(r.stderr, /\[remote rejected\] HEAD -> main/, `${label}: ${r.stderr}`);
      assert.equal(await gitOut(bare, "rev-parse", "refs/heads/main"), good, label);
      await until(`git has finished with web.git after the ${label} push`, () => gitProcessesOn(bare).length === 0);
      assert.deepEqual(strayFiles(bare), [], label);
    }
    const blob = (await run("git", ["-C", repo, "rev-parse", "HEAD:big.bin"])).stdout.trim();
    assert.notEqual((await run("git", ["--git-dir", bare, "cat-file", "-e", blob])).code, 0, "the big file is not in deck's repository");
    assert.match((await deck.get("web")).body, /^v1 /);
    assert.match(deck.log(), /git push to web by admin@example\.com refused: the pack is over DECK_MAX_PUSH_SIZE/);

    // Without the big file the next push deploys as usual, and builds:list shows the repository size.
    await run("git", ["-C", repo, "reset", "-q", "--hard", good]);
    const v2 = await commitFiles(repo, nodeApp("v2"), "v2");
    const ok = await deck.push(repo, "web", { via: "http" });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match((await deck.get("web")).body, /^v2 /);
    const builds = JSON.parse((await deck.ssh("builds:list web --json")).stdout) as { commit: string; repoSizeBytes: number; sizeBytes: number }[];
    assert.equal(builds[0].commit, v2);
    assert.equal(builds[0].repoSizeBytes, await measureDir(bare), "the repository's size once the push was in");
    assert.ok(builds[1].repoSizeBytes > 0 && builds[1].repoSizeBytes < builds[0].repoSizeBytes, JSON.stringify(builds));
    const table = (await deck.ssh("builds:list web")).stdout.split("\n");
    assert.match(table[0], /^ID +STATUS +COMMIT +BUILDPACK +DURATION +SLUG +REPO +STARTED$/);
    assert.match(table[1], new RegExp(`^\\d+ +succeeded +${v2.slice(0, 7)} +node +\\d+\\.\\ds +\\d+\\.\\d [KMG]B +\\d+\\.\\d [KMG]B +\\d{4}-`));
    good = v2;
  });

  it("loses nothing and leaves nothing behind when the pusher is cut off halfway, over SSH and HTTP", async () => {
    const serving = (await deck.get("web")).body;
    // SSH: a real ssh client, killed once the server is receiving the pack.
    const ssh = spawn("ssh", [...deck.sshArgs(), "deck@127.0.0.1", "git-receive-pack 'web'"], { stdio: ["pipe", "pipe", "pipe"] });
    let advert = "";
    let sshErr = "";
    ssh.stdout.on("data", (c) => (advert += c));
    ssh.stderr.on("data", (c) => (sshErr += c));
    ssh.stdin.on("error", () => undefined);
    await until("the ref advertisement", () => advert.endsWith("0000"), 60_000, () => [advert, sshErr]);
    ssh.stdin.write(partialPush(good));
    await until("the server receiving the pack over SSH", () => strayFiles(bare).length > 0, 60_000, () => [advert, sshErr]);
    ssh.kill("SIGKILL");

    await until("git to finish with web.git after the SSH cut-off", () => gitProcessesOn(bare).length === 0 && strayFiles(bare).length === 0, 60_000, () => [gitProcessesOn(bare), strayFiles(bare)]);
    assert.equal(await gitOut(bare, "rev-parse", "refs/heads/main"), good);

    // HTTP: a request whose body stops halfway and whose connection is then dropped.
    const req = http.request({
      host: "127.0.0.1", port: deck.ports.api, method: "POST", path: "/git/web.git/git-receive-pack", agent: false,
      headers: { authorization: `Basic ${Buffer.from(`deck:${deck.token}`).toString("base64")}`, "content-type": "application/x-git-receive-pack-request" },
    });
    req.on("error", () => undefined);
    req.write(partialPush(good));
    await until("the server receiving the pack over HTTP", () => strayFiles(bare).length > 0);
    req.destroy();
    await until("git to finish with web.git after the HTTP cut-off", () => gitProcessesOn(bare).length === 0 && strayFiles(bare).length === 0, 60_000, () => [gitProcessesOn(bare), strayFiles(bare)]);
    assert.equal(await gitOut(bare, "rev-parse", "refs/heads/main"), good);
    assert.equal((await gitOut(bare, "fsck", "--no-dangling")), "");

    // During the build: the pusher's whole git goes away while the pre-receive hook is running.
    await commitFiles(repo, nodeApp("slow", { buildScript: "node -e \"console.log('long build running'); setTimeout(() => {}, 120000)\"" }), "slow build");
    const git = spawn("git", ["-C", repo, "push", deck.sshUrl("web"), "HEAD:refs/heads/main"], { env: deck.gitEnv(), stdio: ["ignore", "ignore", "pipe"], detached: true });
    let seen = "";
    git.stderr.on("data", (c) => (seen += c));
    await until("the build to start", () => /remote:\s+long build running\s*$/m.test(seen), 120_000, () => seen);
    process.kill(-git.pid!, "SIGKILL");
    await until("git to finish with web.git after the pusher left mid-build", () => gitProcessesOn(bare).length === 0 && strayFiles(bare).length === 0, 60_000, () => [gitProcessesOn(bare), strayFiles(bare)]);
    assert.equal(await gitOut(bare, "rev-parse", "refs/heads/main"), good);

    // The app still serves its release, and the next push works.
    assert.equal((await deck.get("web")).body, serving);
    await run("git", ["-C", repo, "reset", "-q", "--hard", good]);
    await commitFiles(repo, nodeApp("v3"), "v3");
    const next = await deck.push(repo, "web");
    assert.equal(next.code, 0, next.stderr);
    assert.match((await deck.get("web")).body, /^v3 /);
  });
});
