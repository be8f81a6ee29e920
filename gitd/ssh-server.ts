import ssh2 from "ssh2";
import type { Connection, ServerChannel } from "ssh2";
import { timingSafeEqual } from "node:crypto";
import net from "node:net";
import { failedSignIns } from "../core/audit-throttle.ts";
import { isDeckError } from "../core/index.ts";
import { callerFor, refusalFor, type Caller, type DeployDeps } from "../ops/index.ts";
import { audit, findUserById, findUserBySshFingerprint, type UserRow } from "../store/queries/index.ts";
import { collectInput } from "./command-input.ts";
import { runCommand } from "./commands.ts";
import { resolveGitTarget } from "./git-access.ts";
import { abandonGit, gitServiceArgv, parseGitCommand, spawnGit } from "./git-process.ts";
import type { PushRegistry } from "./push-registry.ts";
import { PushMeter, pushTooLargeLine } from "./push-request.ts";
import { finishPush } from "./repo-size.ts";
import { PreAuthGate } from "./ssh-admission.ts";
import { fingerprintOfBlob } from "./ssh-keys.ts";
import { SshSignInAttempts } from "./ssh-sign-in-audit.ts";
import { splitShellWords } from "./shell-words.ts";

const { Server, utils } = ssh2;

export interface SshServerOptions {
  deps: DeployDeps;
  pushes: PushRegistry;
  hostKey: string;
  /** How often an open connection looks its user up again (a suspension ends it); 15 s unless given. */
  accountRecheckMs?: number;
}

/** An open connection looks its user up again this often, so a suspension ends a command already running. */
const ACCOUNT_RECHECK_MS = 15_000;

/**
 * Whether the user may run a command now, as the database has them (a connection authenticates once,
 * its commands come later): active, refused (suspended or deleted), or not known (the lookup failed).
 */
type Admission = { state: "active"; user: UserRow } | { state: "refused"; line: string } | { state: "unknown"; line: string };

/**
 * deck's SSH endpoint: public-key auth against users' keys, then either the real git programs
 * (`git-receive-pack` / `git-upload-pack` on the app's bare repository) or a deck command.
 * Nothing else can be executed, and a refused request is one line on stderr with exit status 1.
 */
export function createSshServer(options: SshServerOptions): net.Server {
  const { deps } = options;
  const gate = new PreAuthGate({
    authTimeoutMs: deps.config.sshAuthTimeout * 1000,
    maxPerAddress: deps.config.sshMaxUnauthenticatedPerIp,
    maxTotal: deps.config.sshMaxUnauthenticated,
  }, deps.log);
  const ssh = new Server({ hostKeys: [options.hostKey], ident: "deck" }, (client: Connection, info) => {
    let user: UserRow | null = null;
    // The fingerprint of the key the connection signed in with: removing that key ends the connection.
    let signedWith = "";
    // What the connection tried; audited as one failed sign-in if it closes without signing in.
    const attempts = new SshSignInAttempts();
    client.on("error", () => undefined);
    client.on("close", () => {
      const entry = user ? null : attempts.entry(info.ip);
      // Anyone can fail to sign in: a source's rows are bounded per minute, the rest counted on its next row.
      const turn = entry ? failedSignIns.take(`ssh:${info.ip}`) : null;
      if (entry && turn?.write) {
        if (turn.suppressed) entry.data.moreFailuresNotRecorded = turn.suppressed;
        void audit(deps.db, entry).catch((e: Error) => deps.log(`ssh auth: recording a failed sign-in from ${info.ip}: ${e.message}`));
      }
    });
    client.on("authentication", (ctx) => {
      if (ctx.method !== "publickey") {
        if (ctx.method !== "none") attempts.note(ctx.username, { reason: "method_refused", method: ctx.method });
        return ctx.reject(["publickey"]);
      }
      void (async () => {
        const fingerprint = fingerprintOfBlob(ctx.key.data);
        const unknown = () => {
          attempts.note(ctx.username, { reason: "unknown_key", fingerprint });
          ctx.reject(["publickey"]);
        };
        const found = await findUserBySshFingerprint(deps.db, fingerprint);
        if (!found) return unknown();
        const stored = utils.parseKey(found.publicKey);
        if (stored instanceof Error || Array.isArray(stored)) return unknown();
        const blob = stored.getPublicSSH();
        if (blob.length !== ctx.key.data.length || !timingSafeEqual(blob, ctx.key.data)) return unknown();
        if (ctx.signature && ctx.blob) {
          if (stored.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) {
            attempts.note(ctx.username, { reason: "bad_signature", userId: found.id, email: found.email, fingerprint });
            return ctx.reject(["publickey"]);
          }
          user = found;
          signedWith = fingerprint;
        }
        ctx.accept();
      })().catch((e) => {
        deps.log(`ssh auth: ${(e as Error).message}`);
        ctx.reject(["publickey"]);
      });
    });
    client.on("ready", () => {
      gate.authenticated(info.ip, info.port);
      // Channels running a command, ended with the reason when the account is suspended meanwhile.
      const running = new Set<ServerChannel>();
      if (user) watchAccount(options, client, user.id, signedWith, running);
      client.on("session", (acceptSession) => {
        const session = acceptSession();
        const env: Record<string, string> = {};
        session.on("env", (accept, _reject, e) => {
          if (e.key === "GIT_PROTOCOL" && /^[a-z0-9=:.-]{1,40}$/i.test(e.val)) env.GIT_PROTOCOL = e.val;
          accept?.();
        });
        let tty = false;
        session.on("pty", (accept) => {
          // `ssh -t`: the client's terminal shows the output (metrics draws sparklines then).
          tty = true;
          accept?.();
        });
        session.on("shell", (accept) => {
          const stream = accept();
          if (!user) return refuse(stream, "deck: not authenticated");
          void admit(deps, user.id, signedWith).then((a) => refuse(stream, a.state === "active" ? "deck: there is no interactive shell here; run a command, e.g. `ssh deck@host help`\r" : a.line));
        });
        session.on("exec", (accept, _reject, req) => {
          const stream = accept();
          if (!user) return refuse(stream, "deck: not authenticated");
          // Refused here rather than at authentication, so the client sees why (commands and git alike);
          // and for every command, so one on a connection opened before a suspension is refused too.
          void admit(deps, user.id, signedWith).then(async (a) => {
            if (a.state !== "active") return refuse(stream, a.line);
            running.add(stream);
            stream.once("close", () => running.delete(stream));
            await handleExec(options, await callerFor(deps.db, a.user, "ssh", info.ip), stream, req.command, env, tty);
          }).catch((e: Error) => {
            deps.log(`ssh command: ${e.stack}`);
            refuse(stream, "deck: internal error; details are in the deck server log");
          });
        });
      });
    });
  });
  // deck's own listener admits each connection before ssh2 sees a byte of it: the pre-authentication
  // limits hold even for a client that never sends its SSH version line.
  return net.createServer((socket) => {
    if (gate.admit(socket)) ssh.injectSocket(socket);
  });
}

/** The user as the database has them now; a lookup that fails refuses (and is logged). */
async function admit(deps: DeployDeps, userId: number, fingerprint: string): Promise<Admission> {
  try {
    const [user, owner] = await Promise.all([findUserById(deps.db, userId), findUserBySshFingerprint(deps.db, fingerprint)]);
    if (!user) return { state: "refused", line: "deck: your account no longer exists; ask a platform admin" };
    const refusal = refusalFor(user);
    if (refusal) return { state: "refused", line: `deck: ${refusal}` };
    // A key removed (users:revoke, keys:remove) ends what was signed in with it, however long the connection stays open.
    if (owner?.id !== userId) return { state: "refused", line: "deck: the SSH key this connection signed in with was removed; connect with a key deck knows" };
    return { state: "active", user };
  } catch (e) {
    deps.log(`ssh: cannot look up user ${userId}: ${(e as Error).message}`);
    return { state: "unknown", line: "deck: internal error; details are in the deck server log" };
  }
}

/**
 * Looks the connection's user up again every few seconds while it is open: once they are suspended (or
 * deleted), a command still running (a followed log, a push) ends with the reason and exit status 1,
 * and the connection closes. A lookup that fails leaves the connection be until the next one.
 */
function watchAccount(options: SshServerOptions, client: Connection, userId: number, fingerprint: string, running: Set<ServerChannel>): void {
  const { deps } = options;
  let timer: NodeJS.Timeout | undefined;
  let open = true;
  const check = async () => {
    const a = await admit(deps, userId, fingerprint);
    if (a.state !== "refused") return schedule();
    for (const stream of running) refuse(stream, a.line);
    running.clear();
    client.end();
  };
  const schedule = () => {
    if (!open) return;
    timer = setTimeout(() => void check(), options.accountRecheckMs ?? ACCOUNT_RECHECK_MS);
    timer.unref();
  };
  schedule();
  client.once("close", () => {
    open = false;
    clearTimeout(timer);
  });
}

function refuse(stream: ServerChannel, line: string): void {
  stream.stderr.write(`${line}\n`);
  stream.exit(1);
  stream.end();
}

async function handleExec(options: SshServerOptions, caller: Caller, stream: ServerChannel, command: string, env: Record<string, string>, tty = false): Promise<void> {
  const { deps } = options;
  const git = parseGitCommand(command);
  if (git) {
    let app;
    try {
      app = await resolveGitTarget(deps, caller, git.service, git.path);
    } catch (e) {
      if (isDeckError(e)) return refuse(stream, `deck: ${e.message}`);
      deps.log(`git over ssh: ${(e as Error).stack}`);
      return refuse(stream, "deck: internal error; details are in the deck server log");
    }
    const push = git.service === "receive-pack" ? options.pushes.open({ ...caller, via: "git" }, app) : null;
    const limit = deps.config.maxPushSize;
    const child = spawnGit(gitServiceArgv(git.service, deps.paths.repo(app.name), { maxPackBytes: limit }), { ...env, ...(push ? { DECK_PUSH_ID: push.id } : {}) });
    let exited = false;
    if (push && limit) {
      // git refuses a pack over the limit on the same count (receive.maxInputSize); this says why in deck's words.
      const meter = new PushMeter();
      const watch = (chunk: Buffer) => {
        meter.feed(chunk);
        if (meter.packBytes <= limit) return;
        stream.off("data", watch);
        stream.stderr.write(`${pushTooLargeLine(limit)}\n`);
        deps.log(`git push to ${app.name} by ${caller.user.email} refused: the pack is over DECK_MAX_PUSH_SIZE (${limit} bytes)`);
      };
      stream.on("data", watch);
    }
    stream.pipe(child.stdin!);
    child.stdin!.on("error", () => undefined);
    child.stdout!.pipe(stream, { end: false });
    child.stderr!.pipe(stream.stderr, { end: false });
    child.on("close", (code) => {
      exited = true;
      // Recorded before the pusher's git returns, so builds:list right after a push shows it.
      void (push ? finishPush(deps, options.pushes, push) : Promise.resolve()).finally(() => {
        stream.exit(code ?? 1);
        stream.end();
      });
    });
    stream.on("close", () => {
      if (exited) return;
      // The pusher went away mid-push: cancel its deploy and let git discard the quarantine.
      if (push) options.pushes.close(push.id, "the pusher disconnected");
      abandonGit(child);
    });
    return;
  }
  const words = splitShellWords(command);
  if (!words || words.length === 0) return refuse(stream, "deck: could not parse the command (unbalanced quotes?); run `help` to list the commands");
  const abort = new AbortController();
  stream.on("close", () => abort.abort());
  const eol = tty ? "\r\n" : "\n";
  // Standard input is read only by commands that take it (keys:add, certs:add), up to 1 MiB.
  const stdin = collectInput(stream);
  const code = await runCommand(deps, caller, words, {
    // A client terminal in raw mode (ssh -t) moves to the line's start only on \r.
    out: (l) => { if (!abort.signal.aborted) stream.write(`${l}${eol}`); },
    err: (l) => { if (!abort.signal.aborted) stream.stderr.write(`${l}${eol}`); },
    write: (bytes) => { if (!abort.signal.aborted) stream.write(bytes); },
    signal: abort.signal,
    stdin,
    tty,
  });
  if (!abort.signal.aborted) {
    stream.exit(code);
    stream.end();
  }
}
