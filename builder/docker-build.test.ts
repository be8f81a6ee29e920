import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { IMAGE_REF_FILE, type BuildRequest, type BuildResult } from "../core/index.ts";
import { createDockerClient } from "../runtime/docker-client.ts";
import { applyDockerFirewall, removeDockerFirewall } from "../runtime/docker-network.ts";
import { findFreePort } from "../runtime/free-port.ts";
import { buildBaseImage, dockerSkipReason, type BaseImage } from "../test/helpers/base-image.ts";
import { runBuild, type BuildOptions } from "./build.ts";
import { buildArgsFor, dockerfileProcfile, imageTag, limitOptions, readBuildStream, readImageRef, slugContextArgv, slugDockerfile } from "./docker-build.ts";
import { createPushedRepo } from "./test-helpers.ts";

const root = mkdtempSync(join(tmpdir(), "deck-docker-build-"));
after(() => rmSync(root, { recursive: true, force: true }));
let count = 0;

interface Run {
  result: BuildResult;
  lines: { line: string; at: number }[];
  endedAt: number;
  req: BuildRequest;
}

async function build(app: string, files: Record<string, string>, options: BuildOptions, env: Record<string, string> = {}): Promise<Run> {
  const dir = join(root, `case-${++count}`);
  mkdirSync(dir);
  const repo = createPushedRepo(dir, files);
  const lines: Run["lines"] = [];
  const req: BuildRequest = {
    app, commitSha: repo.sha, repoDir: repo.repoDir, gitEnv: {}, slugDir: join(dir, "slugs", String(count)), cacheDir: join(dir, "cache"),
    env, timeoutMs: 120_000, onLine: (line) => lines.push({ line, at: Date.now() }),
  };
  const result = await runBuild(req, options);
  return { result, lines, endedAt: Date.now(), req };
}

const text = (run: Run) => run.lines.map((l) => l.line).join("\n");
/** The build's output and, for a failed build, the reason it gave: what a failed assertion shows. */
const outcome = (run: Run) => `${text(run)}${run.result.ok ? "" : `\n(${run.result.code}) ${run.result.message}`}`;

describe("docker builds: pure parts", () => {
  it("offers a build exactly the config vars its Dockerfile declares with ARG", () => {
    const dockerfile = "FROM base\nARG NODE_ENV\narg GREETING=hello \\\n  VERSION\nRUN echo $SECRET\nFROM base AS two\nARG MISSING\n";
    assert.deepEqual(buildArgsFor(dockerfile, { NODE_ENV: "production", GREETING: "hi", VERSION: "3", SECRET: "s3cret" }), {
      NODE_ENV: "production", GREETING: "hi", VERSION: "3",
    });
  });

  it("names images after the app and build, and gives a Dockerfile app a web process running the image's command", () => {
    assert.match(imageTag("shop", "/data/apps/shop/slugs/42"), /^deck\/shop:build-42-[0-9a-f]{12}$/);
    assert.notEqual(imageTag("shop", "/data/apps/shop/slugs/42"), imageTag("shop", "/other/apps/shop/slugs/42"), "another installation's build 42 of shop gets its own tag");
    assert.deepEqual(dockerfileProcfile(undefined), { web: "" });
    assert.deepEqual(dockerfileProcfile({ release: "node migrate.js" }), { release: "node migrate.js", web: "" });
    assert.deepEqual(dockerfileProcfile({ worker: "node w.js" }), { worker: "node w.js" });
  });

  it("gives every RUN step the build's memory (without swap) and CPU limits", () => {
    assert.deepEqual(limitOptions({ memoryBytes: 512 * 1024 ** 2, cpus: 1.5 }), { memory: 512 * 1024 ** 2, memswap: 512 * 1024 ** 2, cpuperiod: 100_000, cpuquota: 150_000 });
    assert.deepEqual(limitOptions(), {});
  });

  it("packages a slug owned by, and run as, the app's uid, else nobody: never root", () => {
    assert.equal(slugDockerfile("deck-base:1", { uid: 20001, gid: 20002 }), "FROM deck-base:1\nCOPY --chown=20001:20002 app/ /app/\nWORKDIR /app\nENV HOME=/app\nUSER 20001:20002\n");
    assert.equal(slugDockerfile("deck-base:1"), "FROM deck-base:1\nCOPY --chown=65534:65534 app/ /app/\nWORKDIR /app\nENV HOME=/app\nUSER 65534:65534\n");
  });

  it("packs the slug under app/ beside the Dockerfile, leaving symlink targets alone", () => {
    const ctx = mkdtempSync(join(root, "ctx-"));
    const slug = mkdtempSync(join(root, "slug-"));
    writeFileSync(join(ctx, "Dockerfile"), "FROM x\n");
    mkdirSync(join(slug, "node_modules", ".bin"), { recursive: true });
    writeFileSync(join(slug, "server.js"), "");
    symlinkSync("../server.js", join(slug, "node_modules", ".bin", "serve"));
    const [cmd, ...args] = slugContextArgv(ctx, slug);
    const tarFile = join(root, `ctx-${count}.tar`);
    writeFileSync(tarFile, execFileSync(cmd, args));
    const listing = execFileSync("tar", ["-tvf", tarFile], { encoding: "utf8" });
    assert.match(listing, / Dockerfile$/m);
    assert.match(listing, / app\/server\.js$/m);
    assert.match(listing, / app\/node_modules\/\.bin\/serve -> \.\.\/server\.js$/m);
  });

  it("streams build output line by line across messages and reports the engine's last error line", async () => {
    const messages = [
      '{"stream":"Step 1/2 : FROM base\\n"}\n{"stream":" ---> 1234\\n"}\n{"stream":"Step 2/2 : RUN x\\n"}\n{"str',
      'eam":"half a "}\n{"stream":"line\\n"}\n',
      '{"errorDetail":{"code":3},"error":"The command \'/bin/sh -c x\' returned a non-zero code: 3"}\n',
    ];
    const lines: string[] = [];
    const outcome = await readBuildStream(Readable.from(messages.map((m) => Buffer.from(m))), (l) => lines.push(l.trim()));
    assert.equal(outcome.error, "The command '/bin/sh -c x' returned a non-zero code: 3");
    assert.deepEqual(lines, ["Step 1/2 : FROM base", "---> 1234", "Step 2/2 : RUN x", "half a line", "The command '/bin/sh -c x' returned a non-zero code: 3"]);
    const ok = await readBuildStream(Readable.from([Buffer.from('{"aux":{"ID":"sha256:abc"}}\n{"stream":"Successfully built abc\\n"}\n')]), () => undefined);
    assert.deepEqual(ok, { id: "sha256:abc", error: undefined });
  });

  it("refuses a Dockerfile app under the process runtime with a clear message", async () => {
    const run = await build("refused", { Dockerfile: "FROM scratch\n", "package.json": "{}" }, {});
    assert.equal(run.result.ok, false);
    assert.equal(!run.result.ok && run.result.message, "this app has a Dockerfile; deck runs Dockerfile apps with DECK_RUNTIME=docker");
    assert.equal(existsSync(run.req.slugDir), false);
  });
});

const skip = dockerSkipReason();

describe("docker builds on a real engine", { skip }, () => {
  const client = createDockerClient();
  const suffix = randomBytes(4).toString("hex");
  const apps = {
    dockerfile: `df-${suffix}`, failing: `dffail-${suffix}`, hungry: `dfmem-${suffix}`, slug: `slug-${suffix}`, nobase: `nobase-${suffix}`, probing: `dfnet-${suffix}`,
  };
  // A table of the test's own: removing it afterwards leaves a real deck's table on this host alone.
  const firewallTable = `deck_test_${suffix}`;
  let base: BaseImage;
  let options: BuildOptions;

  before(async () => {
    base = await buildBaseImage();
    options = { runtime: "docker", engine: client, baseImage: base.tag };
  });

  after(async () => {
    await removeDockerFirewall(firewallTable);
    for (const app of Object.values(apps)) {
      const images = execFileSync("docker", ["images", "--quiet", "--filter", `label=deck.app=${app}`], { encoding: "utf8" }).split("\n").filter(Boolean);
      for (const id of new Set(images)) await client.removeImage(id);
    }
    await base?.remove();
  });

  it("builds a Dockerfile app, streaming each line as it happens, with only its declared build args", async () => {
    const dockerfile = [
      `FROM ${base.tag}`,
      "ARG GREETING",
      "WORKDIR /srv",
      "COPY server.js .",
      // Output, a pause, more output: the first line must reach the pusher before the build ends.
      `RUN node -e "console.log('greeting=' + process.env.GREETING + ' secret=' + (process.env.SECRET || 'none')); setTimeout(() => console.log('done waiting'), 1500)"`,
      'CMD ["node", "server.js"]',
      "",
    ].join("\n");
    const run = await build(apps.dockerfile, { Dockerfile: dockerfile, "server.js": "console.log('hi')\n" }, options, { GREETING: "hello", SECRET: "s3cret" });
    assert.equal(run.result.ok, true, outcome(run));
    if (!run.result.ok) return;
    assert.equal(run.result.buildpack, "dockerfile");
    assert.deepEqual(run.result.procfile, { web: "" });
    assert.match(run.result.image ?? "", /^sha256:[0-9a-f]{64}$/);
    assert.ok(run.result.sizeBytes > 1_000_000);

    const greeting = run.lines.find((l) => l.line.trim() === "greeting=hello secret=none");
    const waited = run.lines.find((l) => l.line.trim() === "done waiting");
    assert.ok(greeting && waited, text(run));
    assert.ok(waited.at - greeting.at >= 1000, "lines are streamed as the engine writes them, not at the end");
    assert.match(text(run), /^ +Step 1\/\d+ : FROM /m);

    assert.deepEqual(readdirSync(run.req.slugDir), [IMAGE_REF_FILE]);
    assert.deepEqual(await readImageRef(run.req.slugDir), { image: run.result.image, tag: imageTag(apps.dockerfile, run.req.slugDir) });
    assert.match(imageTag(apps.dockerfile, run.req.slugDir), new RegExp(`^deck/${apps.dockerfile}:build-${count}-[0-9a-f]{12}$`));
    assert.equal((await client.inspectImage(run.result.image!))?.labels["deck.app"], apps.dockerfile);
    const out = execFileSync("docker", ["run", "--rm", run.result.image!], { encoding: "utf8" });
    assert.equal(out, "hi\n");
  });

  it("fails the build on a failing step with the engine's error, leaving no artifact", async () => {
    const run = await build(apps.failing, { Dockerfile: `FROM ${base.tag}\nRUN echo about to fail && exit 3\n` }, options);
    assert.equal(run.result.ok, false);
    if (run.result.ok) return;
    assert.equal(run.result.code, "build_failed");
    assert.match(run.result.message, /^docker build failed: The command .* returned a non-zero code: 3$/);
    assert.match(text(run), /about to fail/);
    assert.equal(existsSync(run.req.slugDir), false);
  });

  it("stops a RUN step that goes over the build's memory limit, and fails that build", async () => {
    const grow = `RUN node -e "const a = []; for (;;) a.push(Buffer.alloc(8e6, 1))"`;
    const limited = { ...options, imageBuildLimits: { memoryBytes: 128 * 1024 ** 2 } };
    const run = await build(apps.hungry, { Dockerfile: `FROM ${base.tag}\n${grow}\n` }, limited);
    assert.equal(run.result.ok, false);
    assert.match(!run.result.ok ? run.result.message : "", /^docker build failed: The command .* returned a non-zero code: 137 \(killed: most likely over the build memory limit of 128 MB, DECK_BUILD_MEMORY\)$/);
  });

  it("packages a buildpack slug into an image FROM the base image, runnable with npm start", async () => {
    const files = {
      "package.json": JSON.stringify({ name: "slugapp", version: "1.0.0", scripts: { start: "node server.js" } }),
      "server.js": "console.log('from the slug in ' + process.cwd() + ' home=' + process.env.HOME)\n",
    };
    const run = await build(apps.slug, files, options);
    assert.equal(run.result.ok, true, outcome(run));
    if (!run.result.ok) return;
    assert.equal(run.result.buildpack, "node");
    assert.match(run.result.image ?? "", /^sha256:/);
    assert.match(text(run), new RegExp(`Packaging the slug into an image FROM ${base.tag.replace(/[.:]/g, "\\$&")}`));
    assert.ok(existsSync(join(run.req.slugDir, "server.js")), "the slug itself is kept beside the image");
    const out = execFileSync("docker", ["run", "--rm", run.result.image!, "npm", "start", "--silent"], { encoding: "utf8" });
    assert.match(out, /from the slug in \/app home=\/app/);
    assert.equal(execFileSync("docker", ["image", "inspect", "--format", "{{.Config.User}}", run.result.image!], { encoding: "utf8" }).trim(), "65534:65534");
  });

  it("runs RUN steps on a network of the build's own, which cannot connect to the host's services, and removes it after", async () => {
    assert.equal((await applyDockerFirewall(firewallTable)).on, true);
    const listener = net.createServer((socket) => {
      socket.on("error", () => undefined);
      socket.end("host secret\n");
    });
    const port = await findFreePort();
    await new Promise<void>((resolve) => listener.listen(port, "0.0.0.0", resolve));
    try {
      const hostAddress = Object.entries(networkInterfaces())
        .filter(([name]) => !/^(deckd|docker|br-|veth)/.test(name))
        .flatMap(([, addresses]) => addresses ?? [])
        .find((a) => a.family === "IPv4" && !a.internal)?.address;
      assert.ok(hostAddress);
      // The gateway (the host's address on the build's bridge) from the default route in /proc/net/route.
      const probe = [
        `const route = require("fs").readFileSync("/proc/net/route", "utf8").split("\\n").map((l) => l.split("\\t")).find((f) => f[1] === "00000000");`,
        `const gw = Buffer.from(route[2], "hex").reverse().join(".");`,
        `for (const host of [gw, "${hostAddress}"]) { const s = require("net").connect({ host, port: ${port} });`,
        `s.setTimeout(4000); const done = (o) => { console.log("probe " + (host === gw ? "gateway" : "host") + " " + o); s.destroy(); };`,
        `s.on("connect", () => done("connected")); s.on("error", (e) => done(e.code)); s.on("timeout", () => done("timeout")); }`,
      ].join(" ");
      const dockerfile = `FROM ${base.tag}\nRUN node -e '${probe}'\n`;
      const run = await build(apps.probing, { Dockerfile: dockerfile }, options);
      assert.equal(run.result.ok, true, outcome(run));
      const probes = run.lines.map((l) => l.line.trim()).filter((l) => l.startsWith("probe ")).sort();
      assert.deepEqual(probes, ["probe gateway EHOSTUNREACH", "probe host EHOSTUNREACH"], text(run));
      assert.deepEqual(await client.listNetworks([`deck.app=${apps.probing}`]), [], "the build's network is removed");
    } finally {
      listener.close();
    }
  });

  it("names a missing base image and how to fix it", async () => {
    const run = await build(apps.nobase, { "package.json": JSON.stringify({ name: "x", version: "1.0.0", scripts: { start: "node x.js" } }) }, {
      ...options, baseImage: `deck-missing-base-${suffix}:latest`,
    });
    assert.equal(run.result.ok, false);
    assert.equal(!run.result.ok && run.result.message, `base image deck-missing-base-${suffix}:latest is not on the Docker engine; build or load it there, or set DECK_BASE_IMAGE`);
  });
});
