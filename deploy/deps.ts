import type { DatabasePool } from "slonik";
import type { DeckConfig } from "../config/index.ts";
import type { BuildRequest, BuildResult, ErrorCode, RouterControl, Runtime } from "../core/index.ts";
import type { RouteLocks } from "./activate.ts";
import type { AppQueue } from "./app-queue.ts";
import type { BuildSlots } from "./build-slots.ts";
import type { BuildRuns } from "./build-runs.ts";
import type { CertManager } from "./cert-manager.ts";
import type { DeployEvents } from "./deploy-state.ts";
import type { Paths } from "./paths.ts";
import type { AppRow } from "../store/queries/index.ts";

/** Everything the deploy pipeline reaches outside itself, passed in so each part can be swapped. */
export interface DeployDeps {
  db: DatabasePool;
  config: DeckConfig;
  paths: Paths;
  runtime: Runtime;
  router: RouterControl;
  build(req: BuildRequest): Promise<BuildResult>;
  allocatePort(): Promise<number>;
  /** The durable per-app line of work, shared with every deck server on the database. */
  queue: AppQueue;
  /** The build slots (DECK_BUILD_CONCURRENCY), shared with every deck server on the database. */
  builds: BuildSlots;
  /** Pushes of this server that are queued, building or deploying: followed, listed and cancelled. */
  runs: BuildRuns;
  /** Route changes per app, one at a time, and the apps whose route holds requests for a start. */
  routes: RouteLocks;
  /** Every deployment's state changes. */
  events: DeployEvents;
  /** Bare repositories: created on first push or apps:create, removed on apps:destroy. */
  repos: { ensure(app: string): Promise<string>; remove(app: string): Promise<void> };
  /** Loads an image a builder node made into this server's engine (Docker runtime); absent for the process runtime. */
  loadImage?(tar: import("node:stream").Readable): Promise<void>;
  /** Whether this server's engine has an image (by id) already; absent for the process runtime. */
  hasImage?(id: string): Promise<boolean>;
  /** Removes the image an artifact points to (Docker runtime); absent for the process runtime. */
  removeArtifactImage?(slugPath: string): Promise<void>;
  log(line: string): void;
  /** Background ACME orders and renewals (the deck server's); absent = no automatic certificates. */
  certs?: CertManager;
  /** Saves the bandwidth the router has counted so far (the deck server's metering); absent = nothing to save. */
  saveUsage?(): Promise<void>;
  /**
   * Whether the app's org may build now (billing quotas and spend caps): null to go on, or the one line
   * that refuses the push (used / allowed / how to upgrade). The live release is never touched.
   */
  admitBuild?(app: AppRow): Promise<string | null>;
  /** Tells Stripe (billing/stripe-sync) that the org's plan changed; never throws. Absent without STRIPE_SECRET_KEY. */
  onPlanChanged?(orgId: number): Promise<void>;
  /** Stripe's pages for an org (Checkout to save a card; the billing portal). Absent without STRIPE_SECRET_KEY. */
  paymentPages?: { paymentLink(orgId: number, returnUrl: string): Promise<string>; portalLink(orgId: number, returnUrl: string): Promise<string> };
}

export type DeployOutcome =
  | { ok: true; version: number; url: string; deploymentId: number }
  | { ok: false; code: ErrorCode; message: string; deploymentId?: number };
