export { loadConfig, ConfigError, SETTINGS, parseByteSize } from "./config.ts";
export type { DeckConfig, LoadConfigOptions } from "./config.ts";
