/**
 * deck's billing kept in step with Stripe, when STRIPE_SECRET_KEY is set. Stripe's subscription
 * invoices carry the money (see billing/stripe/stripe-provider.ts); deck tells Stripe what it needs
 * to bill and learns from Stripe's webhooks what was paid:
 * - plans: every org is a Stripe customer (named after the org, billed to its first owner's email)
 *   with one subscription on the plan in force. A plan change is synced at once (`onPlanChanged`);
 *   when that fails, or for an org not synced yet, each billing round tries again: an org whose plan
 *   in force is not the one Stripe was last given is found again every round (stripe_org_sync).
 * - usage: each round sends new ledger entries to Stripe's meters (usage-report.ts).
 * - invoices: Stripe's webhooks mark deck's invoices paid, void or uncollectible (webhook-handler.ts);
 *   each round links Stripe invoices that arrived before deck closed their month.
 * - payment: an org's owners get a Stripe Checkout page to save a card (`paymentLink`) and Stripe's
 *   billing portal (`portalLink`).
 */
import type { DatabasePool } from "slonik";
import type { DeckConfig } from "../../config/index.ts";
import { DeckError, findPlan, Periodic, startingPlan, type Catalogue, type Plan } from "../../core/index.ts";
import {
  findStripeOrg, listOrgsToSyncWithStripe, loadCatalogue, lockStripeInvoicesToLink, lockStripeOrg, markStripeOrgSynced, noteStripeOrgError,
  planHistoryOf, recordStripeEvent, saveStripeLink, tryStripeJobLock, type Db, type PlanChangeRow, type StripeOrg,
} from "../../store/queries/index.ts";
import { createStripeProvider, type BillingProvider, type StripeProviderOptions } from "../stripe/index.ts";
import { listCatalogueStripePlans, toStripePlan } from "./stripe-plans.ts";
import { reportUsageRound, type UsageRound } from "./usage-report.ts";
import { applyStripeIntent, applyToDeckInvoice } from "./webhook-handler.ts";

export interface StripeSyncOptions {
  db: DatabasePool;
  provider: BillingProvider;
  /** STRIPE_WEBHOOK_SECRET; null: webhooks are refused. */
  webhookSecret: string | null;
  log(line: string): void;
  /** Between billing rounds (DECK_BILLING_INTERVAL); 5 minutes by default. */
  intervalMs?: number;
  now?: () => Date;
  /** Usage events sent per round at most (Stripe limits meter events per second); 5,000 by default. */
  maxUsageEvents?: number;
  /** How long a ledger id may take to be committed (see advanceCursor); an hour by default. */
  settleMs?: number;
  /** Orgs synced per round at most; 50 by default. */
  orgsPerRound?: number;
}

export type OrgSyncResult =
  | { ok: true; customerId: string; subscriptionId: string; status: string; plan: string }
  | { ok: false; error: Error };

/** What `handleWebhook` answers Stripe: 2xx stops its retries, 400 a request that is not Stripe's, 500 "send again". */
export interface WebhookAnswer {
  status: 200 | 400 | 500;
  body: { ok: true; duplicate?: true; result?: string } | { ok: false; error: string };
}

/** What one billing round did with Stripe (for tests and the log). */
export interface StripeRound {
  orgsSynced: number;
  orgsFailed: number;
  usage: UsageRound | null;
  invoicesLinked: number;
}

/** The answer to anything that needs Stripe on a deck without it. */
export const NO_STRIPE_MESSAGE = "deck has no Stripe account configured (STRIPE_SECRET_KEY); invoices are paid as a platform admin records them";

/** Splits DECK_STRIPE_API_URL into what the Stripe SDK takes. */
export function toStripeEndpoint(url: string | undefined): Pick<StripeProviderOptions, "host" | "port" | "protocol"> {
  if (!url) return {};
  const u = new URL(url);
  const protocol = u.protocol === "http:" ? "http" : "https";
  return { host: u.hostname.replace(/^\[(.*)\]$/, "$1"), port: u.port ? Number(u.port) : protocol === "http" ? 80 : 443, protocol };
}

/** deck's Stripe sync when STRIPE_SECRET_KEY is set, else null (deck bills without Stripe). */
export function stripeSyncFromConfig(
  config: Pick<DeckConfig, "stripeSecretKey" | "stripeWebhookSecret" | "stripeApiUrl" | "billingInterval">,
  db: DatabasePool,
  log: (line: string) => void,
): StripeSync | null {
  if (!config.stripeSecretKey) return null;
  const provider = createStripeProvider({ secretKey: config.stripeSecretKey, ...toStripeEndpoint(config.stripeApiUrl) });
  return new StripeSync({ db, provider, webhookSecret: config.stripeWebhookSecret ?? null, log, intervalMs: config.billingInterval * 1000 });
}

export class StripeSync {
  readonly #o: StripeSyncOptions;
  readonly #periodic: Periodic;
  /** What the last round did. */
  #lastRound: StripeRound | null = null;
  /** The catalogue Stripe has the prices of (as sent), and the call making them now. */
  #catalogueSent: string | null = null;
  #catalogueCall: Promise<void> | null = null;
  /** The last error of each step of a round (and each org), so Stripe away for an hour says so once. */
  readonly #trouble = new Map<string, string>();

  constructor(options: StripeSyncOptions) {
    this.#o = options;
    this.#periodic = new Periodic({
      intervalMs: options.intervalMs ?? 300_000,
      run: async () => {
        this.#lastRound = await this.#runRound();
      },
      onTrouble: (message) => options.log(`stripe: a billing round failed (tried again each round): ${message}`),
    });
  }

  #now(): Date {
    return this.#o.now?.() ?? new Date();
  }

  /** Runs a round now and then every interval, until stop. */
  start(): void {
    this.#periodic.start();
  }

  /** Stops the timer and waits for a round in progress. */
  stop(): Promise<void> {
    return this.#periodic.stop();
  }

  /** One billing round with Stripe now (or the one under way), and what it did. Never rejects: trouble goes to the log. */
  async tick(): Promise<StripeRound> {
    await this.#periodic.tick();
    return this.#lastRound ?? { orgsSynced: 0, orgsFailed: 0, usage: null, invoicesLinked: 0 };
  }

  async #runRound(): Promise<StripeRound> {
    const round: StripeRound = { orgsSynced: 0, orgsFailed: 0, usage: null, invoicesLinked: 0 };
    await this.#step("catalogue", () => this.ensureCatalogue());
    await this.#step("plans", async () => {
      const ids = await listOrgsToSyncWithStripe(this.#o.db, { now: this.#now(), limit: this.#o.orgsPerRound ?? 50 });
      for (const id of ids) {
        // One org's trouble (logged once) does not hold up the others; Stripe out of reach stops the rest until the next round.
        const kind = `plan of org ${id}`;
        let r: OrgSyncResult;
        try {
          r = await this.syncOrg(id);
          this.#clear(kind);
        } catch (e) {
          this.#report(kind, e as Error);
          r = { ok: false, error: e as Error };
        }
        if (r.ok) round.orgsSynced += 1;
        else round.orgsFailed += 1;
        if (!r.ok && r.error instanceof DeckError && r.error.code === "stripe_unavailable") break;
      }
    });
    await this.#step("usage", async () => {
      const usage = (round.usage = await this.reportUsage());
      if (usage.failed.length > 0) throw new Error(`Stripe could not take ${usage.failed.length} usage event(s): ${usage.failed[0]!.message}`);
    });
    await this.#step("invoices", async () => {
      round.invoicesLinked = await this.linkInvoices();
    });
    return round;
  }

  async #step(kind: string, work: () => Promise<void>): Promise<void> {
    try {
      await work();
      this.#clear(kind);
    } catch (e) {
      this.#report(kind, e as Error);
    }
  }

  #report(kind: string, e: Error): void {
    if (this.#trouble.get(kind) !== e.message) this.#o.log(`stripe: ${kind}: ${e.message} (tried again every billing round)`);
    this.#trouble.set(kind, e.message);
  }

  #clear(kind: string): void {
    if (this.#trouble.delete(kind)) this.#o.log(`stripe: ${kind} in step with Stripe again`);
  }

  /**
   * Makes the prices of the catalogue's plans in Stripe: once, and again when a platform admin changes
   * the catalogue; a failed attempt is made again on the next call. Custom plans (Enterprise) get their
   * prices per org when an org is put on one.
   */
  async ensureCatalogue(): Promise<void> {
    const plans = listCatalogueStripePlans(await loadCatalogue(this.#o.db));
    const wanted = JSON.stringify(plans);
    if (this.#catalogueSent === wanted) return;
    this.#catalogueCall ??= this.#o.provider.ensureCatalogue(plans)
      .then(() => {
        this.#catalogueSent = wanted;
      })
      .finally(() => (this.#catalogueCall = null));
    await this.#catalogueCall;
  }

  /**
   * Call after an org's plan changed: sets its Stripe subscription to the plan in force now. Never
   * throws, so the plan change stands whatever Stripe says; a failure is logged and the billing round
   * tries again until Stripe has the plan.
   */
  async onPlanChanged(orgId: number): Promise<OrgSyncResult> {
    try {
      return await this.syncOrg(orgId);
    } catch (e) {
      this.#o.log(`stripe: could not sync org ${orgId}'s plan (tried again every billing round): ${(e as Error).message}`);
      return { ok: false, error: e as Error };
    }
  }

  /**
   * Makes the org a Stripe customer if it is not one and puts its subscription on the plan in force
   * now, under the org's lock (a plan change synced at once and the round's retry never cross). A
   * Stripe failure is recorded on the org (and logged once per message), not thrown.
   */
  async syncOrg(orgId: number): Promise<OrgSyncResult> {
    const { db, provider, log } = this.#o;
    const now = this.#now();
    const outcome = await db.transaction(async (tx): Promise<OrgSyncResult | null> => {
      await lockStripeOrg(tx, orgId);
      const org = await findStripeOrg(tx, orgId);
      if (!org) return null;
      const catalogue = await loadCatalogue(tx);
      const { change, plan } = await findPlanInForce(tx, { orgId, catalogue, now });
      const fail = async (error: Error): Promise<OrgSyncResult> => {
        const before = await noteStripeOrgError(tx, { orgId: org.id, message: error.message, at: now });
        if (before !== error.message) log(`stripe: could not put ${org.slug} on plan ${change.plan} in Stripe (tried again every billing round): ${error.message}`);
        return { ok: false, error };
      };
      if (!plan) return fail(new Error(`${org.slug} is on plan ${change.plan}, which the catalogue no longer has`));
      if (!org.email) return fail(new Error(`${org.slug} has no members, so Stripe would have no one to bill`));
      try {
        const customerId = await provider.ensureCustomer({ orgId: org.id, orgName: org.name, email: org.email });
        const stripePlan = toStripePlan(catalogue, plan, org);
        const prorationDate = pickProrationDate(org, change, now);
        const sub = await provider.setSubscription(customerId, stripePlan, prorationDate === null ? {} : { prorationDate });
        // To the second, like Stripe's event times, so an event of the same second may still replace it.
        const statusAt = new Date(Math.floor(now.getTime() / 1000) * 1000);
        await saveStripeLink(tx, org.id, { customerId, subscriptionId: sub.subscriptionId, status: sub.status, statusAt });
        await markStripeOrgSynced(tx, { orgId: org.id, changeId: change.id, at: now });
        return { ok: true, customerId, subscriptionId: sub.subscriptionId, status: sub.status, plan: stripePlan.code };
      } catch (e) {
        // Stripe's failures are recorded on the org and retried; anything else is deck's and undoes the transaction.
        if (!isStripeFailure(e)) throw e;
        return fail(e);
      }
    });
    return outcome ?? { ok: false, error: new Error(`there is no org ${orgId}`) };
  }

  /**
   * One round of reporting usage to Stripe's meters (usage-report.ts). Refused and too old entries are
   * logged here; events Stripe failed to take are in `failed`, and the next round sends them again.
   */
  async reportUsage(): Promise<UsageRound> {
    const round = await reportUsageRound({
      db: this.#o.db, provider: this.#o.provider, now: this.#now(),
      settleMs: this.#o.settleMs ?? 3_600_000, maxEvents: this.#o.maxUsageEvents ?? 5_000, batchSize: 500,
    });
    const { log } = this.#o;
    if (round.rejected.length > 0) {
      const first = round.rejected[0]!;
      log(`stripe: Stripe refused ${round.rejected.length} usage event(s), which deck will not send again; the first, ${first.identifier}: ${first.message}`);
    }
    if (round.tooOld > 0) log(`stripe: ${round.tooOld} usage entr${round.tooOld === 1 ? "y was" : "ies were"} older than the 35 days Stripe takes and ${round.tooOld === 1 ? "was" : "were"} not sent`);
    return round;
  }

  /** Links Stripe invoices whose month deck has closed since their webhook came, and applies their status. */
  async linkInvoices(): Promise<number> {
    return this.#o.db.transaction(async (tx) => {
      if (!(await tryStripeJobLock(tx, "invoices"))) return 0;
      const pending = await lockStripeInvoicesToLink(tx, 100);
      let linked = 0;
      for (const s of pending) {
        const result = await applyToDeckInvoice(tx, s, { now: this.#now() });
        this.#o.log(`stripe: ${result}`);
        linked += 1;
      }
      return linked;
    });
  }

  /** A Stripe Checkout page where the org saves a card its invoices are charged to; the org becomes a Stripe customer first if needed. */
  async paymentLink(orgId: number, returnUrl: string): Promise<string> {
    return this.#o.provider.checkoutLink(await this.#customerOf(orgId), returnUrl);
  }

  /** Stripe's billing portal for the org: cards, invoices and receipts. */
  async portalLink(orgId: number, returnUrl: string): Promise<string> {
    return this.#o.provider.portalLink(await this.#customerOf(orgId), returnUrl);
  }

  async #customerOf(orgId: number): Promise<string> {
    const org: StripeOrg | null = await findStripeOrg(this.#o.db, orgId);
    if (org?.customerId) return org.customerId;
    const synced = await this.syncOrg(orgId);
    if (!synced.ok) throw synced.error;
    return synced.customerId;
  }

  /**
   * A Stripe webhook delivery: verified with STRIPE_WEBHOOK_SECRET, recorded by event id (a repeated
   * delivery changes nothing) and applied in the same transaction. A failure answers 500, and Stripe
   * delivers the event again later.
   */
  async handleWebhook(rawBody: Buffer | string, signatureHeader: string | undefined): Promise<WebhookAnswer> {
    const secret = this.#o.webhookSecret;
    if (!secret) return { status: 400, body: { ok: false, error: "deck has no Stripe webhook signing secret configured (STRIPE_WEBHOOK_SECRET), so it takes no Stripe webhooks" } };
    if (!signatureHeader) return { status: 400, body: { ok: false, error: "no Stripe-Signature header: deck takes only webhooks Stripe signed" } };
    const parsed = this.#o.provider.parseWebhook(rawBody, signatureHeader, secret);
    if (!parsed.ok) return { status: 400, body: { ok: false, error: `the webhook is not signed with deck's STRIPE_WEBHOOK_SECRET: ${firstLine(parsed.error)}` } };
    const { event, intent } = parsed;
    try {
      return await this.#o.db.transaction(async (tx): Promise<WebhookAnswer> => {
        if (!(await recordStripeEvent(tx, event))) return { status: 200, body: { ok: true, duplicate: true } };
        const result = await applyStripeIntent(tx, intent, { provider: this.#o.provider, now: this.#now() });
        return { status: 200, body: { ok: true, result } };
      });
    } catch (e) {
      this.#o.log(`stripe: webhook ${event.id} (${event.type}) not applied; Stripe sends it again: ${(e as Error).message}`);
      return { status: 500, body: { ok: false, error: `deck could not apply ${event.type} ${event.id} now; Stripe will send it again` } };
    }
  }
}

/** The org's plan change in force at `now` and its terms (an Enterprise org's own, else the catalogue's). */
async function findPlanInForce(tx: Db, o: { orgId: number; catalogue: Catalogue; now: Date }): Promise<{ change: PlanChangeRow; plan: Plan | null }> {
  const history = await planHistoryOf(tx, o.orgId, startingPlan(o.catalogue).code);
  const change = [...history].reverse().find((h) => Date.parse(h.from) <= o.now.getTime()) ?? history[0]!;
  return { change, plan: change.customPlan ?? findPlan(o.catalogue, change.plan) ?? null };
}

/**
 * When a plan change takes effect for Stripe's proration: when deck changed the plan, so both prorate
 * from the same second, if that lies within the current month and after the org's subscription began
 * (Stripe refuses earlier dates); otherwise Stripe's "now" (null).
 */
function pickProrationDate(org: StripeOrg, change: PlanChangeRow, now: Date): number | null {
  const from = Date.parse(change.from);
  if (org.usageFrom === null || from < Date.parse(org.usageFrom) || from > now.getTime()) return null;
  const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  return from >= monthStart ? Math.floor(from / 1000) : null;
}

/** What the Stripe adapter throws when Stripe failed or refused. */
function isStripeFailure(e: unknown): e is DeckError {
  return e instanceof DeckError && (e.code === "stripe_unavailable" || e.code === "stripe_refused");
}

function firstLine(text: string): string {
  return text.split("\n")[0]!.slice(0, 200);
}
