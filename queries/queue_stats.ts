/**
 * `queue-stats`: contact-center figures per queue and interval (15 minutes, hour or day),
 * with the common definitions (the ones Wazo call-logd and most wallboards use):
 *
 * - **offered**: callers who joined, less the short abandons;
 * - **short abandons**: callers who hung up within `shortAbandon` seconds (not counted as
 *   offered nor abandoned: they had no chance to be answered);
 * - **answered**: callers connected to an agent;
 * - **abandoned**: callers who hung up while waiting, after the short-abandon threshold;
 * - **unanswered**: callers who left without agent nor hanging up (timeout, exit key);
 * - **service level**: answered within `threshold` seconds of waiting / offered × 100;
 * - **ASA** (average speed of answer): total wait of answered callers / answered;
 * - **AHT** (average handle time): total talk time of answered callers / answered (AMI
 *   reports no after-call work, so handle time is talk time);
 * - **abandon rate**: abandoned / offered × 100.
 *
 * A caller belongs to the interval in which it joined the queue.
 *
 * @module
 */
import { type SQL, sql } from "drizzle-orm";
import { queueCalls } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  localTime,
  type QueryDefinition,
  QueryParamError,
  RANGE_PARAMS,
  rangeArgs,
  type RangeParams,
  rangeWhere,
  timeZone,
} from "./query.ts";

/** The width of one row's interval. */
export type QueueStatsInterval = "15m" | "hour" | "day";

/** Parameters of {@linkcode queueStats}. */
export interface QueueStatsParams extends RangeParams {
  /** Only this queue. */
  queue?: string;
  /**
   * Interval of a row.
   * @default {"hour"}
   */
  interval?: QueueStatsInterval;
  /**
   * Service-level threshold, seconds of waiting.
   * @default {20}
   */
  threshold?: number;
  /**
   * Callers who abandon within this many seconds are short abandons.
   * @default {5}
   */
  shortAbandon?: number;
}

/** One queue in one interval. */
export interface QueueStatsRow {
  [column: string]: string | number | null;
  /** Start of the interval, local to `tz`. */
  interval_start: string;
  queue: string;
  offered: number;
  answered: number;
  abandoned: number;
  short_abandoned: number;
  unanswered: number;
  service_level_pct: number | null;
  asa_s: number | null;
  aht_s: number | null;
  abandon_rate_pct: number | null;
}

const INTERVALS: Record<QueueStatsInterval, string> = {
  "15m": "15 minutes",
  hour: "1 hour",
  day: "1 day",
};

/** Queue figures per queue and interval (callers who joined in the range). */
export async function queueStats(
  db: SqlExecutor,
  params: QueueStatsParams = {},
): Promise<QueueStatsRow[]> {
  const tz = timeZone(params.tz);
  const interval = params.interval ?? "hour";
  if (!(interval in INTERVALS)) {
    throw new QueryParamError("interval", `"${interval}" is not one of 15m, hour, day`);
  }
  const threshold = params.threshold ?? 20;
  const short = params.shortAbandon ?? 5;
  const queue = params.queue === undefined ? sql`true` : sql`queue = ${params.queue}`;
  // date_bin on local wall time: a day or an hour starts at local midnight / on the hour,
  // also across a DST change (the local time is binned, then shown as local text).
  const bucket: SQL = sql`date_bin(${INTERVALS[interval]}::interval,
    joined_at at time zone ${tz}, timestamp '2000-01-01')`;
  const isShort = sql`(outcome = 'abandoned' and coalesce(hold_s, 0) < ${short})`;
  const offered = sql`count(*) filter (where not ${isShort})`;
  const answered = sql`count(*) filter (where outcome = 'answered')`;
  return await selectRows<QueueStatsRow>(
    db,
    sql`select ${localTime(sql`bucket`, "UTC", "YYYY-MM-DD HH24:MI")} as interval_start, queue,
          ${offered}::int as offered,
          ${answered}::int as answered,
          count(*) filter (where outcome = 'abandoned' and not ${isShort})::int as abandoned,
          count(*) filter (where ${isShort})::int as short_abandoned,
          count(*) filter (where outcome = 'timeout')::int as unanswered,
          round(100.0 * count(*) filter (where outcome = 'answered' and hold_s <= ${threshold})
            / nullif(${offered}, 0), 1)::float8 as service_level_pct,
          round(sum(hold_s) filter (where outcome = 'answered')::numeric
            / nullif(${answered}, 0), 1)::float8 as asa_s,
          round(sum(talk_s) filter (where outcome = 'answered')::numeric
            / nullif(${answered}, 0), 1)::float8 as aht_s,
          round(100.0 * count(*) filter (where outcome = 'abandoned' and not ${isShort})
            / nullif(${offered}, 0), 1)::float8 as abandon_rate_pct
        from (select *, ${bucket} as bucket from ${queueCalls}
              where ${rangeWhere(sql`joined_at`, params)} and ${queue}) q
        group by bucket, queue order by bucket, queue`,
  );
}

/** The registry entry. */
export const queueStatsQuery: QueryDefinition = {
  name: "queue-stats",
  description:
    "per queue and --interval (15m, hour, day): offered, answered, abandoned, SL, ASA, AHT",
  params: [
    ...RANGE_PARAMS,
    { name: "queue", kind: "text", description: "only this queue" },
    { name: "interval", kind: "text", description: "15m, hour (default) or day" },
    {
      name: "threshold",
      kind: "integer",
      description: "service-level threshold in seconds (default 20)",
    },
    {
      name: "short-abandon",
      kind: "integer",
      description: "abandons within this many seconds are not counted (default 5)",
    },
  ],
  columns: [
    "interval_start",
    "queue",
    "offered",
    "answered",
    "abandoned",
    "short_abandoned",
    "unanswered",
    "service_level_pct",
    "asa_s",
    "aht_s",
    "abandon_rate_pct",
  ],
  run: (db, args) =>
    queueStats(db, {
      ...rangeArgs(args),
      queue: args.queue as string | undefined,
      interval: args.interval as QueueStatsInterval | undefined,
      threshold: args.threshold as number | undefined,
      shortAbandon: args["short-abandon"] as number | undefined,
    }),
};
