/**
 * `queue-summary`: per queue, callers offered, answered, abandoned, left unanswered,
 * average and longest wait, and the service level: the share of offered callers answered
 * within `threshold` seconds.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { queueCalls } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  type RangeParams,
  rangeWhere,
} from "./query.ts";

/** Parameters of {@linkcode queueSummary}. */
export interface QueueSummaryParams extends RangeParams {
  /** Only this queue. */
  queue?: string;
  /**
   * Service-level threshold, seconds of waiting.
   * @default {20}
   */
  threshold?: number;
}

/** One queue. */
export interface QueueSummaryRow {
  [column: string]: string | number | null;
  queue: string;
  offered: number;
  answered: number;
  abandoned: number;
  /** Left without an agent or abandoning (timeout, exit key, empty queue). */
  unanswered: number;
  /** Average wait of answered callers, seconds. */
  avg_wait_s: number | null;
  /** Average wait of abandoning callers, seconds. */
  avg_abandon_s: number | null;
  max_wait_s: number | null;
  avg_talk_s: number | null;
  /** Answered within the threshold / offered × 100. */
  service_level_pct: number | null;
}

/** Queue statistics by queue (callers who joined in the range). */
export async function queueSummary(
  db: SqlExecutor,
  params: QueueSummaryParams = {},
): Promise<QueueSummaryRow[]> {
  const threshold = params.threshold ?? 20;
  const queue = params.queue === undefined ? sql`true` : sql`queue = ${params.queue}`;
  return await selectRows<QueueSummaryRow>(
    db,
    sql`select queue, count(*)::int as offered,
          count(*) filter (where outcome = 'answered')::int as answered,
          count(*) filter (where outcome = 'abandoned')::int as abandoned,
          count(*) filter (where outcome = 'timeout')::int as unanswered,
          round(avg(hold_s) filter (where outcome = 'answered'), 1)::float8 as avg_wait_s,
          round(avg(hold_s) filter (where outcome = 'abandoned'), 1)::float8 as avg_abandon_s,
          max(hold_s)::int as max_wait_s,
          round(avg(talk_s) filter (where outcome = 'answered'), 1)::float8 as avg_talk_s,
          round(100.0 * count(*) filter (where outcome = 'answered' and hold_s <= ${threshold})
            / nullif(count(*), 0), 1)::float8 as service_level_pct
        from ${queueCalls}
        where ${rangeWhere(sql`joined_at`, params)} and ${queue}
        group by queue order by queue`,
  );
}

/** The registry entry. */
export const queueSummaryQuery: QueryDefinition = {
  name: "queue-summary",
  description:
    "per queue: offered, answered, abandoned, average wait, service level at --threshold s",
  params: [
    ...RANGE_PARAMS,
    { name: "queue", kind: "text", description: "only this queue" },
    {
      name: "threshold",
      kind: "integer",
      description: "service-level threshold in seconds (default 20)",
    },
  ],
  columns: [
    "queue",
    "offered",
    "answered",
    "abandoned",
    "unanswered",
    "avg_wait_s",
    "avg_abandon_s",
    "max_wait_s",
    "avg_talk_s",
    "service_level_pct",
  ],
  run: (db, args) =>
    queueSummary(db, {
      ...rangeArgs(args),
      queue: args.queue as string | undefined,
      threshold: args.threshold as number | undefined,
    }),
};
