/**
 * The named call-history queries (DESIGN.md), each a function usable from code with
 * bound parameters, and the registry the CLI (`deno task query`) runs them from.
 *
 * @example
 * ```ts ignore
 * import { callsPerDay, findQuery } from "./mod.ts";
 * const days = await callsPerDay(store.db, { from: "-7d", tz: "Europe/Berlin" });
 * const rows = await findQuery("missed-calls")!.run(store.db, { from: "yesterday" });
 * ```
 *
 * @module
 */
import { abandonWaitsQuery } from "./abandon_waits.ts";
import { agentPerformanceQuery } from "./agent_performance.ts";
import { busiestExtensionsQuery } from "./busiest_extensions.ts";
import { callTimelineQuery } from "./call_timeline.ts";
import { callsDuringGapsQuery } from "./calls_during_gaps.ts";
import { callsPerDayQuery } from "./calls_per_day.ts";
import { endpointAvailabilityQuery } from "./endpoint_availability.ts";
import { endpointOutagesQuery } from "./endpoint_outages.ts";
import { failureCausesQuery } from "./failure_causes.ts";
import { heatmapQuery } from "./heatmap.ts";
import { longestCallsQuery } from "./longest_calls.ts";
import { missedCallsQuery } from "./missed_calls.ts";
import { peakConcurrencyQuery } from "./peak_concurrency.ts";
import type { QueryDefinition } from "./query.ts";
import { queueStatsQuery } from "./queue_stats.ts";
import { queueSummaryQuery } from "./queue_summary.ts";
import { agentPausesQuery } from "./agent_pauses.ts";
import { transfersQuery } from "./transfers.ts";

export { type AbandonWaitRow, abandonWaits, type AbandonWaitsParams } from "./abandon_waits.ts";
export {
  agentPerformance,
  type AgentPerformanceParams,
  type AgentPerformanceRow,
} from "./agent_performance.ts";
export {
  type BusiestExtensionRow,
  busiestExtensions,
  type BusiestExtensionsParams,
} from "./busiest_extensions.ts";
export { callTimeline, type CallTimelineParams, type CallTimelineRow } from "./call_timeline.ts";
export { type CallDuringGapRow, callsDuringGaps } from "./calls_during_gaps.ts";
export { callsPerDay, type CallsPerDayRow } from "./calls_per_day.ts";
export {
  endpointAvailability,
  type EndpointAvailabilityParams,
  type EndpointAvailabilityRow,
} from "./endpoint_availability.ts";
export {
  type EndpointOutageRow,
  endpointOutages,
  type EndpointOutagesParams,
} from "./endpoint_outages.ts";
export { type FailureCauseRow, failureCauses, type FailureCausesParams } from "./failure_causes.ts";
export { heatmap, type HeatmapRow } from "./heatmap.ts";
export { type LongestCallRow, longestCalls, type LongestCallsParams } from "./longest_calls.ts";
export { type MissedCallRow, missedCalls, type MissedCallsParams } from "./missed_calls.ts";
export { peakConcurrency, type PeakConcurrencyRow } from "./peak_concurrency.ts";
export {
  queueStats,
  type QueueStatsInterval,
  type QueueStatsParams,
  type QueueStatsRow,
} from "./queue_stats.ts";
export { type AgentPauseRow, agentPauses, type AgentPausesParams } from "./agent_pauses.ts";
export { queueSummary, type QueueSummaryParams, type QueueSummaryRow } from "./queue_summary.ts";
export { type TransferRow, transfers } from "./transfers.ts";
export {
  type ParamKind,
  type ParamSpec,
  type QueryArgs,
  type QueryDefinition,
  QueryParamError,
  type QueryRow,
  type RangeParams,
  type TimeInput,
} from "./query.ts";
export { selectRows, type SqlDatabase, type SqlExecutor, type SqlValue } from "./db.ts";

/** Every named query, in the order `--list` shows them. */
export const QUERIES: readonly QueryDefinition[] = [
  callsPerDayQuery,
  missedCallsQuery,
  callTimelineQuery,
  longestCallsQuery,
  busiestExtensionsQuery,
  heatmapQuery,
  peakConcurrencyQuery,
  queueSummaryQuery,
  agentPerformanceQuery,
  abandonWaitsQuery,
  endpointAvailabilityQuery,
  endpointOutagesQuery,
  failureCausesQuery,
  transfersQuery,
  callsDuringGapsQuery,
  queueStatsQuery,
  agentPausesQuery,
];

/** The query with this name, if any. */
export function findQuery(name: string): QueryDefinition | undefined {
  return QUERIES.find((q) => q.name === name);
}
