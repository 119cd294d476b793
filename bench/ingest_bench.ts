/**
 * Ingest benchmark: AMI bytes → `AmiParser` → `Ingest` → rows committed, on
 * PostgreSQL and on PGlite. The socket is left out (the parser gets 64 KiB chunks of
 * the fixtures' call events, as a socket read would give them); everything after it
 * is the daemon's real path: spool append and fsync, queue, batch writer, commit.
 *
 * Scenarios, each run in its own process so that its peak RSS is its own:
 * - `throughput`: 1,000,000 events fed as fast as the parser goes; events/s from the
 *   first byte to the last commit, time to drain after the last byte, peak RSS.
 * - `latency`: a steady 5,000 events/s for 20 s; p50/p99/max receive→commit delay.
 * - `replay`: 200,000 events spooled while the database is down (a refused port),
 *   then a new process-start replays the spool; events/s of the replay.
 * Also the largest event-loop stall seen (what the socket reader would have waited).
 *
 * Run: `deno run -A bench/ingest_bench.ts` (all), or with `--store postgres|pglite`,
 * `--scenario throughput|latency|replay`, `--strategy copy|insert`, `--events N`.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { parseArgs } from "node:util";
import { AmiParser } from "../dami/parser.ts";
import type { WriteStrategy } from "../daemon/batch_writer.ts";
import { uuidv7 } from "../daemon/ids.ts";
import { Ingest } from "../daemon/ingest.ts";
import { openStore, type Store } from "../daemon/store.ts";
import { createTestDatabase } from "../tests/pg.ts";
import { cpuSeconds, machineTicks } from "./proc.ts";
import { fixtureEvents, peakRssMb } from "./event_stream.ts";
import { streamPlan } from "./stream_server.ts";
import { DAMI } from "../mod.ts";

/** One scenario to run. */
export interface IngestBenchOptions {
  store: "postgres" | "pglite";
  /** V8 flags of the child process that runs the scenario (suite runs only). */
  v8Flags?: string;
  scenario: "throughput" | "socket" | "latency" | "replay";
  /**
   * Events to ingest (throughput, replay).
   * @default {1000000} for throughput, {200000} for replay
   */
  events?: number;
  /**
   * Events per second (latency).
   * @default {5000}
   */
  rate?: number;
  /**
   * Duration of the latency run.
   * @default {20}
   */
  seconds?: number;
  /**
   * How the batch writer sends events.
   * @default {"copy"}
   */
  strategy?: WriteStrategy;
  /** Most records per transaction (the `Ingest` default when omitted). */
  maxBatch?: number;
}

/** Figures of one scenario. */
export interface IngestBenchResult {
  store: "postgres" | "pglite";
  scenario: "throughput" | "socket" | "latency" | "replay";
  strategy: WriteStrategy;
  maxBatch?: number;
  events: number;
  /** Average size of one event on the wire. */
  bytesPerEvent: number;
  /** Events per second from the first byte (or the replay start) to the last commit. */
  eventsPerSecond: number;
  /** Seconds from the last byte fed to the last commit (throughput). */
  drainSeconds?: number;
  /** Receive→commit delay percentiles (latency). */
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  /** Longest the event loop (the socket reader) was kept from running. */
  maxStallMs: number;
  /** Peak resident set size of the process. */
  peakRssMb: number;
  /** Socket scenario: the whole machine's CPU busy (all cores) from connect to last commit, %. */
  machineBusyPercent?: number;
  /** Socket scenario: CPU seconds of this (the ingesting) process from connect to last commit. */
  processCpuSeconds?: number;
}

const CHUNK = 64 * 1024;
/** `DAMI_BENCH_TRACE=1`: one line per commit on stderr (batch size, queue depth). */
const TRACE = Deno.env.get("DAMI_BENCH_TRACE") === "1";
const encoder = new TextEncoder();

/** The wire bytes of `count` events (the fixtures' mix cycled), in 64 KiB chunks. */
function* chunks(count: number): Generator<Uint8Array> {
  const events = fixtureEvents().map((e) => encoder.encode(e));
  const buffer = new Uint8Array(CHUNK + 64 * 1024);
  let length = 0;
  for (let i = 0; i < count; i++) {
    const event = events[i % events.length];
    if (length + event.length > CHUNK) {
      yield buffer.slice(0, length);
      length = 0;
    }
    buffer.set(event, length);
    length += event.length;
  }
  if (length) yield buffer.slice(0, length);
}

function averageEventBytes(): number {
  const events = fixtureEvents();
  return events.reduce((sum, e) => sum + encoder.encode(e).length, 0) / events.length;
}

/** Lets I/O run, as between two socket reads (`setTimeout(0)` would be clamped to 4 ms). */
const nextTask = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Largest gap between 5 ms ticks, minus 5 ms: how long the event loop was blocked. */
function stallMeter(): { stop(): number } {
  let last = performance.now();
  let max = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    max = Math.max(max, now - last - 5);
    last = now;
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(0, Math.round(max));
    },
  };
}

async function withStore<T>(
  kind: "postgres" | "pglite",
  fn: (store: Store, dataDir: string) => Promise<T>,
): Promise<T> {
  const dataDir = await Deno.makeTempDir({ prefix: "dami-bench-" });
  const database = kind === "postgres" ? await createTestDatabase("bench_ingest") : undefined;
  const store = await openStore({ url: database?.url, dataDir });
  try {
    return await fn(store, dataDir);
  } finally {
    await store.close();
    await database?.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** An Ingest whose `done` settles once `total` events are committed. */
async function openCounting(
  store: Store,
  dataDir: string,
  total: number,
  strategy: WriteStrategy,
  maxBatch: number | undefined,
): Promise<{ ingest: Ingest; done: Promise<void> }> {
  let committed = 0;
  const done = Promise.withResolvers<void>();
  const ingest = await Ingest.open({
    store,
    dataDir,
    strategy,
    maxBatch,
    onCommitted: (receivedAt) => {
      committed += receivedAt.length;
      if (TRACE) {
        console.error(
          `${Math.round(performance.now())} ms: committed ${receivedAt.length} (${committed}), ` +
            `queue ${ingest.stats().queueDepth}, received ${ingest.stats().receivedEvents}`,
        );
      }
      if (committed >= total) done.resolve();
    },
  });
  return { ingest, done: done.promise };
}

/** Runs one scenario in this process and returns its figures. */
export async function runIngestBench(options: IngestBenchOptions): Promise<IngestBenchResult> {
  const strategy = options.strategy ?? "copy";
  const base = {
    store: options.store,
    scenario: options.scenario,
    strategy,
    maxBatch: options.maxBatch,
  };
  const bytesPerEvent = Math.round(averageEventBytes());
  if (options.scenario === "throughput") {
    const events = options.events ?? 1_000_000;
    return await withStore(options.store, async (store, dataDir) => {
      const { ingest, done } = await openCounting(
        store,
        dataDir,
        events,
        strategy,
        options.maxBatch,
      );
      const session = uuidv7();
      const parser = new AmiParser({ expectBanner: false });
      const stall = stallMeter();
      const started = performance.now();
      for (const chunk of chunks(events)) {
        for (const msg of parser.push(chunk)) ingest.event("pbx1", session, msg);
        await nextTask(); // as between two socket reads
      }
      const fed = performance.now();
      await done;
      const finished = performance.now();
      const maxStallMs = stall.stop();
      await ingest.close();
      return {
        ...base,
        events,
        bytesPerEvent,
        eventsPerSecond: Math.round(events / ((finished - started) / 1000)),
        drainSeconds: round((finished - fed) / 1000),
        maxStallMs,
        peakRssMb: Math.round(peakRssMb()),
      };
    });
  }
  if (options.scenario === "socket") {
    // End to end: an AMI peer in another process streams over loopback TCP; the DAMI
    // client parses, the daemon's path (onMessage -> Ingest.event) stores.
    const events = options.events ?? 1_000_000;
    return await withStore(options.store, async (store, dataDir) => {
      const { blocks } = streamPlan(events);
      const total = blocks * 1000;
      const { ingest, done } = await openCounting(
        store,
        dataDir,
        total,
        strategy,
        options.maxBatch,
      );
      const server = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("./stream_server.ts", import.meta.url).pathname, String(total)],
        stdout: "piped",
      }).spawn();
      const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const port = Number((await reader.read()).value?.trim());
      const session = uuidv7();
      let received = 0;
      let fed = 0;
      // As the daemon's supervisor does: events as wire bytes when plain enough, the rest parsed.
      const dami = new DAMI({
        hostname: "127.0.0.1",
        port,
        eventBytes: (bytes, start, end, seq, receivedAt) => {
          if (!ingest.eventBytes("pbx1", session, bytes, start, end, seq, receivedAt)) return false;
          if (++received === total) fed = performance.now();
          return true;
        },
      });
      dami.onMessage((msg) => {
        if (msg.kind !== "event") return;
        ingest.event("pbx1", session, msg);
        if (++received === total) fed = performance.now();
      });
      const stall = stallMeter();
      const ticks = machineTicks();
      const cpu = cpuSeconds();
      const started = performance.now();
      await dami.connectAndLogin({ username: "bench", secret: "bench" });
      // As the supervisor does: until listen(), the client holds the events it parsed.
      await dami.listen();
      await done;
      const finished = performance.now();
      const ticksAfter = machineTicks();
      const cpuAfter = cpuSeconds();
      const maxStallMs = stall.stop();
      dami.close();
      await ingest.close();
      await server.status;
      return {
        ...base,
        events: total,
        bytesPerEvent,
        eventsPerSecond: Math.round(total / ((finished - started) / 1000)),
        drainSeconds: round((finished - fed) / 1000),
        maxStallMs,
        peakRssMb: Math.round(peakRssMb()),
        machineBusyPercent: Math.round(
          100 * (ticksAfter.busy - ticks.busy) /
            (ticksAfter.busy - ticks.busy + ticksAfter.idle - ticks.idle),
        ),
        processCpuSeconds: round(cpuAfter - cpu),
      };
    });
  }
  if (options.scenario === "latency") {
    const rate = options.rate ?? 5000;
    const seconds = options.seconds ?? 20;
    const events = rate * seconds;
    return await withStore(options.store, async (store, dataDir) => {
      const delays = new Float64Array(events);
      let committed = 0;
      let allCommitted: () => void = () => {};
      const done = new Promise<void>((resolve) => allCommitted = resolve);
      const ingest = await Ingest.open({
        store,
        dataDir,
        strategy,
        maxBatch: options.maxBatch,
        onCommitted: (receivedAt, at) => {
          for (const t of receivedAt) delays[committed++] = at - t;
          if (committed >= events) allCommitted();
        },
      });
      const wire = fixtureEvents().map((e) => encoder.encode(e));
      const session = uuidv7();
      const parser = new AmiParser({ expectBanner: false });
      const stall = stallMeter();
      const started = performance.now();
      let fed = 0;
      while (fed < events) {
        const due = Math.min(events, Math.floor(((performance.now() - started) / 1000) * rate));
        if (due > fed) {
          const parts = [];
          let size = 0;
          for (; fed < due; fed++) {
            const event = wire[fed % wire.length];
            parts.push(event);
            size += event.length;
          }
          const bytes = new Uint8Array(size);
          let at = 0;
          for (const p of parts) {
            bytes.set(p, at);
            at += p.length;
          }
          for (const msg of parser.push(bytes)) ingest.event("pbx1", session, msg);
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      await done;
      const finished = performance.now();
      const maxStallMs = stall.stop();
      await ingest.close();
      delays.sort();
      return {
        ...base,
        events,
        bytesPerEvent,
        eventsPerSecond: Math.round(events / ((finished - started) / 1000)),
        p50Ms: delays[Math.floor(events * 0.5)],
        p99Ms: delays[Math.floor(events * 0.99)],
        maxMs: delays[events - 1],
        maxStallMs,
        peakRssMb: Math.round(peakRssMb()),
      };
    });
  }
  const events = options.events ?? 200_000;
  return await withStore(options.store, async (store, dataDir) => {
    // Spool them with the database down (nothing listens on port 1)...
    const down = await openStore({ url: "postgres://bench@127.0.0.1:1/down", dataDir });
    const spooling = await Ingest.open({ store: down, dataDir });
    const session = uuidv7();
    const parser = new AmiParser({ expectBanner: false });
    for (const chunk of chunks(events)) {
      for (const msg of parser.push(chunk)) spooling.event("pbx1", session, msg);
      await nextTask();
    }
    await spooling.close({ timeoutMs: 1000 });
    await down.close();
    // ...then start again with the database up: the spool is replayed.
    const stall = stallMeter();
    const started = performance.now();
    const ingest = await Ingest.open({ store, dataDir, strategy, maxBatch: options.maxBatch });
    await ingest.close({ timeoutMs: 600_000 });
    const finished = performance.now();
    const stored = ingest.stats().spooledEvents;
    if (stored !== events) throw new Error(`replayed ${stored} of ${events} events`);
    return {
      ...base,
      events,
      bytesPerEvent,
      eventsPerSecond: Math.round(events / ((finished - started) / 1000)),
      maxStallMs: stall.stop(),
      peakRssMb: Math.round(peakRssMb()),
    };
  });
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

/** The default matrix: both stores, three scenarios, and COPY vs INSERT at 200,000 events. */
export const INGEST_BENCH_MATRIX: IngestBenchOptions[] = [
  { store: "postgres", scenario: "throughput" },
  { store: "postgres", scenario: "socket" },
  { store: "postgres", scenario: "latency" },
  { store: "postgres", scenario: "replay" },
  { store: "postgres", scenario: "throughput", strategy: "copy", events: 200_000 },
  { store: "postgres", scenario: "throughput", strategy: "insert", events: 200_000 },
  { store: "pglite", scenario: "throughput" },
  { store: "pglite", scenario: "latency" },
  { store: "pglite", scenario: "replay" },
  { store: "pglite", scenario: "throughput", strategy: "copy", events: 200_000 },
  { store: "pglite", scenario: "throughput", strategy: "insert", events: 200_000 },
];

/** Runs each scenario in a child process (its own peak RSS) and returns the figures. */
export async function runIngestBenchSuite(
  matrix: IngestBenchOptions[] = INGEST_BENCH_MATRIX,
): Promise<IngestBenchResult[]> {
  const results: IngestBenchResult[] = [];
  for (const options of matrix) {
    const args = ["run", "-A"];
    if (options.v8Flags) args.push(`--v8-flags=${options.v8Flags}`);
    args.push(new URL(import.meta.url).pathname, "--json");
    args.push("--store", options.store, "--scenario", options.scenario);
    if (options.strategy) args.push("--strategy", options.strategy);
    if (options.events) args.push("--events", String(options.events));
    if (options.maxBatch) args.push("--max-batch", String(options.maxBatch));
    const { code, stdout } = await new Deno.Command(Deno.execPath(), { args, stderr: "inherit" })
      .output();
    if (code !== 0) throw new Error(`ingest bench ${JSON.stringify(options)} failed`);
    const result = JSON.parse(new TextDecoder().decode(stdout)) as IngestBenchResult;
    results.push(result);
    console.error(formatResult(result));
  }
  return results;
}

/** One line of the report. */
export function formatResult(r: IngestBenchResult): string {
  const figures = [
    `${r.eventsPerSecond} events/s`,
    r.drainSeconds !== undefined ? `drain ${r.drainSeconds} s` : "",
    r.p50Ms !== undefined ? `p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, max ${r.maxMs} ms` : "",
    `max stall ${r.maxStallMs} ms`,
    `peak RSS ${r.peakRssMb} MB`,
    r.machineBusyPercent !== undefined
      ? `machine CPU busy ${r.machineBusyPercent}%, ingest process ${r.processCpuSeconds} CPU s`
      : "",
  ].filter(Boolean);
  return `${r.store.padEnd(8)} ${r.scenario.padEnd(10)} ${r.strategy.padEnd(6)} ` +
    (r.maxBatch ? `batch<=${r.maxBatch} ` : "") +
    `${String(r.events).padStart(8)} ev x ${r.bytesPerEvent} B: ${figures.join(", ")}`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      json: { type: "boolean" },
      store: { type: "string" },
      scenario: { type: "string" },
      strategy: { type: "string" },
      events: { type: "string" },
      "max-batch": { type: "string" },
    },
  });
  if (values.json) {
    const result = await runIngestBench({
      store: values.store as IngestBenchOptions["store"],
      scenario: values.scenario as IngestBenchOptions["scenario"],
      strategy: values.strategy as WriteStrategy | undefined,
      events: values.events ? Number(values.events) : undefined,
      maxBatch: values["max-batch"] ? Number(values["max-batch"]) : undefined,
    });
    console.log(JSON.stringify(result));
  } else {
    const matrix = INGEST_BENCH_MATRIX.filter((o) =>
      (!values.store || o.store === values.store) &&
      (!values.scenario || o.scenario === values.scenario) &&
      (!values.strategy || (o.strategy ?? "copy") === values.strategy)
    ).map((o) => ({
      ...o,
      ...(values.events ? { events: Number(values.events) } : {}),
      ...(values["max-batch"] ? { maxBatch: Number(values["max-batch"]) } : {}),
    }));
    const results = await runIngestBenchSuite(matrix);
    console.log(`\n${Deno.build.target}, ${navigator.hardwareConcurrency} CPUs`);
    for (const r of results) console.log(formatResult(r));
  }
}
