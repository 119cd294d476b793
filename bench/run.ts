/**
 * `deno task bench`: every benchmark, one after the other, each heavy part in its own
 * process. Prints one JSON object per figure on stdout (progress on stderr).
 *
 * Usage: deno task bench [parse|ingest|projections|fleet|settle|embedded|daemon|stream|
 * dashboard|e2e|endpoint-polls|years ...]
 * (default: all but `years`, which builds a 10-million-event store and takes about 20 minutes)
 *
 * @module
 */
import { parseBench } from "./parse_bench.ts";
import { roundTripBench } from "./parse_roundtrip.ts";
import { runIngestBenchSuite } from "./ingest_bench.ts";
import { runProjectionsBench } from "./projections_bench.ts";
import { runFleetBench } from "./fleet_bench.ts";
import { settleBench } from "./settle_bench.ts";
import { runYearsBench } from "./years_bench.ts";
import { runStreamBench } from "./stream_bench.ts";
import { runEmbeddedBench } from "./embedded_bench.ts";
import { runDaemonBench } from "./daemon_bench.ts";
import { runDashboardBench } from "./dashboard_bench.ts";
import { runEndpointPollsBench } from "./endpoint_polls_bench.ts";
import { profileIngest, runE2eBench } from "./e2e_bench.ts";

const wanted = new Set(
  Deno.args.length > 0 ? Deno.args : [
    "parse",
    "ingest",
    "projections",
    "fleet",
    "settle",
    "embedded",
    "daemon",
    "stream",
    "dashboard",
    "e2e",
    "endpoint-polls",
  ],
);
const cpu = Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.*)/)?.[1] ?? "?";
console.error(
  `machine: ${navigator.hardwareConcurrency} cores (${cpu}), ${
    Math.round(Deno.systemMemoryInfo().total / 2 ** 30)
  } GiB, Deno ${Deno.version.deno}`,
);

if (wanted.has("parse")) {
  console.error(
    'receive and parse, 1,000,000 events over loopback (DAMI lossless, on("*"), on(name), asterisk.io), best of 3 interleaved rounds',
  );
  for (const result of await parseBench(1_000_000)) {
    console.log(JSON.stringify({ bench: "parse", ...result }));
  }
  console.error('action round trips, to("Ping") with 1, 100 and 10,000 in flight');
  for (const result of await roundTripBench()) {
    console.log(JSON.stringify({ bench: "roundtrip", ...result }));
  }
}
if (wanted.has("ingest")) {
  console.error(
    "ingest: throughput, latency at 5,000 events/s, spool replay; PostgreSQL and PGlite",
  );
  for (const result of await runIngestBenchSuite()) {
    console.log(JSON.stringify({ bench: "ingest", ...result }));
  }
}
if (wanted.has("projections")) {
  console.error("projections: 1,000,000 events / 50,000 calls, rebuild, query latency");
  const report = await runProjectionsBench();
  for (const figure of report.figures) {
    console.log(JSON.stringify({ bench: "projections", events: report.events, ...figure }));
  }
}
if (wanted.has("fleet")) {
  console.error("fleet: 100 PBXs x 50 events/s through 2 instances; kill -9 one");
  for (const figure of await runFleetBench()) {
    console.log(JSON.stringify({ bench: "fleet", ...figure }));
  }
}
if (wanted.has("settle")) {
  console.error("settle: 1,000,000 actions, every outcome, none left pending");
  console.log(JSON.stringify({ bench: "settle", ...await settleBench(1_000_000) }));
}
if (wanted.has("embedded")) {
  console.error(
    "embedded store: event-loop pause during 30-day queries; memory of deno task demo",
  );
  for (const figure of await runEmbeddedBench(["stall", "memory"])) {
    console.log(JSON.stringify({ bench: "embedded", ...figure }));
  }
}
if (wanted.has("stream")) {
  console.error(
    "stream: 100 /api/events clients live at 5,000 events/s, ingest with 100 clients, resume of 1,000,000",
  );
  for (const result of await runStreamBench()) {
    console.log(JSON.stringify({ bench: "stream", ...result }));
  }
}
if (wanted.has("years")) {
  console.error("years: partitioned vs unpartitioned ingest; 10 million events over 90 days");
  for (const figure of await runYearsBench()) {
    console.log(JSON.stringify({ bench: "years", ...figure }));
  }
}
if (wanted.has("daemon")) {
  console.error(
    "daemon: RSS of the daemon process at a steady 2,000 events/s for 60 s (PostgreSQL)",
  );
  console.log(
    JSON.stringify({ bench: "daemon", ...await runDaemonBench({ rate: 2000, seconds: 60 }) }),
  );
}
if (wanted.has("dashboard")) {
  console.error("dashboard: first paint of each page on a store of 500,000 calls");
  for (const figure of await runDashboardBench()) {
    console.log(JSON.stringify({ bench: "dashboard", ...figure }));
  }
}
if (wanted.has("e2e")) {
  console.error(
    "e2e: AMI socket to committed rows vs psql \\copy of the same rows, 200,000 events, 2 rounds; CPU profile",
  );
  const { figures, ratios } = await runE2eBench({ events: 200_000, rounds: 2 });
  for (const figure of figures) console.log(JSON.stringify({ bench: "e2e", ...figure }));
  for (const ratio of ratios) console.log(JSON.stringify({ bench: "e2e", ...ratio }));
  const profile = await profileIngest(200_000);
  console.log(
    JSON.stringify({ bench: "e2e-profile", ...profile, top: profile.top.slice(0, 25) }),
  );
}
if (wanted.has("endpoint-polls")) {
  console.error("endpoint-polls: availability and outages over 1.3M five-minute samples");
  for (const figure of await runEndpointPollsBench()) {
    console.log(JSON.stringify({ bench: "endpoint-polls", ...figure }));
  }
}
