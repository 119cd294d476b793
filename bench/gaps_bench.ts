/**
 * `calls-during-gaps` with many servers whose gaps coincide (a recorder restart): 64
 * servers, each with one AMI session a day ending at 12:00 and the next starting at 12:05,
 * for 32 days (a 5-minute gap per server and day, 1,984 gaps), and 500,000 calls spread
 * over the servers and days (one in 1,000 never ended: ends lost in a gap), written
 * server-side with `generate_series` into a freshly migrated store. Then the query over
 * the last day and the last 30 days: median of 3 warm runs, and with `--explain` the
 * `EXPLAIN ANALYZE` of each (printed to stderr).
 *
 * Usage: `deno run -A bench/gaps_bench.ts [--pglite] [--explain] [--keep]` (PostgreSQL at
 * `DAMI_TEST_PG`, else 127.0.0.1:5432; `--pglite`: the embedded store, in a temporary
 * directory).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { sql, type SQLWrapper } from "drizzle-orm";
import { openStore } from "../daemon/store.ts";
import { callsDuringGaps } from "../queries/calls_during_gaps.ts";
import { selectRows } from "../queries/db.ts";
import { createTestDatabase } from "../tests/pg.ts";

const DAY_MS = 86_400_000;
const FIRST = "2026-06-01T00:00:00Z";
const DAYS = 32;
const SERVERS = 64;
const CALLS = 500_000;

/** One measured figure, printed as a JSON line. */
export interface GapsFigure {
  name: string;
  [key: string]: string | number | boolean;
}

function median(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Builds the store, measures, drops it (unless `keep`). */
export async function runGapsBench(
  options: { pglite?: boolean; explain?: boolean; keep?: boolean } = {},
): Promise<GapsFigure[]> {
  const database = options.pglite ? undefined : await createTestDatabase("bench_gaps");
  const dataDir = await Deno.makeTempDir({ prefix: "dami-gaps-bench-" });
  const store = await openStore({ url: database?.url, dataDir });
  const figures: GapsFigure[] = [];
  try {
    const t0 = performance.now();
    // Session d of a server runs from day d 12:05 (the first from midnight) to day d+1
    // 12:00; the last is still connected (no open gap after it).
    await store.db.execute(sql`insert into ami_sessions (id, server, connected_at, disconnected_at,
        disconnect_reason)
      select gen_random_uuid(), 'pbx' || s,
        case when d = 0 then ${FIRST}::timestamptz
          else ${FIRST}::timestamptz + d * interval '1 day' + interval '12 hours 5 minutes' end,
        case when d < ${DAYS - 1}
          then ${FIRST}::timestamptz + (d + 1) * interval '1 day' + interval '12 hours' end,
        case when d < ${DAYS - 1} then 'recorder restart' end
      from generate_series(1, ${SERVERS}) s, generate_series(0, ${DAYS - 1}) d`);
    // Call i starts at i × (32 days / 500,000) ≈ every 5.5 s, on server i mod 64, and lasts
    // 30 s to 10 min; one in 1,000 never ended.
    await store.db.execute(sql`insert into calls (server, call_id, started_at, ended_at, src, dst,
        legs, complete)
      select 'pbx' || (i % ${SERVERS} + 1), 'C' || i, t,
        case when i % 1000 <> 0 then t + (30 + (i::int8 * 7919) % 570) * interval '1 second' end,
        (6000 + i % 50)::text, '600', 1, i % 1000 <> 0
      from generate_series(1, ${CALLS}) i,
        lateral (select ${FIRST}::timestamptz
          + i * (${DAYS * DAY_MS / CALLS}::float8 * interval '1 millisecond') as t) st`);
    await store.db.execute(sql`analyze ami_sessions`);
    await store.db.execute(sql`analyze calls`);
    const [{ calls, sessions }] = await selectRows<{ calls: number; sessions: number }>(
      store.db,
      sql`select (select count(*)::int from calls) as calls,
        (select count(*)::int from ami_sessions) as sessions`,
    );
    const seconds = Number(((performance.now() - t0) / 1000).toFixed(1));
    console.error(`store: ${calls} calls, ${sessions} sessions in ${seconds} s`);
    figures.push({ name: "store", calls, sessions, servers: SERVERS, days: DAYS, seconds });

    const end = Date.parse(FIRST) + DAYS * DAY_MS;
    for (const range of [{ label: "1 day", days: 1 }, { label: "30 days", days: 30 }]) {
      const params = {
        tz: "UTC",
        from: new Date(end - range.days * DAY_MS).toISOString(),
        to: new Date(end).toISOString(),
      };
      const times: number[] = [];
      let rows = 0;
      for (let i = 0; i <= 3; i++) {
        const t = performance.now();
        rows = (await callsDuringGaps(store.db, params)).length;
        if (i > 0) times.push(performance.now() - t); // the first run warms the cache
      }
      const ms = median(times);
      figures.push({
        name: `calls-during-gaps, ${range.label}`,
        medianMs: Number(ms.toFixed(1)),
        runsMs: times.map((t) => Math.round(t)).join(" "),
        rows,
      });
      console.error(`calls-during-gaps, ${range.label}: median ${ms.toFixed(1)} ms (${rows} rows)`);
      if (options.explain) {
        // The query's own statement, explained: an executor that prefixes it.
        const explain = {
          execute: (query: SQLWrapper) =>
            store.db.execute(sql`explain (analyze, buffers, costs off) ${query}`),
        };
        const plan = await callsDuringGaps(explain, params) as unknown as Record<
          string,
          string
        >[];
        console.error(plan.map((line) => Object.values(line)[0]).join("\n"));
      }
    }
  } finally {
    await store.close();
    if (options.keep) console.error(`kept ${database ? `database ${database.name}` : dataDir}`);
    else await database?.drop();
    if (!options.keep || database) await Deno.remove(dataDir, { recursive: true });
  }
  return figures;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      pglite: { type: "boolean" },
      explain: { type: "boolean" },
      keep: { type: "boolean" },
    },
  });
  for (const figure of await runGapsBench(values)) {
    console.log(
      JSON.stringify({ bench: "gaps", store: values.pglite ? "pglite" : "postgres", ...figure }),
    );
  }
}
