import type { DatabasePool } from "slonik";
import type { DeckConfig } from "../config/index.ts";
import type { BuildRequest, BuildResult, RouterControl, Runtime } from "../core/index.ts";
import type { AppQueue, Semaphore } from "./app-queue.ts";
import type { CertManager } from "./certs.ts";
import type { Paths } from "./paths.ts";

/** Everything the deploy pipeline reaches outside itself, passed in so each part can be swapped. */
export interface DeployDeps {
  db: DatabasePool;
  config: DeckConfig;
  paths: Paths;
  runtime: Runtime;
  router: RouterControl;
  build(req: BuildRequest): Promise<BuildResult>;
  allocatePort(): Promise<number>;
  queue: AppQueue;
  builds: Semaphore;
  /** Bare repositories: created on first push or apps:create, removed on apps:destroy. */
  repos: { ensure(app: string): Promise<string>; remove(app: string): Promise<void> };
  /** Removes the image an artifact points to (Docker runtime); absent for the process runtime. */
  removeArtifactImage?(slugPath: string): Promise<void>;
  log(line: string): void;
  /** Background ACME orders and renewals (the deck server's); absent = no automatic certificates. */
  certs?: CertManager;
  /** Saves the bandwidth the router has counted so far (the deck server's metering); absent = nothing to save. */
  saveUsage?(): Promise<void>;
}

export type DeployOutcome =
  | { ok: true; version: number; url: string; deploymentId: number }
  | { ok: false; message: string; deploymentId?: number };
