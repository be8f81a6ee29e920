export * from "./app-name.ts";
export * from "./procfile.ts";
export * from "./errors.ts";
export type * from "./interfaces.ts";
export { IMAGE_REF_FILE } from "./interfaces.ts";
export * from "./policy.ts";
export * from "./mask.ts";
export * from "./slug-env.ts";
export * from "./usage.ts";
