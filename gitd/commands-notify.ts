import { defineCommands } from "./command-kit.ts";

/** SSH commands for notification channels. */
defineCommands({});
