/**
 * End to end vs `psql \copy`, side by side in one run on the same machine.
 *
 * - `daemon`: the `socket` scenario of `ingest_bench.ts` (an AMI peer process streams
 *   the fixtures' recorded calls, sip-calls / queue-call / originate-local cycled, over
 *   loopback TCP; the DAMI client parses; `Ingest` spools, fsyncs, batches and COPYs into
 *   a fresh, migrated, partitioned `ami_events`); events/s from connect to last commit.
 * - `copy`: the very same rows, as the COPY text the daemon's own row encoder
 *   (`eventRecord`) produces from the same bytes, loaded by `psql \copy` into a fresh,
 *   migrated `ami_events` (same indexes) whose partition for the rows' day exists.
 *
 * The two alternate (daemon, copy, daemon, copy, ...) so that a load change on the
 * shared machine hits both; the load average is recorded with each figure.
 *
 * `--profile` also runs the `socket` scenario under `deno run --cpu-prof` and sums the
 * self time of the ingest process by function and by category.
 *
 * Run: `deno run -A bench/e2e_bench.ts [--events 200000] [--rounds 2] [--profile]`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { AmiParser } from "../dami/parser.ts";
import { CURRENT_EVENT_FORMAT, eventRecord } from "../daemon/ingest_record.ts";
import { createEventPartitions } from "../daemon/event_partitions.ts";
import { uuidv7 } from "../daemon/ids.ts";
import { openStore } from "../daemon/store.ts";
import { createTestDatabase } from "../tests/pg.ts";
import { runIngestBenchSuite } from "./ingest_bench.ts";
import { streamPlan } from "./stream_server.ts";

/** One measured figure. */
export interface E2eFigure {
  round: number;
  /** `daemon`: no V8 flags; `daemon-small-heap`: the flags of `deno task start` and the service units. */
  path: "daemon" | "daemon-small-heap" | "copy";
  events: number;
  seconds: number;
  eventsPerSecond: number;
  /** `/proc/loadavg` (1, 5, 15 min) just before the measurement. */
  loadavg: string;
}

/** The ratio of one round: daemon events/s over `\copy` rows/s. */
export interface E2eRatio {
  round: number;
  daemonOverCopy: number;
  /** With `--optimize-for-size`, as `deno task start` and the service units run the daemon. */
  smallHeapOverCopy: number;
}

/** The V8 flags `deno task start`, `deploy/dami.service` and `deploy/Dockerfile` give the daemon. */
export const DAEMON_V8_FLAGS = "--optimize-for-size";

function loadavg(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

/**
 * Writes the COPY text of `count` events (the stream the peer sends) to `path`, one row
 * a line, built by the daemon's encoder; resolves with the rows' receive time.
 */
export async function writeCopyRows(count: number, path: string): Promise<number> {
  const { block, blocks } = streamPlan(count);
  const parser = new AmiParser({ expectBanner: false });
  const session = uuidv7();
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  let receivedAt = Date.now();
  try {
    for (let i = 0; i < blocks; i++) {
      for (const msg of parser.push(block)) {
        if (msg.kind !== "event") continue;
        const record = eventRecord("pbx1", session, msg);
        receivedAt = record.receivedAt;
        const bytes = record.bytes;
        for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
      }
    }
  } finally {
    file.close();
  }
  return receivedAt;
}

/** `psql \copy` of the rows in `path` into a fresh, migrated database; events/s. */
export async function copyRun(path: string, receivedAt: number, events: number) {
  const database = await createTestDatabase("bench_e2e_copy");
  const dataDir = await Deno.makeTempDir({ prefix: "dami-bench-e2e-" });
  try {
    const store = await openStore({ url: database.url, dataDir });
    await createEventPartitions(store.db, [receivedAt]);
    await store.close();
    const columns = CURRENT_EVENT_FORMAT.columns.join(", ");
    const started = performance.now();
    const { code, stderr } = await new Deno.Command("psql", {
      args: [
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        database.url,
        "-c",
        `\\copy ami_events (${columns}) from '${path}'`,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    const seconds = (performance.now() - started) / 1000;
    if (code !== 0) throw new Error(`psql \\copy failed: ${new TextDecoder().decode(stderr)}`);
    const count = await new Deno.Command("psql", {
      args: ["-X", "-A", "-t", "-d", database.url, "-c", "select count(*) from ami_events"],
    }).output();
    const stored = Number(new TextDecoder().decode(count.stdout).trim());
    if (stored !== events) throw new Error(`\\copy stored ${stored} of ${events} rows`);
    return { seconds, eventsPerSecond: Math.round(events / seconds) };
  } finally {
    await database.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** Alternating rounds of the daemon's socket path and `\copy` of the same rows. */
export async function runE2eBench(
  options: { events?: number; rounds?: number } = {},
): Promise<{ figures: E2eFigure[]; ratios: E2eRatio[] }> {
  const events = options.events ?? 200_000;
  const rounds = options.rounds ?? 2;
  const dir = await Deno.makeTempDir({ prefix: "dami-bench-e2e-rows-" });
  const path = `${dir}/ami_events.copy`;
  const figures: E2eFigure[] = [];
  const ratios: E2eRatio[] = [];
  try {
    const receivedAt = await writeCopyRows(events, path);
    for (let round = 1; round <= rounds; round++) {
      /** The daemon's socket scenario with `v8Flags`, recorded as `which`. */
      const daemonRun = async (which: E2eFigure["path"], v8Flags?: string) => {
        const load = loadavg();
        const [result] = await runIngestBenchSuite([{
          store: "postgres",
          scenario: "socket",
          events,
          v8Flags,
        }]);
        if (result.events !== events) throw new Error(`${which} ran ${result.events} events`);
        figures.push({
          round,
          path: which,
          events,
          seconds: round2(events / result.eventsPerSecond),
          eventsPerSecond: result.eventsPerSecond,
          loadavg: load,
        });
        return result;
      };
      const daemon = await daemonRun("daemon");
      const small = await daemonRun("daemon-small-heap", DAEMON_V8_FLAGS);
      const load = loadavg();
      const copy = await copyRun(path, receivedAt, events);
      figures.push({
        round,
        path: "copy",
        events,
        seconds: round2(copy.seconds),
        eventsPerSecond: copy.eventsPerSecond,
        loadavg: load,
      });
      console.error(
        `round ${round}: daemon ${daemon.eventsPerSecond} events/s (${DAEMON_V8_FLAGS}: ${small.eventsPerSecond}), \\copy ${copy.eventsPerSecond} rows/s (load ${load})`,
      );
      ratios.push({
        round,
        daemonOverCopy: round2(daemon.eventsPerSecond / copy.eventsPerSecond),
        smallHeapOverCopy: round2(small.eventsPerSecond / copy.eventsPerSecond),
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return { figures, ratios };
}

/** Self time of one function in a CPU profile. */
export interface ProfileEntry {
  category: string;
  functionName: string;
  url: string;
  selfMs: number;
  percent: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string }; hitCount?: number }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where a function's self time goes, by the file it lives in and its name. */
export function categorize(functionName: string, url: string): string {
  if (functionName === "(garbage collector)") return "GC";
  if (functionName === "(idle)") return "idle (waiting for I/O)";
  if (functionName === "(program)") return "V8/runtime (program)";
  if (/fsync|datasync/i.test(functionName)) return "spool write/fsync";
  // Regular expressions show as natives named by their source: the JSON_UNSAFE test of
  // fieldsJson and the COPY_SPECIAL test of copyValue.
  if (functionName.startsWith("RegExp:")) {
    return functionName.includes("u001f") ? "JSON of fields" : "building COPY rows";
  }
  if (url.includes("/daemon/spool")) return "spool write/fsync";
  if (url.includes("/dami/parser") || url.includes("/dami/")) return "parsing (DAMI client)";
  // The byte writer: putJson writes fields, the rest of the row is fastRow / putText.
  if (/fieldsJson|jsonString|putJson|putUnicodeEscape/.test(functionName)) return "JSON of fields";
  if (url.includes("/daemon/ingest_record")) return "building COPY rows";
  if (url.includes("/postgres@") || url.includes("/postgres/") || url.includes("postgres_js")) {
    return "postgres.js write";
  }
  if (url.includes("/daemon/")) return "daemon (queue, batch writer, other)";
  if (url.startsWith("ext:") || url.startsWith("node:") || url === "") {
    return "Deno runtime / natives";
  }
  return "other";
}

/** Sums a `.cpuprofile`'s self time by function (and url) and by category. */
export function summarizeCpuProfile(profile: CpuProfile): {
  totalMs: number;
  byCategory: { category: string; selfMs: number; percent: number }[];
  top: ProfileEntry[];
} {
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const byFunction = new Map<string, ProfileEntry>();
  let totalUs = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0) continue;
    totalUs += us;
    const { functionName, url } = node.callFrame;
    const name = functionName || "(anonymous)";
    const key = `${name}\u0000${url}`;
    const entry = byFunction.get(key) ??
      { category: categorize(name, url), functionName: name, url, selfMs: 0, percent: 0 };
    entry.selfMs += us / 1000;
    byFunction.set(key, entry);
  }
  const totalMs = totalUs / 1000;
  const categories = new Map<string, number>();
  for (const entry of byFunction.values()) {
    entry.percent = round2((100 * entry.selfMs) / totalMs);
    entry.selfMs = round2(entry.selfMs);
    categories.set(entry.category, (categories.get(entry.category) ?? 0) + entry.selfMs);
  }
  return {
    totalMs: round2(totalMs),
    byCategory: [...categories].map(([category, selfMs]) => ({
      category,
      selfMs: round2(selfMs),
      percent: round2((100 * selfMs) / totalMs),
    })).sort((a, b) => b.selfMs - a.selfMs),
    top: [...byFunction.values()].sort((a, b) => b.selfMs - a.selfMs),
  };
}

/** Runs the `socket` scenario under `--cpu-prof` and summarizes its profile. */
export async function profileIngest(events = 200_000) {
  const dir = await Deno.makeTempDir({ prefix: "dami-bench-cpuprof-" });
  try {
    const ingestBench = new URL("./ingest_bench.ts", import.meta.url).pathname;
    const { code, stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--cpu-prof", `--cpu-prof-dir=${dir}`, ingestBench, "--json"]
        .concat(["--store", "postgres", "--scenario", "socket", "--events", String(events)]),
      stderr: "inherit",
    }).output();
    if (code !== 0) throw new Error("profiled ingest run failed");
    const result = JSON.parse(new TextDecoder().decode(stdout));
    const [name] = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
      n.endsWith(".cpuprofile")
    );
    const profile = JSON.parse(await Deno.readTextFile(`${dir}/${name}`)) as CpuProfile;
    return { eventsPerSecond: result.eventsPerSecond as number, ...summarizeCpuProfile(profile) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      events: { type: "string" },
      rounds: { type: "string" },
      profile: { type: "boolean" },
      "profile-file": { type: "string" },
    },
  });
  if (values["profile-file"]) {
    const summary = summarizeCpuProfile(JSON.parse(Deno.readTextFileSync(values["profile-file"])));
    console.log(JSON.stringify({ ...summary, top: summary.top.slice(0, 30) }, null, 1));
    Deno.exit(0);
  }
  const events = values.events ? Number(values.events) : undefined;
  const { figures, ratios } = await runE2eBench({
    events,
    rounds: values.rounds ? Number(values.rounds) : undefined,
  });
  for (const f of figures) console.log(JSON.stringify({ bench: "e2e", ...f }));
  for (const r of ratios) console.log(JSON.stringify({ bench: "e2e", ...r }));
  if (values.profile) {
    const summary = await profileIngest(events);
    console.log(
      JSON.stringify({ bench: "e2e-profile", ...summary, top: summary.top.slice(0, 25) }),
    );
  }
}
