export { createApiServer } from "./http-server.ts";
