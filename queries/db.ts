/**
 * The one place that runs raw SQL the same way on both database drivers.
 *
 * DAMI talks to PostgreSQL through drizzle with either postgres.js or PGlite. Their
 * `execute()` results differ (postgres.js gives an array of rows, PGlite an object with
 * `rows`; `bigint` comes back as a string from one and a number from the other), so
 * queries cast what they select (`::int`, `::float8`, `::text`) and read rows with
 * {@linkcode selectRows}.
 *
 * @example
 * ```ts ignore
 * import { sql } from "drizzle-orm";
 * import { selectRows } from "./db.ts";
 * const rows = await selectRows<{ n: number }>(store.db, sql`select count(*)::int as n from calls`);
 * ```
 *
 * @module
 */
import type { SQLWrapper } from "drizzle-orm";

/** The slice of a drizzle database (postgres.js or PGlite driver) that queries use. */
export interface SqlExecutor {
  /** Runs one statement; parameters are bound by drizzle's `sql` template. */
  execute(query: SQLWrapper): PromiseLike<unknown>;
}

/** A drizzle database that can also open a transaction. */
export interface SqlDatabase extends SqlExecutor {
  /** Runs `fn` in one transaction (committed when it resolves, rolled back when it throws). */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
}

/** A value as a query row carries it once normalised. */
export type SqlValue = string | number | boolean | null;

/** Runs a statement and returns its rows, whichever driver ran it. */
export async function selectRows<Row>(db: SqlExecutor, query: SQLWrapper): Promise<Row[]> {
  const result = await db.execute(query);
  // postgres.js returns an Array subclass (with `count`, `columns`): copy to a plain array.
  if (Array.isArray(result)) return Array.from(result) as Row[];
  const rows = (result as { rows?: unknown } | null)?.rows;
  return Array.isArray(rows) ? rows as Row[] : [];
}
