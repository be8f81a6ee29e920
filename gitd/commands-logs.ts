import { defineCommands } from "./command-kit.ts";

/** SSH commands for log search and drains. */
defineCommands({});
