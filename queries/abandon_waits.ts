/**
 * `abandon-waits`: how long callers waited in a queue before hanging up, as a histogram
 * with cumulative shares.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { queueCalls } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  type QueryDefinition,
  QueryParamError,
  RANGE_PARAMS,
  rangeArgs,
  type RangeParams,
  rangeWhere,
} from "./query.ts";

/** Parameters of {@linkcode abandonWaits}. */
export interface AbandonWaitsParams extends RangeParams {
  /** Only this queue. */
  queue?: string;
  /**
   * Upper bounds of the buckets, in seconds, increasing.
   * @default {[10, 30, 60, 120, 300]}
   */
  buckets?: number[];
}

/** One bucket; every bucket is present. */
export interface AbandonWaitRow {
  [column: string]: string | number;
  /** `0-10`, `10-30`, ..., `300+` (seconds; lower bound inclusive). */
  wait_s: string;
  abandoned: number;
  pct: number;
  cumulative_pct: number;
}

/** Abandoned callers by wait. */
export async function abandonWaits(
  db: SqlExecutor,
  params: AbandonWaitsParams = {},
): Promise<AbandonWaitRow[]> {
  const bounds = params.buckets ?? [10, 30, 60, 120, 300];
  if (
    bounds.length === 0 ||
    bounds.some((b, i) => !Number.isInteger(b) || b <= 0 || (i > 0 && b <= bounds[i - 1]))
  ) {
    throw new QueryParamError(
      "buckets",
      "expected increasing positive whole seconds, e.g. 10,30,60",
    );
  }
  const queue = params.queue === undefined ? sql`true` : sql`queue = ${params.queue}`;
  const counts = await selectRows<{ bucket: number; n: number }>(
    db,
    sql`select width_bucket(coalesce(hold_s, 0), ${
      sql.param(bounds)
    }::int[])::int as bucket, count(*)::int as n
        from ${queueCalls}
        where ${rangeWhere(sql`joined_at`, params)} and ${queue} and outcome = 'abandoned'
        group by 1`,
  );
  const byBucket = new Map(counts.map((c) => [c.bucket, c.n]));
  const total = counts.reduce((sum, c) => sum + c.n, 0);
  let running = 0;
  return [0, ...bounds].map((lower, i) => {
    const n = byBucket.get(i) ?? 0;
    running += n;
    return {
      wait_s: i < bounds.length ? `${lower}-${bounds[i]}` : `${lower}+`,
      abandoned: n,
      pct: total === 0 ? 0 : Math.round((1000 * n) / total) / 10,
      cumulative_pct: total === 0 ? 0 : Math.round((1000 * running) / total) / 10,
    };
  });
}

/** The registry entry. */
export const abandonWaitsQuery: QueryDefinition = {
  name: "abandon-waits",
  description: "how long abandoning queue callers waited, as a histogram",
  params: [
    ...RANGE_PARAMS,
    { name: "queue", kind: "text", description: "only this queue" },
    {
      name: "buckets",
      kind: "integers",
      description: "bucket bounds in seconds (default 10,30,60,120,300)",
    },
  ],
  columns: ["wait_s", "abandoned", "pct", "cumulative_pct"],
  run: (db, args) =>
    abandonWaits(db, {
      ...rangeArgs(args),
      queue: args.queue as string | undefined,
      buckets: args.buckets as number[] | undefined,
    }),
};
