export { loadConfig, ConfigError, SETTINGS, SANDBOX_UID_RANGE, parseByteSize } from "./config.ts";
export type { DeckConfig, LoadConfigOptions } from "./config.ts";
