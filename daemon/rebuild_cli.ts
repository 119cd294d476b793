/**
 * `deno task rebuild-projections`: empties the call-history projections (calls,
 * call_legs, queue_calls, queue_attempts, endpoint_status and the projector's index) and
 * projects `ami_events` again from the first event. The result equals what the daemon's
 * continuous projector builds; use it after changing projection rules or to repair.
 *
 * Safe while the daemon runs (batches take an advisory lock; the daemon's projector just
 * helps). On the embedded store it goes through the running daemon's SQL address, each
 * batch one transaction that the daemon's writes wait for. A progress line (events done
 * of total, rate) is shown on a terminal.
 *
 * @example
 * ```sh
 * DATABASE_URL=postgres://dami@localhost/dami deno task rebuild-projections
 * deno task rebuild-projections --data-dir ./data
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { count } from "drizzle-orm";
import { amiEvents } from "../schema/mod.ts";
import { errorText, type Store } from "./store.ts";
import { rebuildProjections } from "./projections/projector.ts";
import { DATABASE_HELP, DATABASE_OPTIONS, openCliStore } from "./cli_store.ts";

const USAGE = `Usage: deno task rebuild-projections [--batch-size N] [database options]

Truncates calls, call_legs, queue_calls, queue_attempts, endpoint_status and the
projector's bookkeeping, then projects every ami_events row again, in batches.

Options:
  --batch-size N       events per transaction (default 50000)
  --help               this text

${DATABASE_HELP}
`;

/** Runs the command line; returns the exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  let values: {
    "batch-size"?: string;
    help?: boolean;
    "database-url"?: string;
    "data-dir"?: string;
    config?: string;
  };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { ...DATABASE_OPTIONS, "batch-size": { type: "string" }, help: { type: "boolean" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const batchSize = values["batch-size"] === undefined ? undefined : Number(values["batch-size"]);
  if (batchSize !== undefined && (!Number.isInteger(batchSize) || batchSize < 1)) {
    console.error(`error: --batch-size: "${values["batch-size"]}" is not a positive whole number`);
    return 2;
  }
  let store: Store | undefined;
  try {
    store = await openCliStore(values);
    const [{ total }] = await store.db.select({ total: count() }).from(amiEvents);
    console.error(
      `rebuilding projections in ${store.description}: ${total.toLocaleString("en")} events ...`,
    );
    const started = performance.now();
    const rate = (events: number) =>
      Math.round(events / Math.max((performance.now() - started) / 1000, 0.001));
    // On a terminal, one line rewritten after each batch; in a log file, start and end only.
    const terminal = Deno.stderr.isTerminal();
    const encoder = new TextEncoder();
    const progress = await rebuildProjections(store, {
      ...(batchSize === undefined ? {} : { batchSize }),
      onProgress: terminal
        ? (p) =>
          Deno.stderr.writeSync(encoder.encode(
            `\r\x1b[K${p.events.toLocaleString("en")} of ${total.toLocaleString("en")} events (${
              Math.floor(100 * p.events / Math.max(total, 1))
            }%), ${rate(p.events).toLocaleString("en")} events/s`,
          ))
        : undefined,
    });
    if (terminal) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
    const seconds = (performance.now() - started) / 1000;
    console.error(
      `done: ${progress.events.toLocaleString("en")} events in ${progress.batches} ${
        progress.batches === 1 ? "transaction" : "transactions"
      } of up to ${(batchSize ?? 50_000).toLocaleString("en")}, ${seconds.toFixed(1)} s (${
        rate(progress.events).toLocaleString("en")
      } events/s); projected up to event id ${progress.lastEventId}${
        progress.isolated === 0
          ? ""
          : `; ${progress.isolated} events could not be projected (see projection_errors)`
      }`,
    );
    return 0;
  } catch (error) {
    const cause = (error as { cause?: unknown } | null)?.cause;
    console.error(`error: ${errorText(cause instanceof Error ? cause : error)}`);
    return 1;
  } finally {
    await store?.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
