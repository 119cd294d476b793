/**
 * The daemon's one retry policy: how long to wait before attempt `n` after a failure,
 * as named constants (`{ minDelayMs, maxDelayMs, multiplier, jitter }`) rather than
 * numbers scattered through the code. The ingest writer retries the database with
 * {@linkcode DATABASE_RETRY}; each supervisor reconnects to its PBX with
 * {@linkcode RECONNECT_RETRY} (its bounds from the server's `reconnect` config).
 *
 * @example
 * ```ts
 * import { DATABASE_RETRY, retryDelay } from "./retry.ts";
 * const delays = [0, 1, 2, 3, 4, 5].map((attempt) => retryDelay(DATABASE_RETRY, attempt));
 * console.log(delays); // [100, 200, 400, 800, 1600, 2000]
 * ```
 *
 * @module
 */

/** How delays between attempts grow. */
export interface RetryPolicy {
  /** Delay before the second attempt (the ceiling of it, with jitter). */
  readonly minDelayMs: number;
  /** No delay is longer. */
  readonly maxDelayMs: number;
  /** Growth per failed attempt. */
  readonly multiplier: number;
  /**
   * `none`: exactly `min(maxDelayMs, minDelayMs x multiplier^attempt)`. `full`: a uniform
   * draw below that ceiling ("full jitter"), so that many clients that failed together
   * do not come back in step.
   */
  readonly jitter: "none" | "full";
}

/**
 * The ingest writer against the database: 0.1 s doubling to 2 s. A database outage
 * costs at most one attempt every 2 s, and recovery is noticed within 2 s. One writer
 * per daemon: no jitter needed.
 */
export const DATABASE_RETRY: RetryPolicy = Object.freeze({
  minDelayMs: 100,
  maxDelayMs: 2_000,
  multiplier: 2,
  jitter: "none",
});

/**
 * A supervisor reconnecting to its PBX: 0.5 s (a dropped TCP connection is back at
 * once, a PBX restart takes seconds) doubling to 30 s (a long outage costs one
 * connection attempt per 15 s on average), with full jitter. The config's
 * `reconnect.initialMs` and `reconnect.maxMs` replace the bounds.
 */
export const RECONNECT_RETRY: RetryPolicy = Object.freeze({
  minDelayMs: 500,
  maxDelayMs: 30_000,
  multiplier: 2,
  jitter: "full",
});

/**
 * Milliseconds to wait before retrying after failed attempt `attempt` (0-based).
 * `random` is the source of jitter (tests pass a constant).
 */
export function retryDelay(
  policy: RetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.minDelayMs * policy.multiplier ** attempt);
  return policy.jitter === "full" ? Math.floor(random() * ceiling) : ceiling;
}
