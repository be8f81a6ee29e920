import { BuildStepError, type BuildContext } from "./buildpack.ts";

/**
 * The program `syncTree` runs (CommonJS, for `node -e`): argv is FROM TO [SKIP…]. It runs in the build's
 * sandbox as the app's uid, because both trees are the tenant's: the checkout, and a copy in the app's
 * cache that earlier builds (build.rs, go generate) could fill with links. Copied as deck's root,
 * a link swapped in at the right moment would aim a delete or a write at a host file.
 */
export const SYNC_TREE_PROGRAM = String.raw`
const fs = require("node:fs");
const { join } = require("node:path");
const { createHash } = require("node:crypto");
const hash = (p) => createHash("sha256").update(fs.readFileSync(p)).digest("hex");
function sameFile(a, b) {
  try {
    const x = fs.lstatSync(a), y = fs.lstatSync(b);
    if (x.isSymbolicLink() || y.isSymbolicLink()) return x.isSymbolicLink() && y.isSymbolicLink() && fs.readlinkSync(a) === fs.readlinkSync(b);
    if (!x.isFile() || !y.isFile() || x.size !== y.size || (x.mode & 0o777) !== (y.mode & 0o777)) return false;
    return hash(a) === hash(b);
  } catch {
    return false;
  }
}
function sync(from, to, skip, now) {
  fs.mkdirSync(to, { recursive: true });
  const wanted = new Set(fs.readdirSync(from).filter((n) => !skip.has(n)));
  for (const name of fs.readdirSync(to)) if (!wanted.has(name)) fs.rmSync(join(to, name), { recursive: true, force: true });
  for (const name of wanted) {
    const src = join(from, name), dst = join(to, name);
    const info = fs.lstatSync(src);
    if (info.isDirectory()) {
      const existing = fs.lstatSync(dst, { throwIfNoEntry: false });
      if (existing && !existing.isDirectory()) fs.rmSync(dst, { force: true });
      sync(src, dst, new Set(), now);
    } else if ((info.isFile() || info.isSymbolicLink()) && !sameFile(src, dst)) {
      fs.rmSync(dst, { recursive: true, force: true });
      if (info.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(src), dst);
      else {
        fs.copyFileSync(src, dst);
        fs.chmodSync(dst, info.mode & 0o777);
        fs.utimesSync(dst, now, now);
      }
    }
  }
}
const [from, to, ...skip] = process.argv.slice(1);
sync(from, to, new Set(skip), new Date());
`;

/** The command that syncs `to` with `from`: deck's own Node.js runs the program above. */
export function syncTreeArgv(node: string, from: string, to: string, skip: readonly string[] = []): string[] {
  return [node, "-e", SYNC_TREE_PROGRAM, from, to, ...skip];
}

/**
 * Makes `to` a copy of `from` (top-level names in `skip` left out, and removed from `to`), leaving
 * files whose content is unchanged untouched (old mtime) and giving every changed file the current
 * time. Compilers that judge freshness by mtime (cargo) then rebuild exactly what changed, whatever
 * time the checkout stamped on the files: a checkout stamps every file with its commit's time, which
 * can be older than the previous build's outputs. Runs as a build command, sandboxed like the others.
 */
export async function syncTree(ctx: BuildContext, from: string, to: string, skip: readonly string[] = []): Promise<void> {
  await ctx.run(syncTreeArgv(process.execPath, from, to, skip)).catch((e: unknown) => {
    throw new BuildStepError(`copying the source into the app's build cache failed (${(e as Error).message}): its output is above`, { cause: e });
  });
}
