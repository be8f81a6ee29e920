export * from "./app-name.ts";
export * from "./procfile.ts";
export * from "./errors.ts";
export type * from "./interfaces.ts";
export * from "./policy.ts";
export * from "./mask.ts";
