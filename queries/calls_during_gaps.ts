/**
 * `calls-during-gaps`: calls in progress while the daemon had no AMI session to their
 * server. Their records are partial (`calls.complete = false`): events during the gap
 * were never received. What a gap is: `session_gaps.ts`.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { calls } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import { sessionGapsQuery } from "./session_gaps.ts";
import {
  localTime,
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  rangeBounds,
  type RangeParams,
} from "./query.ts";

/** One call × gap. */
export interface CallDuringGapRow {
  [column: string]: string | boolean | null;
  server: string;
  gap_from: string;
  /** null while not reconnected. */
  gap_until: string | null;
  disconnect_reason: string | null;
  call_id: string;
  started_at: string;
  ended_at: string | null;
  src: string | null;
  dst: string | null;
  complete: boolean;
}

/** Calls overlapping AMI gaps that began in the range. */
export async function callsDuringGaps(
  db: SqlExecutor,
  params: RangeParams = {},
): Promise<CallDuringGapRow[]> {
  const { tz, from, to } = rangeBounds(params);
  const server = params.server === undefined ? sql`true` : sql`s.server = ${params.server}`;
  return await selectRows<CallDuringGapRow>(
    db,
    // prev_from: the server's latest gap before this one began (strictly earlier, null for its
    // first), so "no gap began between the call's start and this gap" is one comparison.
    sql`with gaps as (
          select *, max(gap_from) over (partition by server order by gap_from
            range between unbounded preceding and current row exclude group) as prev_from
          from (${sessionGapsQuery(server)}) sg)
        select g.server, ${localTime(sql`g.gap_from`, tz)} as gap_from,
          ${localTime(sql`g.gap_until`, tz)} as gap_until, g.disconnect_reason, c.call_id,
          ${localTime(sql`c.started_at`, tz)} as started_at, ${
      localTime(sql`c.ended_at`, tz)
    } as ended_at,
          c.src, c.dst, c.complete
        from gaps g join ${calls} c on c.server = g.server
          -- Calls of the gap's server whose span overlaps the gap, found through
          -- calls_server_span_idx: each gap reads its few calls, not every call started
          -- before it, nor (when many servers' gaps fall at the same times) every server's
          -- calls around it. The index holds the server as a one-value range of its hash
          -- (built-in range opclasses, no btree_gist): this condition on the hash is the
          -- one the index can search by, the equality above is the exact one (hashes can
          -- collide). The overlap means that the call started before the gap's end; the
          -- rest of the rule follows.
          and int8range(hashtext(c.server)::int8, hashtext(c.server)::int8, '[]')
            @> hashtext(g.server)::int8
          and tstzrange(c.started_at,
                case when c.ended_at < c.started_at then c.started_at else c.ended_at end, '[]')
            && tstzrange(g.gap_from, coalesce(g.gap_until, 'infinity'), '[)')
          and coalesce(c.ended_at, g.gap_from) >= g.gap_from
          -- a call without an end belongs to the first gap after its start only (no other
          -- gap began from its start to this one's)
          and (c.ended_at is not null or g.prev_from is null or g.prev_from < c.started_at)
        where g.gap_from >= ${from} and g.gap_from < ${to}
        -- The last keys break ties: two gaps of a server can begin at once (a session
        -- recorded as ending when the previous one did), and call ids repeat across servers.
        order by g.gap_from, c.started_at, c.call_id, g.server, g.gap_until, g.disconnect_reason`,
  );
}

/** The registry entry. */
export const callsDuringGapsQuery: QueryDefinition = {
  name: "calls-during-gaps",
  description: "calls in progress while the daemon was disconnected from AMI (partial records)",
  params: RANGE_PARAMS,
  columns: [
    "server",
    "gap_from",
    "gap_until",
    "disconnect_reason",
    "call_id",
    "started_at",
    "ended_at",
    "src",
    "dst",
    "complete",
  ],
  run: (db, args) => callsDuringGaps(db, rangeArgs(args)),
};
