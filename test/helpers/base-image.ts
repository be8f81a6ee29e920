/**
 * Base images for the Docker tests, built on this machine: nothing can be pulled from a registry here.
 * The root filesystem holds what the test apps need and no more: the host's node binary and the shared
 * libraries `ldd` lists for it, /bin/sh, /usr/bin/env and npm (so `npm start` works in a container).
 * It goes to the engine with `docker import`, under a tag unique to the test run.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Binaries copied into the image at the same path; their libraries come along. */
const BINARIES = [
  { from: process.execPath, to: "/usr/bin/node" },
  { from: "/bin/sh", to: "/bin/sh" },
  { from: "/usr/bin/env", to: "/usr/bin/env" },
];
/** Where npm sits in the image (Debian's layout); on the host it is found beside the node binary. */
const NPM_DIR = "/usr/lib/node_modules/npm";

async function findHostNpm(): Promise<string> {
  const nodeBin = await realpath(process.execPath);
  const candidates = [join(dirname(nodeBin), "..", "lib", "node_modules", "npm"), NPM_DIR, "/usr/local/lib/node_modules/npm", "/usr/share/nodejs/npm"];
  for (const dir of candidates) {
    if (existsSync(join(dir, "bin", "npm-cli.js"))) return dir;
  }
  throw new Error(`npm not found for the test base image (looked in ${candidates.join(", ")})`);
}

export interface BaseImage {
  tag: string;
  /** Removes the image (and with force, any leftover container still using it). */
  remove(): Promise<void>;
}

/**
 * Whether the Docker tests can run: undefined when an engine answers, else the one-line reason to
 * skip. Under CI=true a missing engine throws instead, so the suite fails rather than skips.
 */
export function dockerSkipReason(): string | undefined {
  let reason: string | undefined;
  try {
    execFileSync("docker", ["version", "--format", "{{.Server.Version}}"], { stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
  } catch (e) {
    const err = e as { code?: string; stderr?: Buffer };
    const detail = err.code === "ENOENT" ? "the docker command is not installed" : (err.stderr?.toString().trim().split("\n").pop() ?? "no answer");
    reason = `no Docker engine answers (${detail}); start dockerd to run the Docker tests`;
  }
  if (reason && process.env.CI === "true") throw new Error(`${reason} (required when CI=true)`);
  return reason;
}

/** Libraries the dynamic loader resolves for `binary`, as absolute host paths (the loader included). */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run("ldd", [binary]);
  const out: string[] = [];
  for (const line of stdout.split("\n")) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

async function copyInto(root: string, from: string, to: string): Promise<void> {
  const target = join(root, to);
  await mkdir(dirname(target), { recursive: true });
  await copyFile(await realpath(from), target);
}

/** Builds the root filesystem and imports it as `tag` (default: unique per call). */
export async function buildBaseImage(options: { tag?: string } = {}): Promise<BaseImage> {
  const tag = options.tag ?? `deck-test-base-${randomBytes(4).toString("hex")}:latest`;
  const root = await mkdtemp(join(tmpdir(), "deck-rootfs-"));
  try {
    const libraries = new Set<string>();
    for (const b of BINARIES) {
      await copyInto(root, b.from, b.to);
      for (const lib of await sharedLibraries(b.from)) libraries.add(lib);
    }
    // Each library under the name the loader asks for (the host path may be a symlink to a versioned file).
    for (const lib of libraries) await copyInto(root, lib, lib);
    await mkdir(dirname(join(root, NPM_DIR)), { recursive: true });
    // cp(1): several times faster than fs.cp for npm's ~2,400 small files.
    await run("cp", ["-a", await findHostNpm(), join(root, NPM_DIR)]);
    await symlink("../lib/node_modules/npm/bin/npm-cli.js", join(root, "usr/bin/npm"));
    await mkdir(join(root, "tmp"), { mode: 0o1777 });
    await mkdir(join(root, "etc"), { recursive: true });
    await importRootfs(root, tag);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  return {
    tag,
    async remove() {
      await run("docker", ["image", "rm", "--force", tag]).catch(() => undefined);
    },
  };
}

/** `tar -c ROOT | docker import - TAG`, with a PATH so that commands resolve inside the image. */
async function importRootfs(root: string, tag: string): Promise<void> {
  const tar = spawn("tar", ["-C", root, "--owner=0", "--group=0", "-c", "."], { stdio: ["ignore", "pipe", "pipe"] });
  const dockerImport = spawn("docker", ["import", "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin", "-", tag], { stdio: ["pipe", "ignore", "pipe"] });
  tar.stdout.pipe(dockerImport.stdin);
  dockerImport.stdin.on("error", () => {});
  let stderr = "";
  for (const child of [tar, dockerImport]) child.stderr.on("data", (c) => (stderr += c));
  const exited = (child: typeof tar | typeof dockerImport) =>
    new Promise<number | null>((resolve) => {
      child.once("error", () => resolve(null));
      child.once("close", (code) => resolve(code));
    });
  const [tarCode, importCode] = await Promise.all([exited(tar), exited(dockerImport)]);
  if (tarCode !== 0 || importCode !== 0) {
    throw new Error(`docker import of the test base image failed (tar ${tarCode}, import ${importCode}): ${stderr.trim()}`);
  }
}
