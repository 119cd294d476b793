/**
 * Projection benchmark: stores synthetic call traffic (see `call_traffic.ts`) in a fresh
 * PostgreSQL database, then measures
 * - projection throughput: `runProjectionsOnce` from an empty checkpoint (events/s),
 *   with the default batch and with small batches (the continuous daemon's case);
 * - `rebuildProjections` time;
 * - the latency of every named query on the resulting database.
 *
 * Queries run over the whole month (no --from/--to), in UTC, median of 3 warm runs.
 *
 * Usage: `deno run -A bench/projections_bench.ts [events=1000000] [calls=50000]`
 * (PostgreSQL on 127.0.0.1:5432 or `DAMI_TEST_PG`; the database is dropped afterwards).
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { rebuildProjections, runProjectionsOnce } from "../daemon/projections/projector.ts";
import { selectRows } from "../queries/db.ts";
import { QUERIES, type QueryArgs } from "../queries/mod.ts";
import { insertEventRecords, insertSession, openTestStore } from "../tests/load_events.ts";
import { generateCallTraffic } from "./call_traffic.ts";

/** Options of {@linkcode runProjectionsBench}. */
export interface ProjectionsBenchOptions {
  /**
   * Events to store.
   * @default {1000000}
   */
  events?: number;
  /**
   * Calls among them.
   * @default {50000}
   */
  calls?: number;
  /** Progress lines go here. @default {console.error} */
  log?: (line: string) => void;
}

/** One measured figure. */
export interface BenchFigure {
  name: string;
  ms: number;
  /** Events per second, where it applies. */
  eventsPerSecond?: number;
  /** Rows returned, for queries. */
  rows?: number;
}

/** Everything measured. */
export interface ProjectionsBenchReport {
  events: number;
  calls: number;
  projectedCalls: number;
  figures: BenchFigure[];
}

/** Runs the benchmark (see the module doc). */
export async function runProjectionsBench(
  options: ProjectionsBenchOptions = {},
): Promise<ProjectionsBenchReport> {
  const log = options.log ?? ((line: string) => console.error(line));
  const store = await openTestStore("bench_projections");
  const figures: BenchFigure[] = [];
  try {
    const sessionId = crypto.randomUUID();
    const started = performance.now();
    const summary = await generateCallTraffic({
      events: options.events ?? 1_000_000,
      calls: options.calls ?? 50_000,
      startDay: "2026-10-01",
      days: 30,
      chunkRows: 5000,
      server: "pbx1",
      sessionId,
      seed: 5,
      sink: (rows) => insertEventRecords(store.db, rows),
    });
    await insertSession(store.db, {
      id: sessionId,
      server: "pbx1",
      connectedAtMs: summary.firstMs - 60_000,
      disconnectedAtMs: null,
    });
    await store.db.execute(sql`analyze`);
    log(
      `stored ${summary.events} events (${summary.calls} calls, ${summary.pollEvents} poll events) in ${
        ((performance.now() - started) / 1000).toFixed(1)
      } s`,
    );

    const measure = async (name: string, fn: () => Promise<unknown>, events?: number) => {
      const t0 = performance.now();
      await fn();
      const ms = performance.now() - t0;
      const figure: BenchFigure = { name, ms };
      if (events !== undefined) figure.eventsPerSecond = Math.round(events / (ms / 1000));
      figures.push(figure);
      log(
        `${name}: ${(ms / 1000).toFixed(2)} s${
          figure.eventsPerSecond === undefined ? "" : ` (${figure.eventsPerSecond} events/s)`
        }`,
      );
    };
    // Each run must give the same tables: a digest of every projection table after each.
    const digest = async () => {
      const [row] = await selectRows<{ d: string }>(
        store.db,
        sql`select md5(
          (select coalesce(string_agg(t::text, '|' order by server, call_id), '') from calls t) ||
          (select coalesce(string_agg(t::text, '|' order by server, uniqueid), '') from call_legs t) ||
          (select coalesce(string_agg(t::text, '|' order by server, uniqueid, queue, joined_at), '')
            from queue_calls t) ||
          (select coalesce(string_agg(t::text, '|' order by server, uniqueid), '') from queue_attempts t) ||
          (select coalesce(string_agg(t::text, '|' order by event_id, endpoint), '') from endpoint_status t)
        ) as d`,
      );
      return row.d;
    };
    const digests: string[] = [];
    await measure(
      "projection, catch-up from empty (batch 20000)",
      () => runProjectionsOnce(store),
      summary.events,
    );
    digests.push(await digest());
    await measure("rebuild-projections", () => rebuildProjections(store), summary.events);
    digests.push(await digest());
    // The continuous daemon projects what arrived since its last run: small batches.
    await measure(
      "projection, small batches (rebuild with batch 2000)",
      () => rebuildProjections(store, { batchSize: 2000 }),
      summary.events,
    );
    digests.push(await digest());
    const identical = digests.every((d) => d === digests[0]);
    log(`tables identical after all three runs: ${identical}`);
    if (!identical) throw new Error(`projection runs differ: ${digests.join(", ")}`);
    await store.db.execute(sql`analyze`);
    const [count] = await selectRows<{ n: number }>(
      store.db,
      sql`select count(*)::int as n from calls`,
    );
    const [sample] = await selectRows<{ uniqueid: string }>(
      store.db,
      sql`select uniqueid from call_legs order by created_at desc limit 1 offset 1000`,
    );

    for (const query of QUERIES) {
      const args: QueryArgs = query.name === "call-timeline"
        ? { call: sample.uniqueid, tz: "UTC" }
        : { tz: "UTC" };
      let rows = 0;
      const times: number[] = [];
      for (let i = 0; i < 4; i++) {
        const t0 = performance.now();
        rows = (await query.run(store.db, args)).length;
        if (i > 0) times.push(performance.now() - t0); // the first run warms the cache
      }
      times.sort((a, b) => a - b);
      const figure = { name: `query ${query.name}`, ms: times[1], rows };
      figures.push(figure);
      log(`query ${query.name}: ${figure.ms.toFixed(1)} ms (median of 3, ${rows} rows)`);
    }
    return { events: summary.events, calls: summary.calls, projectedCalls: count.n, figures };
  } finally {
    await store.close();
  }
}

if (import.meta.main) {
  const [events, calls] = Deno.args.map(Number);
  const report = await runProjectionsBench({
    events: events || undefined,
    calls: calls || undefined,
  });
  console.log(JSON.stringify(report, null, 2));
}
