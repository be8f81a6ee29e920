export * from "./db.ts";
export * from "./users.ts";
export * from "./apps.ts";
export * from "./releases.ts";
