/**
 * Reading committed events from `ami_events` for the stream: keyset pages (`id > after`
 * in id order, `limit n`, never OFFSET, so memory stays flat however far back a client
 * resumes) and what it takes to know that no id below a point can still appear.
 *
 * ## Why `id > last` alone is not enough
 *
 * `ami_events.id` is an identity: its value is taken from the sequence when the row is
 * inserted, not when the transaction commits. Two writers (two daemon instances on one
 * database, a restore, a hand-written INSERT) can interleave: transaction A takes id 10,
 * B takes id 11 and commits, a reader sees 11 and not 10, then A commits. A stream that
 * had sent 11 and remembered "last = 11" would never send 10. Ids are also skipped for
 * good (a rolled-back write, a retried batch), so a hole may never fill.
 *
 * The rule used here: a row is sent only when every id below it is settled, i.e. either
 * visible or certain never to appear. A hole is certain never to fill once every
 * transaction that was writing to `ami_events` when the hole was seen has ended, and a
 * later read (a newer snapshot) still misses it. Any transaction that could still fill
 * a hole holds `ROW EXCLUSIVE` on `ami_events` from before it took the id (INSERT and
 * COPY lock the table when they open it, before a row's default is computed) until it
 * ends, so {@linkcode eventWriters}, asked after the read that saw the hole, lists it
 * unless it already ended, and a read started after those writers ended sees its rows.
 * Unrelated transactions elsewhere in the cluster do not hold the stream back.
 *
 * @module
 */
import { getTableName, type SQL, sql } from "drizzle-orm";
import { selectRows, type SqlExecutor } from "../../queries/db.ts";
import { amiEvents } from "../../schema/mod.ts";
import { type EventFilter, filterSql } from "./event_filter.ts";

const EVENTS = sql.raw(getTableName(amiEvents));

/** One committed event, with its stream message body (`data:`) built by the database. */
export interface LogEvent {
  readonly id: number;
  readonly server: string;
  readonly session_id: string;
  readonly event: string;
  readonly uniqueid: string | null;
  readonly linkedid: string | null;
  /** `{ id, server, session_id, seq, received_at, event, fields }` as JSON text. */
  readonly data: string;
}

interface LogRow {
  id: string;
  server: string;
  session_id: string;
  event: string;
  uniqueid: string | null;
  linkedid: string | null;
  data: string;
}

/**
 * The JSON of one event: built in SQL so that `fields` goes from `jsonb` to the socket
 * without being parsed and serialised again; `received_at` as ISO 8601 with its offset.
 */
export const EVENT_JSON: SQL = sql`json_build_object(
  'id', id, 'server', server, 'session_id', session_id, 'seq', seq,
  'received_at', received_at, 'event', event, 'fields', fields)::text`;

/**
 * Up to `limit` events with `after < id <= upTo` (no upper bound when `upTo` is
 * undefined) passing `filter`, in id order.
 */
export async function readEvents(
  db: SqlExecutor,
  after: number,
  upTo: number | undefined,
  filter: EventFilter,
  limit: number,
): Promise<LogEvent[]> {
  const bound: SQL = upTo === undefined ? sql`` : sql` and id <= ${String(upTo)}::bigint`;
  const rows = await selectRows<LogRow>(
    db,
    sql`select id::text as id, server, session_id, event, uniqueid, linkedid, ${EVENT_JSON} as data
          from ${EVENTS}
         where id > ${String(after)}::bigint${bound}${filterSql(filter)}
         order by ${EVENTS}.id limit ${limit}`,
  );
  return rows.map((r) => ({ ...r, id: Number(r.id) }));
}

/** A page of the replay: its stream messages as one text. */
export interface EventPage {
  /** Events in the page. */
  readonly count: number;
  /** The id of its last event (undefined when empty). */
  readonly last: number | undefined;
  /** Their stream messages (`id:`, `event: ami`, `data:`), one after the other. */
  readonly text: string;
}

/**
 * Like {@linkcode readEvents}, but the database builds the page's stream messages as
 * one text: a replay of a million events then costs one string per page on this side,
 * not an object and a string per event.
 */
export async function readEventPage(
  db: SqlExecutor,
  after: number,
  upTo: number,
  filter: EventFilter,
  limit: number,
): Promise<EventPage> {
  const [row] = await selectRows<{ count: number; last: string | null; text: string | null }>(
    db,
    sql`select count(*)::int as count, max(id)::text as last,
               string_agg('id: ' || id || E'\nevent: ami\ndata: ' || data || E'\n\n', ''
                          order by id) as text
          from (select id, ${EVENT_JSON} as data from ${EVENTS}
                 where id > ${String(after)}::bigint and id <= ${String(upTo)}::bigint${
      filterSql(filter)
    }
                 order by ${EVENTS}.id limit ${limit}) page`,
  );
  return {
    count: row?.count ?? 0,
    last: row?.last == null ? undefined : Number(row.last),
    text: row?.text ?? "",
  };
}

/** The smallest and largest id held, or undefined when the log is empty. */
export async function idRange(db: SqlExecutor): Promise<{ min: number; max: number } | undefined> {
  const [row] = await selectRows<{ min: string | null; max: string | null }>(
    db,
    sql`select min(id)::text as min, max(id)::text as max from ${EVENTS}`,
  );
  return row?.min == null || row.max == null
    ? undefined
    : { min: Number(row.min), max: Number(row.max) };
}

/** The first id received at or after `at` (a bound `timestamptz`), or undefined. */
export async function firstIdAt(db: SqlExecutor, at: SQL): Promise<number | undefined> {
  const [row] = await selectRows<{ id: string | null }>(
    db,
    sql`select min(id)::text as id from ${EVENTS} where received_at >= ${at}`,
  );
  return row?.id == null ? undefined : Number(row.id);
}

/** The transactions writing to `ami_events` now (their virtual transaction ids). */
export async function eventWriters(db: SqlExecutor): Promise<string[]> {
  const rows = await selectRows<{ vxid: string }>(
    db,
    // The table and, once it is partitioned, its partitions (a write straight into one).
    sql`select distinct virtualtransaction as vxid from pg_locks
         where locktype = 'relation' and mode = 'RowExclusiveLock'
           and relation in (select ${getTableName(amiEvents)}::regclass
                            union all
                            select inhrelid from pg_inherits
                             where inhparent = ${getTableName(amiEvents)}::regclass)
           and pid is distinct from pg_backend_pid()`,
  );
  return rows.map((r) => r.vxid);
}

/** Whether any of `writers` (from {@linkcode eventWriters}) is still running. */
export async function anyStillWriting(
  db: SqlExecutor,
  writers: readonly string[],
): Promise<boolean> {
  if (writers.length === 0) return false;
  const [row] = await selectRows<{ n: number }>(
    db,
    sql`select count(*)::int as n from pg_locks
         where virtualtransaction in (${sql.join(writers.map((w) => sql`${w}`), sql`, `)})`,
  );
  return (row?.n ?? 0) > 0;
}
