import { z } from "zod/v4";

/** Shared request pieces. Text fields are bounded; objects refuse unknown fields. */
export const appName = z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, "an app name: 1-63 lowercase letters, digits and dashes, starting with a letter");
export const appParams = z.object({ app: appName }).strict();
export const orgSlug = z.string().regex(/^[a-z][a-z0-9-]{1,38}$/, "an organisation slug");
export const orgParams = z.object({ org: orgSlug }).strict();
export const email = z.string().max(254).regex(/^[^\s@]+@[^\s@]+$/, "an email address");
export const role = z.enum(["owner", "admin", "member", "viewer"]);

export const page = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  before: z.coerce.number().int().positive().optional(),
}).strict();

export const offsetPage = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
}).strict();

export const configKey = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "a config key of letters, digits and _");

export const outputLines = z.object({ output: z.array(z.string()) });
