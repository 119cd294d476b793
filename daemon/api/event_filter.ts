/**
 * Which events a stream client asked for (`?server=`, `?event=`, `?call=`): one
 * definition applied twice, as SQL when the client replays from the store and in
 * memory when it follows live.
 *
 * Event names match case-insensitively (AMI names are case-insensitive: `hangup` is
 * `Hangup`). A call matches by `linkedid` or `uniqueid`: the `call_id` of `calls` is the
 * oldest linkedid of the call, so `?call=<call_id>` also follows a call still in
 * progress (not yet in `calls`); the uniqueids and linkedids of the call's legs known
 * at connect time (`call_legs`) are added, so transfers joined into the call match too.
 *
 * @module
 */
import { type SQL, sql } from "drizzle-orm";
import { selectRows, type SqlExecutor } from "../../queries/db.ts";

/** One event as the stream filters it. */
export interface FilterableEvent {
  readonly server: string;
  readonly event: string;
  readonly uniqueid: string | null;
  readonly linkedid: string | null;
}

/** A stream filter; an absent field matches everything. */
export interface EventFilter {
  readonly server?: string;
  /** Event names, lower case. */
  readonly events?: ReadonlySet<string>;
  /** Linkedids and uniqueids of the call. */
  readonly call?: ReadonlySet<string>;
}

/** True when the filter lets everything through. */
export function isEmptyFilter(filter: EventFilter): boolean {
  return filter.server === undefined && filter.events === undefined && filter.call === undefined;
}

/** Whether `event` passes `filter`. */
export function matchesFilter(filter: EventFilter, event: FilterableEvent): boolean {
  if (filter.server !== undefined && event.server !== filter.server) return false;
  if (filter.events !== undefined && !filter.events.has(event.event.toLowerCase())) return false;
  if (filter.call !== undefined) {
    const linked = event.linkedid !== null && filter.call.has(event.linkedid);
    if (!linked && !(event.uniqueid !== null && filter.call.has(event.uniqueid))) return false;
  }
  return true;
}

/** `and ...` conditions of `filter` on `ami_events` columns (empty SQL when none). */
export function filterSql(filter: EventFilter): SQL {
  const parts: SQL[] = [];
  if (filter.server !== undefined) parts.push(sql` and server = ${filter.server}`);
  if (filter.events !== undefined) {
    parts.push(
      sql` and lower(event) in (${sql.join([...filter.events].map((e) => sql`${e}`), sql`, `)})`,
    );
  }
  if (filter.call !== undefined) {
    const ids = sql.join([...filter.call].map((id) => sql`${id}`), sql`, `);
    parts.push(sql` and (linkedid in (${ids}) or uniqueid in (${ids}))`);
  }
  return sql.join(parts, sql``);
}

/** The ids `?call=` matches: the value itself plus its legs' uniqueids and linkedids. */
export async function callIds(db: SqlExecutor, call: string): Promise<Set<string>> {
  const rows = await selectRows<{ uniqueid: string; linkedid: string | null }>(
    db,
    sql`select l.uniqueid, e.linkedid
          from call_legs l
          left join lateral (select linkedid from ami_events
                              where uniqueid = l.uniqueid and linkedid is not null
                              limit 1) e on true
         where l.call_id = ${call}
            or l.call_id = (select call_id from call_legs where uniqueid = ${call} limit 1)`,
  );
  const ids = new Set([call]);
  for (const row of rows) {
    ids.add(row.uniqueid);
    if (row.linkedid !== null) ids.add(row.linkedid);
  }
  return ids;
}
