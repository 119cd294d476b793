/**
 * `agent-performance`: per queue member, how often it was rung, answered, let ring out,
 * how long it rang before answering, and its talk time.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { queueAttempts, queueCalls } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  type RangeParams,
  rangeWhere,
} from "./query.ts";

/** Parameters of {@linkcode agentPerformance}. */
export interface AgentPerformanceParams extends RangeParams {
  /** Only this queue. */
  queue?: string;
}

/** One agent. */
export interface AgentPerformanceRow {
  [column: string]: string | number | null;
  agent: string;
  /** Times rung (AgentCalled). */
  rung: number;
  /** Calls answered (AgentConnect). */
  answered: number;
  /** Rang out (AgentRingNoAnswer). */
  no_answer: number;
  /** answered / rung × 100. */
  answer_rate_pct: number | null;
  /** Average seconds of ringing before answering. */
  avg_ring_s: number | null;
  /** Total talk seconds (AgentComplete TalkTime). */
  talk_s: number;
  avg_talk_s: number | null;
  /** Average wait of the callers it answered, seconds. */
  avg_caller_wait_s: number | null;
}

/** Agent statistics (rung / joined in the range). */
export async function agentPerformance(
  db: SqlExecutor,
  params: AgentPerformanceParams = {},
): Promise<AgentPerformanceRow[]> {
  const queue = params.queue === undefined ? sql`true` : sql`queue = ${params.queue}`;
  return await selectRows<AgentPerformanceRow>(
    db,
    sql`with rings as (
          select agent, count(*) as rung,
            count(*) filter (where outcome = 'connected') as connected,
            count(*) filter (where outcome = 'no-answer') as no_answer,
            avg(ring_ms) filter (where outcome = 'connected') / 1000.0 as avg_ring_s
          from ${queueAttempts}
          where ${rangeWhere(sql`called_at`, params)} and ${queue}
          group by agent
        ), talks as (
          select agent, count(*) as answered, coalesce(sum(talk_s), 0) as talk_s,
            avg(talk_s) as avg_talk_s, avg(hold_s) as avg_wait_s
          from ${queueCalls}
          where ${rangeWhere(sql`joined_at`, params)} and ${queue}
            and outcome = 'answered' and agent is not null
          group by agent
        )
        select coalesce(r.agent, t.agent) as agent, coalesce(r.rung, 0)::int as rung,
          coalesce(t.answered, r.connected, 0)::int as answered,
          coalesce(r.no_answer, 0)::int as no_answer,
          round(100.0 * coalesce(r.connected, 0) / nullif(r.rung, 0), 1)::float8 as answer_rate_pct,
          round(r.avg_ring_s::numeric, 1)::float8 as avg_ring_s,
          coalesce(t.talk_s, 0)::int as talk_s,
          round(t.avg_talk_s, 1)::float8 as avg_talk_s,
          round(t.avg_wait_s, 1)::float8 as avg_caller_wait_s
        from rings r full join talks t on t.agent = r.agent
        order by answered desc, agent`,
  );
}

/** The registry entry. */
export const agentPerformanceQuery: QueryDefinition = {
  name: "agent-performance",
  description: "per queue agent: rung, answered, rang out, ring time, talk time",
  params: [...RANGE_PARAMS, { name: "queue", kind: "text", description: "only this queue" }],
  columns: [
    "agent",
    "rung",
    "answered",
    "no_answer",
    "answer_rate_pct",
    "avg_ring_s",
    "talk_s",
    "avg_talk_s",
    "avg_caller_wait_s",
  ],
  run: (db, args) =>
    agentPerformance(db, { ...rangeArgs(args), queue: args.queue as string | undefined }),
};
