export { loadConfig, ConfigError, SETTINGS } from "./config.ts";
export type { DeckConfig, LoadConfigOptions } from "./config.ts";
