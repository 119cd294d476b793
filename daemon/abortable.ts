/**
 * Waiting with a way out, on `AbortSignal` (as `@std/async`'s `delay` and
 * `abortable`): a timeout is `AbortSignal.timeout(ms)`, a stop is an
 * `AbortController`, and both combine with `AbortSignal.any`. No hand-rolled
 * `Promise.race` with `setTimeout` and a timer to clear.
 *
 * @example
 * ```ts
 * import { abortable, delay } from "./abortable.ts";
 * const stop = new AbortController();
 * await delay(10, { signal: stop.signal });
 * const slow = new Promise((resolve) => setTimeout(resolve, 1000, "late"));
 * const outcome = await abortable(slow, AbortSignal.timeout(10)).catch((e) => e.name);
 * console.log(outcome); // "TimeoutError"
 * await slow;
 * ```
 *
 * @module
 */

/**
 * Resolves after `ms`, or as soon as `signal` aborts (resolving, not rejecting: a
 * backoff cut short by a stop is not an error).
 */
export function delay(ms: number, options: { signal?: AbortSignal } = {}): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * `promise`, unless `signal` aborts first: then rejects with `signal.reason` (a
 * `TimeoutError` for `AbortSignal.timeout`). The work itself goes on; a later failure
 * of it is ignored here (the caller decided not to wait for it).
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  promise.catch(() => {});
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}
