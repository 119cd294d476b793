/**
 * The embedded store (PGlite in a worker, served over the PostgreSQL protocol):
 *
 * - **stall**: the longest event-loop pause of the daemon's thread while 30-day queries
 *   run on a store holding a month of synthetic traffic, beside the same queries on a
 *   PGlite opened in the thread itself (the daemon before the worker);
 * - **memory**: the daemon's RSS while `deno task demo` runs on the embedded store at
 *   the demo's rate (a few events per second): peak, and steady (median of the second
 *   half), first on a fresh data directory (the store is created), then reopened.
 *
 * Usage: `deno run -A bench/embedded_bench.ts [stall|memory ...] [--events N] [--seconds S]`
 *
 * @module
 */
import { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/pglite";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { runProjectionsOnce } from "../daemon/projections/projector.ts";
import { openStore, type StoreDatabase } from "../daemon/store.ts";
import { QUERIES, type QueryArgs } from "../queries/mod.ts";
import * as schema from "../schema/mod.ts";
import { insertEventRecords, insertSession } from "../tests/load_events.ts";
import { generateCallTraffic } from "./call_traffic.ts";

/** One measured figure. */
export interface EmbeddedFigure {
  scenario: string;
  [figure: string]: string | number;
}

/** The 30-day queries the stall scenario runs (the slowest on PostgreSQL). */
const LONG_QUERIES = ["endpoint-availability", "peak-concurrency", "missed-calls", "heatmap"];

/** Measures the longest pause of this thread's event loop while `work` runs. */
async function longestPause(work: () => Promise<unknown>): Promise<{ ms: number; pause: number }> {
  let longest = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last - 5);
    last = now;
  }, 5);
  const started = performance.now();
  await work();
  const ms = performance.now() - started;
  clearInterval(timer);
  const now = performance.now();
  longest = Math.max(longest, now - last - 5);
  return { ms, pause: Math.max(0, longest) };
}

async function runQueries(db: StoreDatabase): Promise<void> {
  for (const name of LONG_QUERIES) {
    const query = QUERIES.find((q) => q.name === name)!;
    await query.run(db, { tz: "UTC" } as QueryArgs);
  }
}

/** The stall scenario (see the module doc). */
export async function stallBench(
  events: number,
  log: (line: string) => void,
): Promise<EmbeddedFigure[]> {
  const dataDir = await Deno.makeTempDir({ prefix: "dami-bench-embedded-" });
  const figures: EmbeddedFigure[] = [];
  let stored = 0;
  try {
    const store = await openStore({ dataDir });
    try {
      const sessionId = crypto.randomUUID();
      const t0 = performance.now();
      const summary = await generateCallTraffic({
        events,
        calls: Math.round(events / 20),
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
      stored = summary.events;
      await runProjectionsOnce(store);
      await store.db.execute(sql`analyze`);
      log(
        `stall: ${summary.events} events, ${summary.calls} calls over 30 days stored and projected in ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s`,
      );
      await runQueries(store.db); // warm
      const worker = await longestPause(() => runQueries(store.db));
      figures.push({
        scenario: "30-day queries, PGlite in a worker (this daemon)",
        queries: LONG_QUERIES.join(", "),
        events: summary.events,
        queriesMs: Math.round(worker.ms),
        longestPauseMs: Math.round(worker.pause),
      });
      log(
        `stall: worker: queries took ${Math.round(worker.ms)} ms, longest event-loop pause ${
          Math.round(worker.pause)
        } ms`,
      );
    } finally {
      await store.close();
    }
    // The same files opened in this thread: what the daemon did before the worker.
    const client = new PGlite(`${dataDir}/pglite`);
    await client.waitReady;
    try {
      const db = drizzle({ client, schema }) as unknown as StoreDatabase;
      await runQueries(db); // warm
      const inThread = await longestPause(() => runQueries(db));
      figures.push({
        scenario: "30-day queries, PGlite in the daemon's thread (before)",
        queries: LONG_QUERIES.join(", "),
        events: stored,
        queriesMs: Math.round(inThread.ms),
        longestPauseMs: Math.round(inThread.pause),
      });
      log(
        `stall: in-thread: queries took ${Math.round(inThread.ms)} ms, longest event-loop pause ${
          Math.round(inThread.pause)
        } ms`,
      );
    } finally {
      await client.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
  return figures;
}

/** RSS of a process, in MB (Linux), or undefined once it is gone. */
async function rssMb(pid: number): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The processes started by `pid`, recursively. */
async function descendants(pid: number): Promise<number[]> {
  const found: number[] = [];
  try {
    for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
      const text = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/children`)
        .catch(() => "");
      for (const child of text.split(" ").filter(Boolean).map(Number)) {
        found.push(child, ...await descendants(child));
      }
    }
  } catch {
    // gone
  }
  return found;
}

/** Runs the demo for `seconds` in `cwd`, sampling its RSS. */
async function sampleDemo(cwd: string, seconds: number): Promise<{
  peak: number;
  steady: number;
  treePeak: number;
  events: number;
}> {
  const main = fileURLToPath(new URL("../daemon/main.ts", import.meta.url));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "--demo"],
    cwd,
    env: { DATABASE_URL: "", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const output = new Response(child.stdout).text();
  const samples: number[] = [];
  let peak = 0;
  let treePeak = 0;
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    const rss = await rssMb(child.pid);
    if (rss === undefined) break;
    samples.push(rss);
    peak = Math.max(peak, rss);
    let tree = rss;
    for (const pid of await descendants(child.pid)) tree += (await rssMb(pid)) ?? 0;
    treePeak = Math.max(treePeak, tree);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  child.kill("SIGINT");
  await child.status;
  const text = await output;
  const events = Number(/"stored":(\d+)/.exec(text)?.[1] ?? 0);
  const second = samples.slice(Math.floor(samples.length / 2)).sort((a, b) => a - b);
  return {
    peak: Math.round(peak),
    steady: Math.round(second[Math.floor(second.length / 2)] ?? 0),
    treePeak: Math.round(treePeak),
    events,
  };
}

/** The memory scenario (see the module doc). */
export async function memoryBench(
  seconds: number,
  log: (line: string) => void,
): Promise<EmbeddedFigure[]> {
  const cwd = await Deno.makeTempDir({ prefix: "dami-bench-demo-" });
  const figures: EmbeddedFigure[] = [];
  try {
    for (const run of ["first start (creates the store)", "restart (store exists)"]) {
      const result = await sampleDemo(cwd, seconds);
      figures.push({
        scenario: `deno task demo on the embedded store, ${seconds} s, ${run}`,
        peakRssMb: result.peak,
        steadyRssMb: result.steady,
        peakRssWithChildrenMb: result.treePeak,
        eventsStored: result.events,
      });
      log(
        `memory: ${run}: daemon peak ${result.peak} MB, steady ${result.steady} MB (with child processes: peak ${result.treePeak} MB), ${result.events} events in ${seconds} s`,
      );
    }
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
  return figures;
}

/** Runs the wanted scenarios; one JSON object per figure. */
export async function runEmbeddedBench(
  wanted: string[],
  options: { events?: number; seconds?: number } = {},
): Promise<EmbeddedFigure[]> {
  const log = (line: string) => console.error(line);
  const figures: EmbeddedFigure[] = [];
  if (wanted.includes("stall")) figures.push(...await stallBench(options.events ?? 300_000, log));
  if (wanted.includes("memory")) figures.push(...await memoryBench(options.seconds ?? 120, log));
  return figures;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { events: { type: "string" }, seconds: { type: "string" } },
    allowPositionals: true,
  });
  const figures = await runEmbeddedBench(
    positionals.length > 0 ? positionals : ["stall", "memory"],
    {
      events: values.events === undefined ? undefined : Number(values.events),
      seconds: values.seconds === undefined ? undefined : Number(values.seconds),
    },
  );
  for (const figure of figures) console.log(JSON.stringify(figure));
}
