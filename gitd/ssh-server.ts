import ssh2 from "ssh2";
import type { Connection, ServerChannel } from "ssh2";
import { timingSafeEqual } from "node:crypto";
import net from "node:net";
import { isDeckError } from "../core/index.ts";
import { callerFor, refusalFor, type Caller, type DeployDeps } from "../ops/index.ts";
import { findUserBySshFingerprint, type UserRow } from "../store/queries/index.ts";
import { collectInput } from "./command-input.ts";
import { runCommand } from "./commands.ts";
import { resolveGitTarget } from "./git-access.ts";
import { abandonGit, gitServiceArgv, parseGitCommand, spawnGit } from "./git-process.ts";
import type { PushRegistry } from "./push-registry.ts";
import { PushMeter, pushTooLargeLine } from "./push-request.ts";
import { finishPush } from "./repo-size.ts";
import { PreAuthGate } from "./ssh-admission.ts";
import { fingerprintOfBlob } from "./ssh-keys.ts";
import { splitShellWords } from "./shell-words.ts";

const { Server, utils } = ssh2;

export interface SshServerOptions {
  deps: DeployDeps;
  pushes: PushRegistry;
  hostKey: string;
}

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
    client.on("error", () => undefined);
    client.on("authentication", (ctx) => {
      if (ctx.method !== "publickey") return ctx.reject(["publickey"]);
      void (async () => {
        const found = await findUserBySshFingerprint(deps.db, fingerprintOfBlob(ctx.key.data));
        if (!found) return ctx.reject(["publickey"]);
        const stored = utils.parseKey(found.publicKey);
        if (stored instanceof Error || Array.isArray(stored)) return ctx.reject(["publickey"]);
        const blob = stored.getPublicSSH();
        if (blob.length !== ctx.key.data.length || !timingSafeEqual(blob, ctx.key.data)) return ctx.reject(["publickey"]);
        if (ctx.signature && ctx.blob) {
          if (stored.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(["publickey"]);
          user = found;
        }
        ctx.accept();
      })().catch((e) => {
        deps.log(`ssh auth: ${(e as Error).message}`);
        ctx.reject(["publickey"]);
      });
    });
    client.on("ready", () => {
      gate.authenticated(info.ip, info.port);
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
          stream.stderr.write("deck: there is no interactive shell here; run a command, e.g. `ssh deck@host help`\r\n");
          stream.exit(1);
          stream.end();
        });
        session.on("exec", (accept, _reject, req) => {
          const stream = accept();
          if (!user) return refuse(stream, "deck: not authenticated");
          // Refused here rather than at authentication, so the client sees why (commands and git alike).
          const refusal = refusalFor(user);
          if (refusal) return refuse(stream, `deck: ${refusal}`);
          void callerFor(deps.db, user, "ssh", info.ip).then((caller) => handleExec(options, caller, stream, req.command, env, tty));
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
