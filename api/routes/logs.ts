/** API routes for logs. */
export {};
