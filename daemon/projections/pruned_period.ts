/**
 * What a rebuild of the projections keeps when retention has dropped raw events.
 *
 * `ami_events_pruned` names the days whose events are gone. Everything projected from
 * before the end of the last of them (the boundary) cannot be derived again, so a
 * rebuild keeps it: every call that started before the boundary keeps its `calls`,
 * `call_legs`, `queue_calls` and `queue_attempts` rows exactly as they were (even when
 * some of its events are after the boundary: rebuilt from those alone it would be
 * partial), and `endpoint_status` samples before the boundary stay. Everything else is
 * rebuilt from the events that remain.
 *
 * The kept rows are set aside in `projection_kept_*` tables for the length of the
 * rebuild (it spans many transactions) and put back over the rebuilt rows at the end.
 * If a rebuild is interrupted, the next one finds the tables and uses them as they are.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { selectRows, type SqlExecutor } from "../../queries/db.ts";

/** The call tables, each with its key. */
const CALL_TABLES = [
  { table: "calls", key: ["server", "call_id"] },
  { table: "call_legs", key: ["server", "uniqueid"] },
  { table: "queue_calls", key: ["server", "uniqueid", "queue", "joined_at"] },
  { table: "queue_attempts", key: ["server", "uniqueid"] },
] as const;

const kept = (table: string) => `projection_kept_${table}`;

/** The end of the last pruned day (ISO text), or null when no raw event was ever dropped. */
export async function prunedBoundary(tx: SqlExecutor): Promise<string | null> {
  const [row] = await selectRows<{ boundary: string | null }>(
    tx,
    sql`select to_char((max(day) + 1)::timestamp, 'YYYY-MM-DD"T00:00:00Z"') as boundary
        from ami_events_pruned`,
  );
  return row.boundary;
}

/**
 * Sets the pruned period's call rows aside (unless an interrupted rebuild already did)
 * and empties the projections like a full rebuild, except the `endpoint_status` samples
 * before `boundary`.
 */
export async function setAsidePrunedPeriod(tx: SqlExecutor, boundary: string): Promise<void> {
  const [{ present }] = await selectRows<{ present: boolean }>(
    tx,
    sql.raw(`select to_regclass('${kept("calls")}') is not null as present`),
  );
  if (!present) {
    await tx.execute(sql`create table ${sql.raw(kept("calls"))} as
      select * from calls where started_at < ${boundary}::timestamptz`);
    for (const { table } of CALL_TABLES.slice(1)) {
      await tx.execute(sql.raw(`create table ${kept(table)} as
        select t.* from ${table} t join ${kept("calls")} k using (server, call_id)`));
    }
  }
  await tx.execute(sql.raw(
    `truncate calls, call_legs, queue_calls, queue_attempts, projection_nodes, projection_event_refs`,
  ));
  await tx.execute(sql`delete from endpoint_status where observed_at >= ${boundary}::timestamptz`);
}

/** Puts the set-aside rows back over the rebuilt ones and drops the side tables. */
export async function restorePrunedPeriod(tx: SqlExecutor): Promise<void> {
  const [{ present }] = await selectRows<{ present: boolean }>(
    tx,
    sql.raw(`select to_regclass('${kept("calls")}') is not null as present`),
  );
  if (!present) return;
  for (const { table, key } of CALL_TABLES) {
    const on = key.map((c) => `t.${c} = k.${c}`).join(" and ");
    // Rows rebuilt from a kept call's later events, under its key or under its call id.
    await tx.execute(sql.raw(`delete from ${table} t using ${kept(table)} k where ${on}`));
    await tx.execute(sql.raw(
      `delete from ${table} t using ${kept("calls")} k
       where t.server = k.server and t.call_id = k.call_id`,
    ));
    await tx.execute(sql.raw(`insert into ${table} select * from ${kept(table)}`));
  }
  for (const { table } of CALL_TABLES) await tx.execute(sql.raw(`drop table ${kept(table)}`));
}
