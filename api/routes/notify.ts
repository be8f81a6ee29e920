/** API routes for notify. */
export {};
