import { defineCommands } from "./command-kit.ts";

/** SSH commands for metrics, uptime and alerts. */
defineCommands({});
