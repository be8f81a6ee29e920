export * from "./db.ts";
export * from "./users.ts";
export * from "./apps.ts";
export * from "./releases.ts";
export * from "./accounts.ts";
export * from "./auth.ts";
export * from "./oauth.ts";
export * from "./webhooks.ts";
