/**
 * The endpoint queries on a store of polls only, in a minute instead of the years
 * benchmark's 10-million-event store: 50 endpoints polled every 5 minutes for 90 days
 * (1.3 million `endpoint_status` rows, ~432,000 per 30 days: the density of the years
 * store), written server-side with `generate_series` into a migrated database; about one
 * hour in 97 down, one sample in 53 lagged. Then `endpoint-availability` and
 * `endpoint-outages` over the last day and the last 30 days: p95 of 20 (1 day) and 10
 * (30 days) warm runs, as the years benchmark measures them.
 *
 * Usage: `deno run -A bench/endpoint_polls_bench.ts [--keep]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { sql } from "drizzle-orm";
import { openStore } from "../daemon/store.ts";
import { QUERIES } from "../queries/mod.ts";
import { createTestDatabase } from "../tests/pg.ts";

const DAY_MS = 86_400_000;
const FIRST = "2026-06-01T00:00:00Z";
const DAYS = 90;
const ENDPOINTS = 50;

/** One measured figure, printed as a JSON line. */
export interface PollsFigure {
  name: string;
  [key: string]: string | number | boolean;
}

function p95(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.ceil(0.95 * sorted.length) - 1];
}

/** Builds the store, measures, drops it (unless `keep`). */
export async function runEndpointPollsBench(keep = false): Promise<PollsFigure[]> {
  const database = await createTestDatabase("bench_polls");
  const store = await openStore({ url: database.url, dataDir: "/nonexistent", migrate: true });
  const figures: PollsFigure[] = [];
  try {
    const end = new Date(Date.parse(FIRST) + DAYS * DAY_MS).toISOString();
    const t0 = performance.now();
    await store.db.execute(sql`insert into endpoint_status
        (server, endpoint, observed_at, state, latency_ms, source, detail, event_id)
      select 'pbx1', 'SIP/' || (6000 + e), t,
        case when hashtext(e::text || date_trunc('hour', t)::text) % 97 = 0 then 'unreachable'
             when hashtext(e::text || t::text) % 53 = 0 then 'lagged' else 'reachable' end,
        5, 'PeerEntry', 'OK (5 ms)', row_number() over (order by t, e)
      from generate_series(1, ${ENDPOINTS}) e,
        generate_series(${FIRST}::timestamptz, ${end}::timestamptz - interval '5 min',
          interval '5 min') t
      -- In poll order, as the projector writes them: an endpoint's samples are spread
      -- over every page of the table, not side by side.
      order by t, e`);
    await store.db.execute(sql`vacuum analyze endpoint_status`);
    const [{ n }] = await store.db.execute(
      sql`select count(*)::int as n from endpoint_status`,
    ) as unknown as { n: number }[];
    console.error(`store: ${n} samples in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    figures.push({ name: "store", samples: n, endpoints: ENDPOINTS, days: DAYS });

    const lastDay = Date.parse(FIRST) + (DAYS - 1) * DAY_MS;
    const ranges = [
      { label: "1 day", from: lastDay, runs: 20, targetMs: 200 },
      { label: "30 days", from: lastDay - 29 * DAY_MS, runs: 10, targetMs: 2000 },
    ];
    for (const name of ["endpoint-availability", "endpoint-outages"]) {
      const query = QUERIES.find((q) => q.name === name)!;
      for (const range of ranges) {
        const args = {
          tz: "UTC",
          from: new Date(range.from).toISOString(),
          to: new Date(lastDay + DAY_MS).toISOString(),
        };
        const times: number[] = [];
        let rows = 0;
        for (let i = 0; i <= range.runs; i++) {
          const t = performance.now();
          rows = (await query.run(store.db, args)).length;
          if (i > 0) times.push(performance.now() - t); // the first run warms the cache
        }
        const ms = p95(times);
        figures.push({
          name: `query ${name}, ${range.label}`,
          p95Ms: Number(ms.toFixed(1)),
          rows,
          withinTarget: ms < range.targetMs,
        });
        console.error(`query ${name}, ${range.label}: p95 ${ms.toFixed(1)} ms (${rows} rows)`);
      }
    }
  } finally {
    await store.close();
    if (keep) console.error(`kept database ${database.name}`);
    else await database.drop();
  }
  return figures;
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { keep: { type: "boolean" } } });
  for (const figure of await runEndpointPollsBench(values.keep)) {
    console.log(JSON.stringify({ bench: "endpoint-polls", ...figure }));
  }
}
