/**
 * Edge case 17 at scale: 1,000,000 actions in rounds of 50,000 in flight, every outcome
 * (answered, list, refused, timed out, cut by a disconnect), against the fake Asterisk
 * of the tests; reports the time and rate, and fails when an action does not settle
 * exactly once. The suite runs the same scenario with 50,000 (`tests/settlement_test.ts`).
 *
 * @module
 */
import { settleActions } from "../tests/settle_actions.ts";

/** One figure of the settle bench. */
export interface SettleFigure {
  actions: number;
  seconds: number;
  actionsPerSecond: number;
  outcomes: Record<string, number>;
  peakRssMb: number;
}

/** Runs the scenario with `total` actions. */
export async function settleBench(total = 1_000_000): Promise<SettleFigure> {
  let peak = Deno.memoryUsage().rss;
  const sampler = setInterval(() => (peak = Math.max(peak, Deno.memoryUsage().rss)), 100);
  const started = performance.now();
  try {
    const report = await settleActions(total);
    const seconds = (performance.now() - started) / 1000;
    const { ok, action, timeout, closed, other } = report.outcomes;
    if (ok + action + timeout + closed !== total || other !== 0 || report.pendingActions !== 0) {
      throw new Error(`actions did not settle exactly once: ${JSON.stringify(report)}`);
    }
    return {
      actions: total,
      seconds: Math.round(seconds * 10) / 10,
      actionsPerSecond: Math.round(total / seconds),
      outcomes: report.outcomes,
      peakRssMb: Math.round(peak / 2 ** 20),
    };
  } finally {
    clearInterval(sampler);
  }
}

if (import.meta.main) console.log(JSON.stringify(await settleBench(Number(Deno.args[0] ?? 1e6))));
