/**
 * Bulk writes of projection rows: one statement per table, the rows passed as a single
 * JSON parameter and expanded by `jsonb_to_recordset`, so a batch of thousands of rows is
 * one round trip on both drivers and never nears PostgreSQL's 65535-parameter limit.
 * Column names and types come from the drizzle table (schema/ is the one place that
 * knows them).
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { getTableConfig, type PgTable } from "drizzle-orm/pg-core";
import type { SqlExecutor } from "../../queries/db.ts";

/** A value JSON can carry (a `jsonb` column takes any of them). */
export type JsonValue = string | number | boolean | null | JsonValue[] | {
  [key: string]: JsonValue;
};

/** A row keyed by column name (as in the database). */
export type ColumnRecord = Record<string, JsonValue>;

/** What to do with a row whose key exists. */
export type OnConflict = "update" | "nothing";

/**
 * Inserts `records` into `table`; columns missing from a record are null. `conflict`
 * names the key columns; `"update"` overwrites every other column.
 */
export async function insertRecords(
  tx: SqlExecutor,
  table: PgTable,
  records: readonly ColumnRecord[],
  conflict: { columns: readonly string[]; action: OnConflict },
): Promise<void> {
  if (records.length === 0) return;
  const config = getTableConfig(table);
  const columns = config.columns.filter((c) =>
    // Generated (identity) and defaulted columns the records do not mention stay default.
    Object.hasOwn(records[0], c.name)
  );
  const definitions = columns.map((c) => `${quoteIdent(c.name)} ${c.getSQLType()}`).join(", ");
  const names = columns.map((c) => quoteIdent(c.name)).join(", ");
  const keys = conflict.columns.map(quoteIdent).join(", ");
  const updates = columns.filter((c) => !conflict.columns.includes(c.name))
    .map((c) => `${quoteIdent(c.name)} = excluded.${quoteIdent(c.name)}`).join(", ");
  const action = conflict.action === "nothing" || updates === ""
    ? "do nothing"
    : `do update set ${updates}`;
  await tx.execute(sql`insert into ${table} (${sql.raw(names)})
    select ${sql.raw(names)} from jsonb_to_recordset(${JSON.stringify(records)}::jsonb)
      as r(${sql.raw(definitions)})
    on conflict (${sql.raw(keys)}) ${sql.raw(action)}`);
}

/** Column and key names come from schema/, never from input; quoting keeps them exact. */
function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Microseconds since the epoch → ISO-8601 with microseconds (what `timestamptz` keeps). */
export function isoMicros(us: number): string {
  const whole = Math.round(us);
  const ms = Math.floor(whole / 1000);
  const rest = whole - ms * 1000;
  return new Date(ms).toISOString().replace("Z", `${String(rest).padStart(3, "0")}Z`);
}

/** {@linkcode isoMicros} for a nullable time. */
export function isoOrNull(us: number | null): string | null {
  return us === null ? null : isoMicros(us);
}
