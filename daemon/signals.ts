/**
 * SIGTERM and SIGINT: one orderly shutdown (stop schedules, Logoff each server, flush
 * the ingest pipeline), then exit 0; a hard deadline so systemd or docker never has to
 * SIGKILL us. A second signal at least {@linkcode REPEAT_SIGNAL_MS} after the first exits at
 * once; one sooner is the same stop delivered twice (`deno task` forwards the signal that
 * the process group also received, systemd signals the whole cgroup) and is ignored, so
 * the flush still happens.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { abortable } from "./abortable.ts";

/** Time allowed for the orderly shutdown; systemd's and docker's default stop timeouts are 90 s and 10 s. */
export const SHUTDOWN_DEADLINE_MS = 9_000;

/** A repeated signal sooner than this after the first is a duplicate delivery, not an insistence. */
export const REPEAT_SIGNAL_MS = 1_000;

/** Options of {@linkcode handleShutdownSignals}. */
export interface ShutdownSignalOptions {
  /** Give up the orderly shutdown after this long and exit 1.
   * @default {SHUTDOWN_DEADLINE_MS} */
  deadlineMs?: number;
  /** A second signal sooner than this after the first is ignored as a duplicate delivery.
   * @default {REPEAT_SIGNAL_MS} */
  repeatSignalMs?: number;
  /** Ends the process (tests replace it).
   * @default {Deno.exit} */
  exit?: (code: number) => void;
  /**
   * Starts the same orderly shutdown from inside (a part of the daemon failed for good);
   * the process then exits 1 once it completes. The abort reason is logged.
   */
  failure?: AbortSignal;
}

/**
 * Runs `shutdown` on the first SIGTERM or SIGINT and exits 0 when it completes, 1 when
 * it fails or outlasts the deadline. Returns a function that removes the handlers.
 */
export function handleShutdownSignals(
  shutdown: (signal: Deno.Signal) => Promise<void>,
  options: ShutdownSignalOptions = {},
): () => void {
  const log = getLogger(["dami", "signals"]);
  const deadlineMs = options.deadlineMs ?? SHUTDOWN_DEADLINE_MS;
  const repeatSignalMs = options.repeatSignalMs ?? REPEAT_SIGNAL_MS;
  const exit = options.exit ?? ((code: number) => Deno.exit(code));
  let stoppingSince: number | undefined;
  const handler = (signal: Deno.Signal, failed = false) => {
    if (stoppingSince !== undefined) {
      if (Date.now() - stoppingSince < repeatSignalMs) return;
      log.warn("{signal} again: exiting now", { signal });
      exit(1);
      return;
    }
    stoppingSince = Date.now();
    if (!failed) log.info("{signal}: shutting down", { signal });
    abortable(shutdown(signal), AbortSignal.timeout(deadlineMs)).then(
      () => exit(failed ? 1 : 0),
      (error) => {
        if (error instanceof DOMException && error.name === "TimeoutError") {
          log.error("shutdown did not finish within {deadlineMs} ms; exiting", { deadlineMs });
        } else log.error("shutdown failed: {error}", { error });
        exit(1);
      },
    );
  };
  const failed = () => {
    log.fatal("{reason}: shutting down", { reason: String(options.failure!.reason) });
    handler("SIGTERM", true);
  };
  if (options.failure?.aborted) queueMicrotask(failed);
  else options.failure?.addEventListener("abort", failed, { once: true });
  const installed: Array<[Deno.Signal, () => void]> = [];
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const listener = () => handler(signal);
    try {
      Deno.addSignalListener(signal, listener);
      installed.push([signal, listener]);
    } catch {
      // SIGTERM cannot be listened to on Windows; SIGINT still works.
    }
  }
  return () => {
    for (const [signal, listener] of installed) Deno.removeSignalListener(signal, listener);
  };
}
