/**
 * A stateful fake of the Stripe API, over real HTTP on a free loopback port, for the endpoints deck's
 * Stripe adapter (billing/stripe) uses and nothing else. It keeps meters, prices, customers,
 * subscriptions, meter events, checkout and portal sessions, setup intents and invoices, answers in
 * Stripe's shapes and error bodies, decodes Stripe's form bodies (`items[0][price]=…`), honours
 * `Idempotency-Key` (a repeat gets the first answer; the same key with other parameters is refused),
 * and refuses a second meter event with an identifier it has seen, as Stripe does.
 *
 * Request shapes are checked against Stripe's published OpenAPI spec by replaying `requests` to
 * stripe-mock (billing/stripe/provider.test.ts); this fake checks behaviour over several calls.
 * Tests play Stripe's side with `issueInvoice`, `completeCheckout` and `event` + `signWebhook`.
 */
import http from "node:http";
import { type AddressInfo } from "node:net";
import Stripe from "stripe";

export interface RecordedRequest {
  method: string;
  path: string;
  /** The query string without "?", as sent. */
  query: string;
  /** The form body, as sent. */
  body: string;
  idempotencyKey: string | null;
  status: number;
}

type StripeObject = Record<string, any>;

export interface FakeStripeState {
  meters: StripeObject[];
  products: StripeObject[];
  prices: StripeObject[];
  customers: StripeObject[];
  subscriptions: StripeObject[];
  meterEvents: StripeObject[];
  checkoutSessions: StripeObject[];
  portalSessions: StripeObject[];
  setupIntents: StripeObject[];
  invoices: StripeObject[];
}

export interface FakeStripe {
  host: string;
  port: number;
  protocol: "http";
  /** Any key of this form is accepted; requests without one are answered 401. */
  secretKey: string;
  state: FakeStripeState;
  /** Every request in order, with the status it got. */
  requests: RecordedRequest[];
  /** The decoded parameters of each request to `method path` (query for GET, body otherwise). */
  paramsOf(method: string, path: string | RegExp): StripeObject[];
  /** Makes the next matching requests fail with `status` (a 5xx to test retries and outages). */
  failWhen(match: (request: { method: string; path: string; params: StripeObject }) => number | undefined): void;
  /** Stripe issues an invoice to a customer, as it does at the end of a subscription's period. */
  issueInvoice(input: { customer: string; periodStart: number; periodEnd: number; amountDue: number; status?: "draft" | "open" | "paid" | "void" }): StripeObject;
  /** The customer finishes a setup-mode checkout session: a card is saved on a setup intent. */
  completeCheckout(sessionId: string): StripeObject;
  /** An event as Stripe would send it to a webhook endpoint. */
  event(type: string, object: StripeObject, created?: number): StripeObject;
  close(): Promise<void>;
}

/** A valid `Stripe-Signature` header for `payload`, made by the SDK the way Stripe signs. */
export function signWebhook(payload: string, secret: string, timestamp?: number): string {
  return Stripe.webhooks.generateTestHeaderString({ payload, secret, ...(timestamp !== undefined ? { timestamp } : {}) });
}

/**
 * Decodes a Stripe form body or query string: `a[b][0][c]=v` becomes `{ a: { b: [{ c: "v" }] } }`.
 * Values stay strings, as Stripe receives them.
 */
export function decodeStripeForm(text: string): StripeObject {
  const root: StripeObject = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const head = key.match(/^[^[]+/)?.[0] ?? key;
    const path = [head, ...[...key.slice(head.length).matchAll(/\[([^\]]*)\]/g)].map((m) => m[1])];
    let node: StripeObject = root;
    path.forEach((part, i) => {
      if (i === path.length - 1) node[part] = value;
      else node = node[part] ??= {};
    });
  }
  return arraysOf(root) as StripeObject;
}

/** Objects whose keys are 0..n-1 are arrays. */
function arraysOf(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  const entries = Object.entries(value as StripeObject).map(([k, v]) => [k, arraysOf(v)] as const);
  const isArray = entries.length > 0 && entries.every(([k], i) => k === String(i));
  return isArray ? entries.map(([, v]) => v) : Object.fromEntries(entries);
}

class StripeFailure extends Error {
  constructor(readonly status: number, readonly body: StripeObject) {
    super(String(body.message));
  }
}

function invalid(message: string, param?: string, code?: string): StripeFailure {
  return new StripeFailure(400, { type: "invalid_request_error", message, ...(param ? { param } : {}), ...(code ? { code } : {}) });
}

function missing(kind: string, id: string): StripeFailure {
  return new StripeFailure(404, { type: "invalid_request_error", code: "resource_missing", param: "id", message: `No such ${kind}: '${id}'` });
}

function required(params: StripeObject, name: string): string {
  const value = params[name];
  if (typeof value !== "string" || value === "") throw invalid(`Missing required param: ${name}.`, name, "parameter_missing");
  return value;
}

function integer(value: unknown, param: string): number {
  if (typeof value !== "string" || !/^-?\d+$/.test(value)) throw invalid(`Invalid integer: ${String(value)}`, param);
  return Number(value);
}

function bool(value: unknown): boolean {
  return value === "true";
}

const now = () => Math.floor(Date.now() / 1000);

export async function startFakeStripe(): Promise<FakeStripe> {
  const state: FakeStripeState = {
    meters: [], products: [], prices: [], customers: [], subscriptions: [], meterEvents: [], checkoutSessions: [], portalSessions: [], setupIntents: [], invoices: [],
  };
  const requests: RecordedRequest[] = [];
  const failures: Array<(r: { method: string; path: string; params: StripeObject }) => number | undefined> = [];
  const idempotent = new Map<string, { fingerprint: string; status: number; body: string }>();
  let counter = 0;
  const newId = (prefix: string) => `${prefix}_fake${(++counter).toString().padStart(6, "0")}`;

  function find(list: StripeObject[], kind: string, id: string): StripeObject {
    const found = list.find((o) => o.id === id);
    if (!found) throw missing(kind, id);
    return found;
  }

  /** Stripe's list envelope, newest first, with `limit` and `starting_after`. */
  function page(url: string, items: StripeObject[], params: StripeObject): StripeObject {
    const limit = params.limit ? integer(params.limit, "limit") : 10;
    if (limit < 1 || limit > 100) throw invalid("limit must be between 1 and 100", "limit");
    let start = 0;
    if (params.starting_after) start = items.findIndex((o) => o.id === params.starting_after) + 1;
    const data = items.slice(start, start + limit);
    return { object: "list", url, has_more: start + limit < items.length, data };
  }

  const newestFirst = (list: StripeObject[]) => [...list].reverse();

  /** A price as Stripe shows it: `tiers` only when asked for with expand. */
  function showPrice(price: StripeObject, withTiers: boolean): StripeObject {
    const { tiers, ...rest } = price;
    return withTiers ? { ...price } : rest;
  }

  function priceFrom(params: StripeObject): StripeObject {
    const currency = required(params, "currency");
    const recurring = params.recurring ?? null;
    if (recurring && !["day", "week", "month", "year"].includes(recurring.interval)) throw invalid("Invalid recurring[interval]", "recurring[interval]");
    const usageType = recurring?.usage_type ?? "licensed";
    if (usageType === "metered") {
      if (!recurring.meter) throw invalid("Metered prices must be attached to a meter.", "recurring[meter]");
      const meter = find(state.meters, "billing.meter", recurring.meter);
      if (meter.status !== "active") throw invalid("You can't attach a deactivated meter to a price.", "recurring[meter]");
    }
    const scheme = params.billing_scheme ?? "per_unit";
    let tiers: StripeObject[] | null = null;
    let unitAmount: number | null = null;
    let unitDecimal: string | null = null;
    if (scheme === "tiered") {
      if (params.tiers_mode !== "graduated" && params.tiers_mode !== "volume") throw invalid("Missing required param: tiers_mode.", "tiers_mode");
      if (!Array.isArray(params.tiers) || params.tiers.length === 0) throw invalid("Missing required param: tiers.", "tiers");
      tiers = params.tiers.map((t: StripeObject, i: number) => {
        const last = i === params.tiers.length - 1;
        if (last !== (t.up_to === "inf")) throw invalid("Only the last tier may (and must) have up_to=inf.", `tiers[${i}][up_to]`);
        const decimal = t.unit_amount_decimal !== undefined ? Stripe.Decimal.from(t.unit_amount_decimal).toString() : String(integer(t.unit_amount ?? "0", `tiers[${i}][unit_amount]`));
        return { flat_amount: null, flat_amount_decimal: null, unit_amount: t.unit_amount !== undefined ? Number(t.unit_amount) : null, unit_amount_decimal: decimal, up_to: last ? null : integer(t.up_to, `tiers[${i}][up_to]`) };
      });
    } else {
      if (params.unit_amount !== undefined && params.unit_amount_decimal !== undefined) throw invalid("You may only specify one of these parameters: unit_amount, unit_amount_decimal.", "unit_amount");
      if (params.unit_amount !== undefined) unitAmount = integer(params.unit_amount, "unit_amount");
      else if (params.unit_amount_decimal !== undefined) unitDecimal = Stripe.Decimal.from(params.unit_amount_decimal).toString();
      else throw invalid("Missing required param: unit_amount.", "unit_amount", "parameter_missing");
      unitDecimal ??= String(unitAmount);
      if (Number.isInteger(Number(unitDecimal))) unitAmount = Number(unitDecimal);
    }
    let product: string;
    if (params.product) product = find(state.products, "product", params.product).id;
    else if (params.product_data) {
      const made = { id: newId("prod"), object: "product", active: true, created: now(), name: required(params.product_data, "name"), unit_label: params.product_data.unit_label ?? null, metadata: params.product_data.metadata ?? {} };
      state.products.push(made);
      product = made.id;
    } else throw invalid("Missing required param: product.", "product", "parameter_missing");
    if (params.lookup_key) {
      const holder = state.prices.find((p) => p.lookup_key === params.lookup_key);
      if (holder && !bool(params.transfer_lookup_key)) throw invalid(`A price (\`${holder.id}\`) already uses that lookup key.`, "lookup_key");
      if (holder) holder.lookup_key = null;
    }
    return {
      id: newId("price"), object: "price", active: true, billing_scheme: scheme, created: now(), currency, livemode: false,
      lookup_key: params.lookup_key ?? null, metadata: params.metadata ?? {}, nickname: params.nickname ?? null, product,
      recurring: recurring ? { interval: recurring.interval, interval_count: 1, meter: recurring.meter ?? null, usage_type: usageType } : null,
      tax_behavior: "unspecified", tiers_mode: scheme === "tiered" ? params.tiers_mode : null, tiers,
      type: recurring ? "recurring" : "one_time", unit_amount: unitAmount, unit_amount_decimal: unitDecimal,
    };
  }

  function subscriptionItems(subscriptionId: string, entries: StripeObject[]): StripeObject[] {
    return entries.map((entry) => {
      const price = find(state.prices, "price", required(entry, "price"));
      if (!price.active) throw invalid(`The price specified is inactive: ${price.id}`, "items");
      return { id: newId("si"), object: "subscription_item", created: now(), metadata: {}, price: showPrice(price, false), subscription: subscriptionId, ...(price.recurring?.usage_type === "licensed" ? { quantity: 1 } : {}) };
    });
  }

  function checkItems(items: StripeObject[]): void {
    const prices = items.map((i) => i.price.id);
    if (new Set(prices).size !== prices.length) throw invalid("Cannot add multiple subscription items with the same price.", "items");
    if (items.length > 20) throw invalid("A subscription can have at most 20 items.", "items");
  }

  function handle(method: string, path: string, params: StripeObject): StripeObject {
    let m: RegExpMatchArray | null;
    // Billing meters
    if (method === "GET" && path === "/v1/billing/meters") {
      const status = params.status;
      return page(path, newestFirst(state.meters).filter((x) => !status || x.status === status), params);
    }
    if (method === "POST" && path === "/v1/billing/meters") {
      const eventName = required(params, "event_name");
      if (state.meters.some((x) => x.event_name === eventName && x.status === "active")) throw invalid(`An active meter with event_name ${eventName} already exists.`, "event_name");
      const formula = params.default_aggregation?.formula;
      if (!["sum", "count", "last"].includes(formula)) throw invalid("Invalid default_aggregation[formula]", "default_aggregation[formula]");
      const meter = {
        id: newId("mtr"), object: "billing.meter", created: now(), updated: now(), livemode: false, status: "active", status_transitions: { deactivated_at: null },
        display_name: required(params, "display_name"), event_name: eventName, event_time_window: null, default_aggregation: { formula },
        customer_mapping: params.customer_mapping ?? { type: "by_id", event_payload_key: "stripe_customer_id" },
        value_settings: params.value_settings ?? { event_payload_key: "value" },
      };
      state.meters.push(meter);
      return meter;
    }
    if (method === "POST" && (m = path.match(/^\/v1\/billing\/meters\/([^/]+)\/(reactivate|deactivate)$/))) {
      const meter = find(state.meters, "billing.meter", m[1]);
      meter.status = m[2] === "reactivate" ? "active" : "inactive";
      meter.status_transitions = { deactivated_at: m[2] === "reactivate" ? null : now() };
      return meter;
    }
    // Meter events
    if (method === "POST" && path === "/v1/billing/meter_events") {
      const eventName = required(params, "event_name");
      const payload = params.payload ?? {};
      const identifier = params.identifier ?? newId("mevt");
      const timestamp = params.timestamp !== undefined ? integer(params.timestamp, "timestamp") : now();
      if (timestamp < now() - 35 * 86_400) throw invalid("Timestamp must be within the past 35 calendar days.", "timestamp");
      if (timestamp > now() + 300) throw invalid("Timestamp must not be more than 5 minutes in the future.", "timestamp");
      if (typeof payload.stripe_customer_id !== "string" || typeof payload.value !== "string") throw invalid("payload must contain stripe_customer_id and value.", "payload");
      if (!/^-?\d+(\.\d+)?$/.test(payload.value)) throw invalid(`Invalid value: ${payload.value}`, "payload[value]");
      if (state.meterEvents.some((e) => e.identifier === identifier)) throw invalid(`An event already exists with identifier ${identifier}.`);
      const event = { object: "billing.meter_event", created: now(), event_name: eventName, identifier, livemode: false, payload, timestamp };
      state.meterEvents.push(event);
      return event;
    }
    // Prices
    if (method === "GET" && path === "/v1/prices") {
      const keys: string[] | undefined = params.lookup_keys;
      if (keys && keys.length > 10) throw invalid("You can specify up to 10 lookup_keys.", "lookup_keys");
      const withTiers = (params.expand ?? []).includes("data.tiers");
      const matching = newestFirst(state.prices).filter((p) => (!keys || keys.includes(p.lookup_key)) && (params.active === undefined || p.active === bool(params.active)));
      const list = page(path, matching, params);
      return { ...list, data: list.data.map((p: StripeObject) => showPrice(p, withTiers)) };
    }
    if (method === "POST" && path === "/v1/prices") {
      const price = priceFrom(params);
      state.prices.push(price);
      return showPrice(price, false);
    }
    // Customers
    if (method === "GET" && path === "/v1/customers/search") {
      const query = required(params, "query");
      const q = query.match(/^metadata\['([^']+)'\]:'([^']*)'$/);
      if (!q) throw invalid(`This fake answers only metadata['key']:'value' searches, not ${query}`, "query");
      const data = newestFirst(state.customers).filter((c) => c.metadata?.[q[1]] === q[2]);
      return { object: "search_result", url: path, has_more: false, next_page: null, data: data.slice(0, params.limit ? integer(params.limit, "limit") : 10) };
    }
    if (method === "POST" && path === "/v1/customers") {
      const customer = { id: newId("cus"), object: "customer", created: now(), livemode: false, name: params.name ?? null, email: params.email ?? null, metadata: params.metadata ?? {}, invoice_settings: { default_payment_method: null } };
      state.customers.push(customer);
      return customer;
    }
    if ((m = path.match(/^\/v1\/customers\/([^/]+)$/))) {
      const customer = find(state.customers, "customer", m[1]);
      if (method === "GET") return customer;
      if (params.name !== undefined) customer.name = params.name;
      if (params.email !== undefined) customer.email = params.email;
      if (params.metadata) customer.metadata = { ...customer.metadata, ...params.metadata };
      const method_ = params.invoice_settings?.default_payment_method;
      if (method_ !== undefined) {
        if (!state.setupIntents.some((s) => s.payment_method === method_ && s.customer === customer.id)) throw invalid(`The payment method \`${method_}\` is not attached to this customer.`, "invoice_settings[default_payment_method]");
        customer.invoice_settings = { ...customer.invoice_settings, default_payment_method: method_ };
      }
      return customer;
    }
    // Subscriptions
    if (method === "GET" && path === "/v1/subscriptions") {
      const status = params.status;
      const matching = newestFirst(state.subscriptions).filter((s) => (!params.customer || s.customer === params.customer) && (status === "all" || (status ? s.status === status : s.status !== "canceled")));
      return page(path, matching, params);
    }
    if (method === "POST" && path === "/v1/subscriptions") {
      const customer = find(state.customers, "customer", required(params, "customer")).id;
      const id = newId("sub");
      const items = subscriptionItems(id, params.items ?? []);
      if (items.length === 0) throw invalid("Missing required param: items.", "items", "parameter_missing");
      checkItems(items);
      const anchor = params.billing_cycle_anchor_config;
      const subscription = {
        id, object: "subscription", created: now(), livemode: false, customer, status: "active", currency: "usd", collection_method: "charge_automatically",
        billing_cycle_anchor: anchor ? firstOfNextMonth() : now(), cancel_at_period_end: false, metadata: params.metadata ?? {},
        items: { object: "list", url: `/v1/subscription_items?subscription=${id}`, has_more: false, data: items },
      };
      state.subscriptions.push(subscription);
      return subscription;
    }
    if ((m = path.match(/^\/v1\/subscriptions\/([^/]+)$/))) {
      const subscription = find(state.subscriptions, "subscription", m[1]);
      if (method === "GET") return subscription;
      if (method === "DELETE") {
        subscription.status = "canceled";
        return subscription;
      }
      if (subscription.status === "canceled") throw invalid("A canceled subscription can only update its cancellation_details and metadata.");
      if (params.items) {
        let items = [...subscription.items.data];
        for (const [i, change] of (params.items as StripeObject[]).entries()) {
          if (change.id) {
            const at = items.findIndex((item) => item.id === change.id);
            if (at < 0) throw invalid(`Invalid subscription item: ${change.id}`, `items[${i}][id]`);
            if (bool(change.deleted)) items = items.filter((item) => item.id !== change.id);
            else if (change.price) items[at] = { ...items[at], ...subscriptionItems(subscription.id, [{ price: change.price }])[0], id: change.id };
          } else items.push(...subscriptionItems(subscription.id, [change]));
        }
        checkItems(items);
        subscription.items = { ...subscription.items, data: items };
      }
      if (params.metadata) subscription.metadata = { ...subscription.metadata, ...params.metadata };
      return subscription;
    }
    // Checkout, billing portal, setup intents
    if (method === "POST" && path === "/v1/checkout/sessions") {
      const mode = required(params, "mode");
      if (mode === "setup" && !params.currency) throw invalid("currency is required in setup mode when payment method types are chosen automatically.", "currency");
      const customer = params.customer ? find(state.customers, "customer", params.customer).id : null;
      const id = newId("cs_test");
      const session = { id, object: "checkout.session", created: now(), livemode: false, mode, customer, currency: params.currency ?? null, status: "open", setup_intent: null, success_url: params.success_url ?? null, cancel_url: params.cancel_url ?? null, url: `https://checkout.stripe.com/c/pay/${id}` };
      state.checkoutSessions.push(session);
      return session;
    }
    if (method === "POST" && path === "/v1/billing_portal/sessions") {
      const customer = find(state.customers, "customer", required(params, "customer")).id;
      const id = newId("bps");
      const session = { id, object: "billing_portal.session", created: now(), livemode: false, customer, return_url: params.return_url ?? null, url: `https://billing.stripe.com/p/session/${id}` };
      state.portalSessions.push(session);
      return session;
    }
    if (method === "GET" && (m = path.match(/^\/v1\/setup_intents\/([^/]+)$/))) return find(state.setupIntents, "setup_intent", m[1]);
    // Invoices
    if (method === "GET" && path === "/v1/invoices") {
      const gte = params.created?.gte !== undefined ? integer(params.created.gte, "created[gte]") : -Infinity;
      const matching = newestFirst(state.invoices).filter((inv) => (!params.customer || inv.customer === params.customer) && inv.created >= gte);
      return page(path, matching, params);
    }
    if ((m = path.match(/^\/v1\/invoices\/([^/]+)$/))) {
      const invoice = find(state.invoices, "invoice", m[1]);
      if (method === "POST" && params.metadata) invoice.metadata = { ...invoice.metadata, ...params.metadata };
      return invoice;
    }
    throw new StripeFailure(404, { type: "invalid_request_error", message: `Unrecognized request URL (${method}: ${path}). This fake Stripe answers only what deck uses.` });
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://fake-stripe");
      const method = req.method ?? "GET";
      const body = Buffer.concat(chunks).toString("utf8");
      const query = url.search.replace(/^\?/, "");
      const key = typeof req.headers["idempotency-key"] === "string" ? req.headers["idempotency-key"] : null;
      const answer = (status: number, text: string, replayed = false) => {
        requests.push({ method, path: url.pathname, query, body, idempotencyKey: key, status });
        res.writeHead(status, { "content-type": "application/json", "request-id": `req_fake${requests.length}`, ...(replayed ? { "idempotent-replayed": "true" } : {}) });
        res.end(text);
      };
      if (!/^Bearer sk_(test|live)_\S+$/.test(String(req.headers.authorization ?? ""))) {
        answer(401, JSON.stringify({ error: { type: "invalid_request_error", message: "Invalid API Key provided." } }));
        return;
      }
      const fingerprint = `${method} ${url.pathname} ${body}`;
      if (method === "POST" && key) {
        const seen = idempotent.get(key);
        if (seen && seen.fingerprint !== fingerprint) {
          answer(400, JSON.stringify({ error: { type: "idempotency_error", message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.` } }));
          return;
        }
        if (seen) return answer(seen.status, seen.body, true);
      }
      const params = decodeStripeForm(method === "GET" || method === "DELETE" ? query : body);
      let status = 200;
      let text: string;
      const injected = failures.map((f) => f({ method, path: url.pathname, params })).find((s) => s !== undefined);
      try {
        if (injected !== undefined) throw new StripeFailure(injected, { type: "api_error", message: `The fake Stripe was told to fail this request with ${injected}.` });
        text = JSON.stringify(handle(method, url.pathname, params));
      } catch (e) {
        if (!(e instanceof StripeFailure)) throw e;
        status = e.status;
        text = JSON.stringify({ error: e.body });
      }
      // Stripe keeps the first answer to a key, errors included, except those worth retrying.
      if (method === "POST" && key && status < 500 && status !== 429) idempotent.set(key, { fingerprint, status, body: text });
      answer(status, text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    host: "127.0.0.1",
    port,
    protocol: "http",
    secretKey: "sk_test_fake_deck",
    state,
    requests,
    paramsOf(method, path) {
      return requests
        .filter((r) => r.method === method && (typeof path === "string" ? r.path === path : path.test(r.path)))
        .map((r) => decodeStripeForm(method === "GET" || method === "DELETE" ? r.query : r.body));
    },
    failWhen(match) {
      failures.push(match);
    },
    issueInvoice(input) {
      const subscription = newestFirst(state.subscriptions).find((s) => s.customer === input.customer && s.status !== "canceled");
      const id = newId("in");
      const status = input.status ?? "open";
      const invoice = {
        id, object: "invoice", created: now(), livemode: false, customer: input.customer, status, currency: "usd", metadata: {},
        period_start: input.periodStart, period_end: input.periodEnd, amount_due: input.amountDue, amount_paid: status === "paid" ? input.amountDue : 0,
        hosted_invoice_url: status === "draft" ? null : `https://invoice.stripe.com/i/${id}`,
        parent: subscription ? { type: "subscription_details", quote_details: null, subscription_details: { metadata: subscription.metadata, subscription: subscription.id } } : null,
      };
      state.invoices.push(invoice);
      return invoice;
    },
    completeCheckout(sessionId) {
      const session = find(state.checkoutSessions, "checkout.session", sessionId);
      const intent = { id: newId("seti"), object: "setup_intent", created: now(), livemode: false, customer: session.customer, payment_method: newId("pm"), status: "succeeded", usage: "off_session" };
      state.setupIntents.push(intent);
      Object.assign(session, { status: "complete", setup_intent: intent.id });
      return session;
    },
    event(type, object, created = now()) {
      return { id: newId("evt"), object: "event", api_version: Stripe.API_VERSION, created, livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null }, type, data: { object: structuredClone(object) } };
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

function firstOfNextMonth(): number {
  const d = new Date();
  return Math.floor(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) / 1000);
}
