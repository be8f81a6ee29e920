/** API routes for monitoring. */
export {};
