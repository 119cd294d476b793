/**
 * The daily partitions of `ami_events`: one table `ami_events_YYYYMMDD` per UTC day,
 * created by the SQL function `ami_events_create_partition(day)` (migration
 * `partition_ami_events`), which is the one place that names and creates them.
 *
 * The daemon creates partitions ahead of time (today and the next
 * {@linkcode PARTITION_DAYS_AHEAD} days, at start and then hourly), so that a write
 * never waits on a catalog change; an event whose day has no partition all the same (a
 * clock that jumped, a spool replayed long after) gets its partition created on demand
 * by the batch writer, which then retries. There is no default partition: it would grow
 * without bound and could not be dropped by day.
 *
 * @example
 * ```ts ignore
 * import { createEventPartitions, eventPartitions } from "./event_partitions.ts";
 * await createEventPartitions(store.db, [Date.now()]);
 * console.log(await eventPartitions(store.db)); // [{ day: "2026-11-30", table: "ami_events_20261130" }, ...]
 * ```
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { Cron } from "croner";
import { selectRows, type SqlExecutor } from "../queries/db.ts";

/** Days after today that get a partition before any event needs it. */
export const PARTITION_DAYS_AHEAD = 7;

/** When the daemon creates partitions ahead (croner, with seconds): hourly, at :05:00. */
export const PARTITION_SCHEDULE = "0 5 * * * *";

const DAY_MS = 86_400_000;

/** One day's partition. */
export interface EventPartition {
  /** The UTC day, `YYYY-MM-DD`. */
  day: string;
  /** The partition's table name, `ami_events_YYYYMMDD`. */
  table: string;
}

/** The UTC day (`YYYY-MM-DD`) of an epoch-milliseconds instant. */
export function utcDay(ms: number): string {
  return new Date(Math.floor(ms / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
}

/** The partition table of a UTC day (`YYYY-MM-DD`). */
export function partitionTable(day: string): string {
  return `ami_events_${day.replaceAll("-", "")}`;
}

/**
 * Creates the partitions of the UTC days of `instants` (epoch ms) that have none;
 * resolves with the days created. Safe to run concurrently from several processes.
 */
export async function createEventPartitions(
  db: SqlExecutor,
  instants: Iterable<number>,
): Promise<string[]> {
  const days = [...new Set([...instants].filter(Number.isFinite).map(utcDay))].sort();
  if (days.length === 0) return [];
  const rows = await selectRows<{ day: string; created: boolean }>(
    db,
    sql`select d as day, ami_events_create_partition(d::date) as created
        from unnest(${`{${days.join(",")}}`}::text[]) as d order by d`,
  );
  return rows.filter((r) => r.created).map((r) => r.day);
}

/** The partitions that exist, oldest first. */
export async function eventPartitions(db: SqlExecutor): Promise<EventPartition[]> {
  const rows = await selectRows<{ table: string }>(
    db,
    sql`select c.relname::text as table from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'ami_events'::regclass order by 1`,
  );
  return rows.flatMap(({ table }) => {
    const m = /^ami_events_(\d{4})(\d{2})(\d{2})$/.exec(table);
    return m ? [{ day: `${m[1]}-${m[2]}-${m[3]}`, table }] : [];
  });
}

/**
 * Whether a write failed because a row's `received_at` has no partition (SQLSTATE
 * 23514 raised by partition routing: table `ami_events`, and no constraint, which a
 * CHECK violation would name).
 */
export function isMissingPartition(error: unknown): boolean {
  const e = error as Record<string, unknown> | null;
  return e?.code === "23514" && (e.table_name ?? e.table) === "ami_events" &&
    (e.constraint_name ?? e.constraint) === undefined;
}

/** A running schedule that keeps partitions ahead of the clock. */
export interface PartitionKeeper {
  /** Stops the schedule (a run in progress finishes). */
  stop(): void;
}

/**
 * Creates today's and the next {@linkcode PARTITION_DAYS_AHEAD} days' partitions now and
 * on {@linkcode PARTITION_SCHEDULE}. A failed run (database down) is reported to
 * `onError` and tried again at the next tick; writes create what they need meanwhile.
 */
export function keepPartitionsAhead(
  db: SqlExecutor,
  options: {
    onCreated?: (days: string[]) => void;
    onError?: (error: unknown) => void;
    schedule?: string;
  } = {},
): PartitionKeeper {
  const run = async () => {
    try {
      const now = Date.now();
      const created = await createEventPartitions(
        db,
        Array.from({ length: PARTITION_DAYS_AHEAD + 1 }, (_, i) => now + i * DAY_MS),
      );
      if (created.length > 0) options.onCreated?.(created);
    } catch (error) {
      options.onError?.(error);
    }
  };
  const cron = new Cron(options.schedule ?? PARTITION_SCHEDULE, { protect: true }, run);
  run();
  return { stop: () => cron.stop() };
}
