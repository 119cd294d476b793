/**
 * The database schema, the single source of truth for table names.
 * `drizzle-kit generate` reads this module to write `migrations/`.
 *
 * @module
 */
export * from "./events.ts";
export * from "./projections.ts";
export * from "./cluster.ts";
