/**
 * `agent-pauses`: how long each queue member was paused, by reason, within the range.
 *
 * Built from the log's `QueueMemberPause` events (`Paused: 1` starts a pause, the
 * member's next pause event in the same queue ends it; `PausedReason` on Asterisk 12+,
 * `Reason` before). A pause still open at the end of the range counts up to that end
 * (or now). Pauses are clipped to the range.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { amiEvents } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  rangeBounds,
  type RangeParams,
} from "./query.ts";

/** Parameters of {@linkcode agentPauses}. */
export interface AgentPausesParams extends RangeParams {
  /** Only this queue. */
  queue?: string;
}

/** One agent, queue and reason. */
export interface AgentPauseRow {
  [column: string]: string | number | null;
  agent: string;
  queue: string;
  /** The pause reason, `(none)` when the agent gave none. */
  reason: string;
  /** Pauses that started or were running in the range. */
  pauses: number;
  /** Seconds paused within the range. */
  paused_s: number;
}

/** Pause time per agent, queue and reason. */
export async function agentPauses(
  db: SqlExecutor,
  params: AgentPausesParams = {},
): Promise<AgentPauseRow[]> {
  const { from, to } = rangeBounds(params, sql`now()`);
  const server = params.server === undefined ? sql`true` : sql`server = ${params.server}`;
  const queue = params.queue === undefined ? sql`true` : sql`fields->>'Queue' = ${params.queue}`;
  return await selectRows<AgentPauseRow>(
    db,
    sql`with p as (
          select coalesce(nullif(fields->>'MemberName', ''), fields->>'Interface') as agent,
            fields->>'Queue' as queue,
            fields->>'Paused' = '1' as paused,
            coalesce(nullif(fields->>'PausedReason', ''), nullif(fields->>'Reason', ''), '(none)')
              as reason,
            received_at as started,
            lead(received_at) over (partition by server, fields->>'Queue', fields->>'Interface'
              order by id) as ended
          from ${amiEvents}
          where event = 'QueueMemberPause' and received_at < ${to} and ${server} and ${queue})
        select agent, queue, reason, count(*)::int as pauses,
          round(sum(extract(epoch from least(coalesce(ended, ${to}), ${to}, now())
            - greatest(started, ${from}))))::int as paused_s
        from p
        where paused and coalesce(ended, 'infinity'::timestamptz) > ${from}
        group by agent, queue, reason order by agent, queue, reason`,
  );
}

/** The registry entry. */
export const agentPausesQuery: QueryDefinition = {
  name: "agent-pauses",
  description: "per queue member: pauses and seconds paused, by reason",
  params: [...RANGE_PARAMS, { name: "queue", kind: "text", description: "only this queue" }],
  columns: ["agent", "queue", "reason", "pauses", "paused_s"],
  run: (db, args) =>
    agentPauses(db, { ...rangeArgs(args), queue: args.queue as string | undefined }),
};
