/**
 * "Running for years" benchmark (`deno task bench years`), on PostgreSQL:
 *
 * 1. Ingest, side by side in one run: the batch writer's COPY (batches of 5,000, as the
 *    daemon) into the partitioned `ami_events`, into the unpartitioned table of the
 *    previous release (the migrations before partitioning), and into the partitioned table with a
 *    btree on `received_at` added (what BRIN saves); runs interleaved, median reported.
 * 2. A store of 90 days: one day of synthetic traffic from the recorded call shapes
 *    (`call_traffic.ts`: 5,800 calls, 50 peers polled every 5 minutes, ~111,000
 *    events) is stored and projected, then copied server-side (`INSERT ... SELECT`,
 *    fresh session, uniqueids and times per day) into 89 more days: >= 10 million events,
 *    >= 500,000 calls.
 * 3. Table and index sizes per million events; BRIN vs btree on `received_at`.
 * 4. Every named query over the last day and over the last 30 days: p95 of 20 (1 day)
 *    and 10 (30 days) warm runs.
 *    Then calls-during-gaps again with gaps that hold calls (a rolled-back transaction).
 * 5. Every API endpoint over HTTP for the same two ranges, the same runs: each named query,
 *    `/api/calls` pages (first and mid-range, with and without filters), `/api/calls/{id}`,
 *    the first 1,000 events of `/api/events?from=`, `/api/live`.
 *
 * Usage: `deno run -A bench/years_bench.ts [--keep] [--db NAME] [--skip-ingest]
 * [--ingest-only] [--query NAME] [--api-only | --no-api]`; with `--db` an existing database
 * of a previous `--keep` run is reused (step 2 skipped); `--query` measures that query only
 * (directly and through the API); `--api-only` skips steps 3 and 4, `--no-api` step 5.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { BatchWriter } from "../daemon/batch_writer.ts";
import { createEventPartitions } from "../daemon/event_partitions.ts";
import { type EventRecord, eventRecord } from "../daemon/ingest_record.ts";
import { startApi } from "../daemon/api/start.ts";
import { startHttp } from "../daemon/http.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";
import { runProjectionsOnce } from "../daemon/projections/projector.ts";
import type { ColumnRecord } from "../daemon/projections/write.ts";
import { MIGRATIONS_FOLDER, openStore, type Store } from "../daemon/store.ts";
import { selectRows } from "../queries/db.ts";
import { QUERIES, type QueryArgs } from "../queries/mod.ts";
import { insertEventRecords, insertSession } from "../tests/load_events.ts";
import { createTestDatabase, TEST_PG_BASE } from "../tests/pg.ts";
import { generateCallTraffic } from "./call_traffic.ts";

const DAYS = 90;
const CALLS_PER_DAY = 5_800;
/** 288 poll rounds of 52 events (5 minutes) after the calls' ~16.6 events each. */
const EVENTS_PER_DAY = 111_600;
const FIRST_DAY = "2026-06-01";
/** The end of the generated day, where the copies start. */
const DAY1 = "2026-06-02T00:00:00Z";
const DAY_MS = 86_400_000;

/** One measured figure, printed as a JSON line. */
export interface YearsFigure {
  name: string;
  [key: string]: string | number | boolean | null;
}

const log = (line: string) => console.error(line);

function p95(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.ceil(0.95 * sorted.length) - 1];
}

function eventRecordOf(row: ColumnRecord, sessionId: string): EventRecord {
  const fields = row.fields as Record<string, string | string[]>;
  const headers = Object.entries(fields).flatMap(([k, v]) =>
    (Array.isArray(v) ? v : [v]).map((value) => [k, String(value)] as const)
  );
  return eventRecord(String(row.server), sessionId, {
    kind: "event",
    headers,
    seq: Number(row.seq),
    receivedAt: Date.parse(String(row.received_at)),
  });
}

/** Step 1: COPY ingest into three layouts, interleaved. */
async function ingestSideBySide(figures: YearsFigure[]): Promise<void> {
  const rows: ColumnRecord[] = [];
  await generateCallTraffic({
    events: 300_000,
    calls: 15_000,
    startDay: FIRST_DAY,
    days: 3,
    chunkRows: 5000,
    server: "pbx1",
    sessionId: crypto.randomUUID(),
    seed: 11,
    sink: (chunk) => {
      rows.push(...chunk);
      return Promise.resolve();
    },
  });
  log(`ingest: ${rows.length} events of synthetic traffic over 3 days, batches of 5,000`);
  const partitioned = await createTestDatabase("bench_years_part");
  const unpartitioned = await createTestDatabase("bench_years_unpart");
  const btree = await createTestDatabase("bench_years_btree");
  const stores: Record<string, Store> = {};
  try {
    // The previous release's layout: the migrations before partition_ami_events.
    const folder = await Deno.makeTempDir();
    await Deno.mkdir(`${folder}/meta`);
    const journal = JSON.parse(await Deno.readTextFile(`${MIGRATIONS_FOLDER}/meta/_journal.json`));
    journal.entries = journal.entries.slice(
      0,
      journal.entries.findIndex((e: { tag: string }) => e.tag.endsWith("_partition_ami_events")),
    );
    await Deno.writeTextFile(`${folder}/meta/_journal.json`, JSON.stringify(journal));
    for (const { tag } of journal.entries) {
      await Deno.copyFile(`${MIGRATIONS_FOLDER}/${tag}.sql`, `${folder}/${tag}.sql`);
    }
    const client = postgres(unpartitioned.url, { max: 1, onnotice: () => {} });
    await migrate(drizzle(client), { migrationsFolder: folder });
    await client.end();
    await Deno.remove(folder, { recursive: true });

    stores.partitioned = await openStore({ url: partitioned.url, dataDir: "/nonexistent" });
    stores.unpartitioned = await openStore({
      url: unpartitioned.url,
      dataDir: "/nonexistent",
      migrate: false,
    });
    stores.btree = await openStore({ url: btree.url, dataDir: "/nonexistent" });
    await stores.btree.db.execute(
      sql`create index ami_events_received_btree on ami_events (received_at)`,
    );
    const times: Record<string, number[]> = { partitioned: [], unpartitioned: [], btree: [] };
    for (let round = 0; round < 3; round++) {
      for (const layout of ["partitioned", "unpartitioned", "btree"]) {
        const store = stores[layout];
        if (layout !== "unpartitioned") {
          const ms = Date.parse(`${FIRST_DAY}T00:00:00Z`);
          await createEventPartitions(store.db, [0, 1, 2, 3].map((d) => ms + d * DAY_MS));
        }
        const sessionId = crypto.randomUUID(); // a fresh session: every row is new
        const records = rows.map((r) => eventRecordOf(r, sessionId));
        const writer = new BatchWriter(store);
        const t0 = performance.now();
        for (let i = 0; i < records.length; i += 5000) {
          await writer.write(records.slice(i, i + 5000));
        }
        const s = (performance.now() - t0) / 1000;
        times[layout].push(records.length / s);
        log(`  round ${round + 1} ${layout}: ${Math.round(records.length / s)} events/s`);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1];
    for (const [layout, rates] of Object.entries(times)) {
      figures.push({
        name: `ingest COPY, ${layout}`,
        eventsPerSecond: Math.round(median(rates)),
        runs: rates.map(Math.round).join(" "),
      });
    }
    const ratio = median(times.partitioned) / median(times.unpartitioned);
    figures.push({ name: "ingest partitioned / unpartitioned", ratio: Number(ratio.toFixed(3)) });
    log(`ingest: partitioned is ${(ratio * 100).toFixed(1)}% of unpartitioned`);
  } finally {
    for (const store of Object.values(stores)) await store.close();
    await partitioned.drop();
    await unpartitioned.drop();
    await btree.drop();
  }
}

/** Step 2: one day generated and projected, copied into 89 more. */
async function buildStore(store: Store): Promise<void> {
  const db = store.db;
  const t0 = performance.now();
  const sessionId = crypto.randomUUID();
  const firstMs = Date.parse(`${FIRST_DAY}T00:00:00Z`);
  await createEventPartitions(db, Array.from({ length: DAYS }, (_, d) => firstMs + d * DAY_MS));
  const summary = await generateCallTraffic({
    events: EVENTS_PER_DAY,
    calls: CALLS_PER_DAY,
    startDay: FIRST_DAY,
    days: 1,
    chunkRows: 5000,
    server: "pbx1",
    sessionId,
    seed: 5,
    sink: (rows) => insertEventRecords(db, rows),
  });
  await insertSession(db, {
    id: sessionId,
    server: "pbx1",
    connectedAtMs: firstMs,
    disconnectedAtMs: firstMs + DAY_MS - 1,
  });
  await runProjectionsOnce(store);
  log(
    `day 1: ${summary.events} events (${summary.calls} calls, ${summary.pollEvents} poll events) stored and projected in ${
      ((performance.now() - t0) / 1000).toFixed(0)
    } s`,
  );
  const day0 = `ami_events_${FIRST_DAY.replaceAll("-", "")}`;
  // Day k: a new session (its id derived from k), uniqueids and call ids suffixed with .k,
  // every time k days later.
  for (let k = 1; k < DAYS; k++) {
    const t = performance.now();
    const shift = sql`(${k} * interval '1 day')`;
    await db.transaction(async (tx) => {
      await tx.execute(sql`insert into ami_sessions (id, server, connected_at, disconnected_at,
          banner, host, port, event_count)
        select md5(id::text || ${k})::uuid, server, connected_at + ${shift},
          disconnected_at + ${shift}, banner, host, port, event_count
        from ami_sessions where id = ${sessionId}::uuid`);
      await tx.execute(sql`insert into ami_events (server, session_id, seq, received_at, event,
          uniqueid, linkedid, channel, action_id, fields, raw_b64, escaped, inserted_at)
        select server, md5(session_id::text || ${k})::uuid, seq, received_at + ${shift}, event,
          uniqueid || '.' || ${k}, linkedid || '.' || ${k}, channel, action_id || '.' || ${k},
          fields, raw_b64, escaped, inserted_at + ${shift}
        from ${sql.raw(day0)} order by id`);
      await tx.execute(
        sql`insert into calls (server, call_id, started_at, answered_at, ended_at, src, dst,
          answered_by, disposition, duration_s, billsec_s, hangup_cause, transferred, queue, legs,
          complete, src_name, context, src_endpoint)
        select server, call_id || '.' || ${k}, started_at + ${shift}, answered_at + ${shift},
          ended_at + ${shift}, src, dst, answered_by, disposition, duration_s, billsec_s,
          hangup_cause, transferred, queue, legs, complete, src_name, context, src_endpoint
        from calls where started_at < ${DAY1}::timestamptz`,
      );
      await tx.execute(
        sql`insert into call_legs (server, uniqueid, call_id, linkedid, channel, endpoint,
          caller_num, caller_name, context, exten, created_at, answered_at, hungup_at, cause,
          cause_txt, dial_status)
        select server, uniqueid || '.' || ${k}, call_id || '.' || ${k}, linkedid || '.' || ${k},
          channel, endpoint, caller_num, caller_name, context, exten, created_at + ${shift},
          answered_at + ${shift}, hungup_at + ${shift}, cause, cause_txt, dial_status
        from call_legs where created_at < ${DAY1}::timestamptz`,
      );
      await tx.execute(
        sql`insert into queue_calls (server, uniqueid, call_id, queue, caller, joined_at,
          connected_at, left_at, agent, hold_s, talk_s, outcome)
        select server, uniqueid || '.' || ${k}, call_id || '.' || ${k}, queue, caller,
          joined_at + ${shift}, connected_at + ${shift}, left_at + ${shift}, agent, hold_s,
          talk_s, outcome
        from queue_calls where joined_at < ${DAY1}::timestamptz`,
      );
      await tx.execute(
        sql`insert into queue_attempts (server, uniqueid, call_id, caller_uniqueid, queue, agent,
          called_at, ring_ms, outcome)
        select server, uniqueid || '.' || ${k}, call_id || '.' || ${k},
          caller_uniqueid || '.' || ${k}, queue, agent, called_at + ${shift}, ring_ms, outcome
        from queue_attempts
        where called_at < ${DAY1}::timestamptz`,
      );
      await tx.execute(
        sql`insert into endpoint_status (server, endpoint, observed_at, state, latency_ms, source,
          event_id, detail)
        select server, endpoint, observed_at + ${shift}, state, latency_ms, source,
          event_id + ${k} * 100000000::bigint, detail
        from endpoint_status where observed_at < ${DAY1}::timestamptz`,
      );
    });
    if (k % 10 === 0 || k === DAYS - 1) {
      log(`  day ${k + 1} of ${DAYS} copied (${((performance.now() - t) / 1000).toFixed(1)} s)`);
    }
  }
  await db.execute(sql`insert into projection_checkpoints (name, last_event_id, updated_at)
    select 'call-history', max(id), now() from ami_events
    on conflict (name) do update set last_event_id = excluded.last_event_id`);
  await db.execute(sql`vacuum analyze`);
  log(`store built in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

/** Step 3: sizes per million events, BRIN vs btree on received_at. */
async function sizes(store: Store, figures: YearsFigure[]): Promise<void> {
  const db = store.db;
  const [{ events }] = await selectRows<{ events: number }>(
    db,
    sql`select count(*)::float8 as events from ami_events`,
  );
  const perMillion = (bytes: number) => Number((bytes / (events / 1e6) / 2 ** 20).toFixed(1));
  const [table] = await selectRows<{ bytes: number }>(
    db,
    sql`select sum(pg_table_size(relid))::float8 as bytes
        from pg_partition_tree('ami_events') where isleaf`,
  );
  figures.push({
    name: "ami_events table (heap + TOAST), MiB per million events",
    mib: perMillion(table.bytes),
  });
  for (
    const parent of [
      "ami_events_id_received_at_pk",
      "ami_events_session_seq_key",
      "ami_events_event_received_idx",
      "ami_events_received_brin",
      "ami_events_linkedid_idx",
      "ami_events_uniqueid_idx",
      "ami_events_action_id_idx",
    ]
  ) {
    const [row] = await selectRows<{ bytes: number }>(
      db,
      sql`select sum(pg_relation_size(relid))::float8 as bytes
          from pg_partition_tree(${parent}::regclass) where isleaf`,
    );
    figures.push({ name: `index ${parent}, MiB per million events`, mib: perMillion(row.bytes) });
  }
  log(`sizes: ${JSON.stringify(figures.slice(-8))}`);

  // BRIN vs btree: size, and an hour's range read with each.
  const hourStart = sql`${FIRST_DAY + "T00:00:00Z"}::timestamptz + interval '45 days 10 hours'`;
  const hour = sql`received_at >= ${hourStart} and received_at < ${hourStart} + interval '1 hour'`;
  const rangeRead = async () => {
    const times: number[] = [];
    for (let i = 0; i < 11; i++) {
      const t0 = performance.now();
      await db.execute(sql`select count(*), max(seq) from ami_events where ${hour}`);
      if (i > 0) times.push(performance.now() - t0);
    }
    return p95(times);
  };
  const brinMs = await rangeRead();
  const t0 = performance.now();
  await db.execute(sql`create index ami_events_received_btree on ami_events (received_at)`);
  const buildS = (performance.now() - t0) / 1000;
  await db.execute(sql`analyze ami_events`);
  const [btree] = await selectRows<{ bytes: number }>(
    db,
    sql`select sum(pg_relation_size(relid))::float8 as bytes
        from pg_partition_tree('ami_events_received_btree'::regclass) where isleaf`,
  );
  const btreeMs = await rangeRead();
  await db.execute(sql`drop index ami_events_received_btree`);
  figures.push({
    name: "btree on received_at instead of BRIN",
    btreeMiBPerMillion: perMillion(btree.bytes),
    btreeBuildSeconds: Number(buildS.toFixed(1)),
    hourRangeP95MsBrin: Number(brinMs.toFixed(1)),
    hourRangeP95MsBtree: Number(btreeMs.toFixed(1)),
  });
  log(`BRIN vs btree: ${JSON.stringify(figures.at(-1))}`);
}

interface Range {
  label: string;
  from: number;
  to: number;
  runs: number;
  targetMs: number;
}

/** The last day and the last 30 days of the store, with their runs and targets. */
function measuredRanges(): Range[] {
  const lastDay = Date.parse(`${FIRST_DAY}T00:00:00Z`) + (DAYS - 1) * DAY_MS;
  return [
    { label: "1 day", from: lastDay, to: lastDay + DAY_MS, runs: 20, targetMs: 200 },
    {
      label: "30 days",
      from: lastDay - 29 * DAY_MS,
      to: lastDay + DAY_MS,
      runs: 10,
      targetMs: 2000,
    },
  ];
}

/** A leg's uniqueid from the range's first day (the call-timeline's call). */
async function sampleUniqueid(store: Store, range: Range): Promise<string> {
  const [sample] = await selectRows<{ uniqueid: string }>(
    store.db,
    sql`select uniqueid from call_legs where created_at >= ${
      new Date(range.from).toISOString()
    }::timestamptz
        order by created_at limit 1 offset 1000`,
  );
  return sample.uniqueid;
}

/** Runs `run` 1 + `runs` times (the first warms the cache); the p95 and the last result. */
async function timed<T>(runs: number, run: () => Promise<T>): Promise<{ ms: number; last: T }> {
  const times: number[] = [];
  let last!: T;
  for (let i = 0; i <= runs; i++) {
    const t0 = performance.now();
    last = await run();
    if (i > 0) times.push(performance.now() - t0);
  }
  return { ms: p95(times), last };
}

function report(
  figures: YearsFigure[],
  name: string,
  range: Range,
  ms: number,
  rows: number,
): void {
  figures.push({ name, p95Ms: Number(ms.toFixed(1)), rows, withinTarget: ms < range.targetMs });
  log(
    `${name}: p95 ${ms.toFixed(1)} ms (${rows} rows)${
      ms < range.targetMs ? "" : `  OVER ${range.targetMs} ms`
    }`,
  );
}

function queryArgs(name: string, range: Range, call: string): QueryArgs {
  return name === "call-timeline" ? { call, tz: "UTC" } : {
    tz: "UTC",
    from: new Date(range.from).toISOString(),
    to: new Date(range.to).toISOString(),
  };
}

/** Step 4: every query over one day and 30 days. */
async function queries(store: Store, figures: YearsFigure[], only?: string): Promise<void> {
  const ranges = measuredRanges();
  const call = await sampleUniqueid(store, ranges[0]);
  for (const query of QUERIES) {
    if (only !== undefined && query.name !== only) continue;
    for (const range of ranges) {
      const { ms, last } = await timed(
        range.runs,
        () => query.run(store.db, queryArgs(query.name, range, call)),
      );
      report(figures, `query ${query.name}, ${range.label}`, range, ms, last.length);
    }
  }
}

/**
 * Step 4b: calls-during-gaps where the gaps hold calls. The store's gaps are 1 ms at
 * midnight (one AMI session per day), which no call spans: here, in a transaction rolled
 * back afterwards, every day's gap is moved to 12:00-12:05 and one call in about 1,000
 * never ended (ends lost in a gap), so each gap has calls to find.
 */
async function gapsWithCalls(store: Store, figures: YearsFigure[]): Promise<void> {
  const query = QUERIES.find((q) => q.name === "calls-during-gaps")!;
  class Rollback extends Error {}
  try {
    await store.db.transaction(async (tx) => {
      await tx.execute(sql`update ami_sessions
        set connected_at = connected_at + interval '12 hours 5 minutes',
          disconnected_at = disconnected_at + interval '12 hours 1 millisecond'`);
      await tx.execute(sql`update calls set ended_at = null where hashtext(call_id) % 1000 = 0`);
      for (const range of measuredRanges()) {
        const { ms, last } = await timed(
          range.runs,
          () => query.run(tx, queryArgs(query.name, range, "")),
        );
        report(
          figures,
          `query calls-during-gaps, 5-minute gaps at noon, 0.1% of calls never ended, ${range.label}`,
          range,
          ms,
          last.length,
        );
      }
      throw new Rollback();
    });
  } catch (error) {
    if (!(error instanceof Rollback)) throw error;
  }
}

/** `next_cursor` as `GET /api/calls` writes it (the bench builds one to land mid-range). */
function callsCursor(t: string, s: string, c: string): string {
  return btoa(JSON.stringify({ t, s, c })).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

/**
 * Step 5: every API endpoint over HTTP, in this process as the daemon serves it
 * (`startApi` behind `startHttp`): each named query, `GET /api/calls` (the first page
 * and a page in the middle of the range, unfiltered and with filters), `GET
 * /api/calls/{call_id}` (a call of the range's first day), the first 1,000 events of
 * `GET /api/events?from=` at the range's start, and `GET /api/live`.
 */
async function apiEndpoints(
  store: Store,
  figures: YearsFigure[],
  only?: string,
): Promise<void> {
  const token = "bench-token-0123456789abcdef";
  const handle = startApi({ db: store.db, token });
  await handle.ready;
  const http = startHttp({
    listen: "127.0.0.1:0",
    servers: [],
    storeHealth: () => ({ writable: true }),
    metrics: new DaemonMetrics(),
    api: handle,
  });
  const base = `http://127.0.0.1:${http.port}`;
  const headers = { authorization: `Bearer ${token}` };
  /** A JSON GET; resolves with the number of rows it holds. */
  const getJson = async (path: string, count: (body: unknown) => number) => {
    const response = await fetch(`${base}${path}`, { headers });
    if (response.status !== 200) {
      throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
    }
    return count(await response.json());
  };
  const q = (params: Record<string, string>) => new URLSearchParams(params).toString();
  try {
    for (const range of measuredRanges()) {
      const from = new Date(range.from).toISOString();
      const to = new Date(range.to).toISOString();
      const call = await sampleUniqueid(store, range);
      for (const query of QUERIES) {
        if (only !== undefined && query.name !== only) continue;
        const args = queryArgs(query.name, range, call) as Record<string, string>;
        const { ms, last } = await timed(
          range.runs,
          () =>
            getJson(
              `/api/queries/${query.name}?${q(args)}`,
              (b) => (b as { rows: [] }).rows.length,
            ),
        );
        report(figures, `GET /api/queries/${query.name}, ${range.label}`, range, ms, last);
      }
      if (only !== undefined) continue;

      // Filters: the busiest caller number and endpoint, the rarest disposition, of the range's
      // last day.
      const dayFrom = new Date(range.to - DAY_MS).toISOString();
      const [{ number }] = await selectRows<{ number: string }>(
        store.db,
        sql`select src as number from calls where started_at >= ${dayFrom}::timestamptz
              and src is not null group by src order by count(*) desc limit 1`,
      );
      const [{ endpoint }] = await selectRows<{ endpoint: string }>(
        store.db,
        sql`select endpoint from call_legs where created_at >= ${dayFrom}::timestamptz
              and endpoint is not null group by endpoint order by count(*) desc limit 1`,
      );
      const [{ disposition }] = await selectRows<{ disposition: string }>(
        store.db,
        sql`select disposition from calls where started_at >= ${dayFrom}::timestamptz
              and disposition is not null group by disposition order by count(*) limit 1`,
      );
      // A cursor in the middle of the range: the row a client reaches after paging
      // through half of it (built here rather than paged to, the same keyset).
      const [mid] = await selectRows<{ t: string; server: string; call_id: string }>(
        store.db,
        sql`select to_char(started_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as t,
              server, call_id from calls
            where started_at >= ${from}::timestamptz and started_at < ${to}::timestamptz
            order by started_at desc, server desc, call_id desc
            offset (select count(*) / 2 from calls
                    where started_at >= ${from}::timestamptz and started_at < ${to}::timestamptz)
            limit 1`,
      );
      const cursor = callsCursor(mid.t, mid.server, mid.call_id);
      const lists: [string, Record<string, string>][] = [
        ["first page", {}],
        ["mid-range page", { cursor }],
        [`number=<busiest>, first page`, { number }],
        [`number=<busiest>, mid-range page`, { number, cursor }],
        [`endpoint=<busiest>, first page`, { endpoint }],
        [`endpoint=<busiest>, mid-range page`, { endpoint, cursor }],
        [`disposition=<rarest>, first page`, { disposition }],
        [`disposition=<rarest>, mid-range page`, { disposition, cursor }],
      ];
      for (const [label, params] of lists) {
        const { ms, last } = await timed(
          range.runs,
          () =>
            getJson(
              `/api/calls?${q({ from, to, tz: "UTC", ...params })}`,
              (b) => (b as { calls: [] }).calls.length,
            ),
        );
        report(figures, `GET /api/calls ${label}, ${range.label}`, range, ms, last);
      }

      // One call with its legs, queue stays and events: a call of the range's first day.
      const [{ call_id }] = await selectRows<{ call_id: string }>(
        store.db,
        sql`select call_id from calls where started_at >= ${from}::timestamptz
            order by started_at limit 1 offset 1000`,
      );
      const one = await timed(
        range.runs,
        () =>
          getJson(
            `/api/calls/${encodeURIComponent(call_id)}`,
            (b) => (b as { events: [] }).events.length,
          ),
      );
      report(
        figures,
        `GET /api/calls/{call_id} (a call of the range's first day), ${range.label}`,
        range,
        one.ms,
        one.last,
      );

      // The event stream from the range's start: until its first 1,000 events arrived.
      const stream = await timed(range.runs, async () => {
        const abort = new AbortController();
        const response = await fetch(`${base}/api/events?${q({ from, tz: "UTC" })}`, {
          headers,
          signal: abort.signal,
        });
        const reader = response.body!.getReader();
        const decoder = new TextDecoder();
        let events = 0;
        let text = "";
        while (events < 1000) {
          const { value, done } = await reader.read();
          if (done) break;
          text += decoder.decode(value, { stream: true });
          const lines = text.split("\n");
          text = lines.pop()!;
          events += lines.filter((l) => l.startsWith("id: ")).length;
        }
        abort.abort();
        await reader.cancel().catch(() => {});
        return events;
      });
      report(
        figures,
        `GET /api/events?from=<range start>, first 1,000 events, ${range.label}`,
        range,
        stream.ms,
        stream.last,
      );
    }
    if (only === undefined) {
      const range = measuredRanges()[0];
      const { ms, last } = await timed(
        range.runs,
        () => getJson("/api/live", (b) => Object.keys(b as object).length),
      );
      report(figures, "GET /api/live (no range)", range, ms, last);
    }
  } finally {
    handle.close();
    await http.close();
    await handle.stop();
  }
}

/** Runs the benchmark; resolves with its figures. */
export async function runYearsBench(
  options: {
    keep?: boolean;
    db?: string;
    skipIngest?: boolean;
    ingestOnly?: boolean;
    query?: string;
    apiOnly?: boolean;
    noApi?: boolean;
  } = {},
): Promise<YearsFigure[]> {
  const figures: YearsFigure[] = [];
  if (!options.skipIngest) await ingestSideBySide(figures);
  if (options.ingestOnly) return figures;
  const database = options.db === undefined
    ? await createTestDatabase("bench_years")
    : { name: options.db, url: `${TEST_PG_BASE}/${options.db}`, drop: () => Promise.resolve() };
  // A reused database was migrated when it was built.
  const store = await openStore({
    url: database.url,
    dataDir: "/nonexistent",
    migrate: options.db === undefined,
  });
  try {
    const [{ n }] = await selectRows<{ n: number }>(
      store.db,
      sql`select count(*)::int as n from (select 1 from ami_events limit 1) x`,
    );
    if (n === 0) await buildStore(store);
    const [counts] = await selectRows<{ events: number; calls: number }>(
      store.db,
      sql`select (select count(*) from ami_events)::int as events,
                 (select count(*) from calls)::int as calls`,
    );
    figures.push({ name: "store", events: counts.events, calls: counts.calls, days: DAYS });
    log(`store ${database.name}: ${counts.events} events, ${counts.calls} calls over ${DAYS} days`);
    if (options.query === undefined && !options.apiOnly) await sizes(store, figures);
    if (!options.apiOnly) await queries(store, figures, options.query);
    if (!options.apiOnly && [undefined, "calls-during-gaps"].includes(options.query)) {
      await gapsWithCalls(store, figures);
    }
    if (!options.noApi) await apiEndpoints(store, figures, options.query);
  } finally {
    await store.close();
    if (options.keep || options.db !== undefined) log(`kept database ${database.name}`);
    else await database.drop();
  }
  return figures;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      keep: { type: "boolean" },
      db: { type: "string" },
      "skip-ingest": { type: "boolean" },
      "ingest-only": { type: "boolean" },
      query: { type: "string" },
      "api-only": { type: "boolean" },
      "no-api": { type: "boolean" },
    },
  });
  for (
    const figure of await runYearsBench({
      keep: values.keep,
      db: values.db,
      skipIngest: values["skip-ingest"],
      ingestOnly: values["ingest-only"],
      query: values.query,
      apiOnly: values["api-only"],
      noApi: values["no-api"],
    })
  ) {
    console.log(JSON.stringify({ bench: "years", ...figure }));
  }
}
