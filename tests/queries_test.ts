/**
 * The named queries on a seeded database with known answers: a Monday (2026-11-02) of
 * calls on `pbx1` (answered, missed and called back, missed and not, internal), a call
 * over midnight, a call cut by an AMI disconnect, queue stays and agent attempts,
 * endpoint samples with an outage, two transfers, and one call on `pbx2`.
 * The timeline query runs on real fixture events through the projector.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { runProjectionsOnce } from "../daemon/projections/projector.ts";
import { type ColumnRecord, insertRecords } from "../daemon/projections/write.ts";
import {
  abandonWaits,
  agentPerformance,
  busiestExtensions,
  callsDuringGaps,
  callsPerDay,
  callTimeline,
  endpointAvailability,
  endpointOutages,
  failureCauses,
  findQuery,
  heatmap,
  longestCalls,
  missedCalls,
  peakConcurrency,
  QUERIES,
  QueryParamError,
  queueSummary,
  transfers,
} from "../queries/mod.ts";
import { formatCsv, formatRows, formatTable } from "../queries/output.ts";
import { type CliDatabase, main as cliMain } from "../queries/cli.ts";
import type { QueryDefinition } from "../queries/query.ts";
import { CLI_DATABASE } from "../daemon/cli_store.ts";
import { openStore } from "../daemon/store.ts";
import type { SqlExecutor } from "../queries/db.ts";
import {
  amiSessions,
  callLegs,
  calls,
  endpointStatus,
  queueAttempts,
  queueCalls,
} from "../schema/mod.ts";
import {
  insertEventRecords,
  loadFixtureEvents,
  openTestStore,
  type TestStore,
} from "./load_events.ts";

const T = (s: string) => `2026-11-${s}Z`; // T("02T09:00:00") → ISO UTC

interface SeedCall {
  id: string;
  start: string;
  answer: string | null;
  end: string | null;
  src: string;
  dst: string;
  context: string;
  by: string | null;
  disposition: string;
  duration: number | null;
  billsec: number | null;
  complete?: boolean;
  server?: string;
}

const CALLS: SeedCall[] = [
  {
    id: "A1",
    start: "02T09:00:00",
    answer: "02T09:00:10",
    end: "02T09:05:00",
    src: "+15550001111",
    dst: "200",
    context: "from-trunk",
    by: "SIP/6001",
    disposition: "ANSWERED",
    duration: 300,
    billsec: 290,
  },
  {
    id: "A2",
    start: "02T09:01:00",
    answer: "02T09:01:05",
    end: "02T09:02:00",
    src: "6001",
    dst: "300",
    context: "internal",
    by: "SIP/6002",
    disposition: "ANSWERED",
    duration: 60,
    billsec: 55,
  },
  {
    id: "M1",
    start: "02T10:00:00",
    answer: null,
    end: "02T10:00:30",
    src: "+15550002222",
    dst: "200",
    context: "from-trunk",
    by: null,
    disposition: "NO ANSWER",
    duration: 30,
    billsec: 0,
  },
  {
    id: "M2",
    start: "02T10:30:00",
    answer: null,
    end: "02T10:30:05",
    src: "+15550003333",
    dst: "200",
    context: "from-trunk",
    by: null,
    disposition: "BUSY",
    duration: 5,
    billsec: 0,
  },
  // The call back to M1's number, dialed with an outside-line prefix.
  {
    id: "C1",
    start: "02T11:00:00",
    answer: "02T11:00:20",
    end: "02T11:10:00",
    src: "6001",
    dst: "915550002222",
    context: "internal",
    by: "SIP/trunk",
    disposition: "ANSWERED",
    duration: 600,
    billsec: 580,
  },
  {
    id: "M3",
    start: "02T12:00:00",
    answer: null,
    end: "02T12:00:10",
    src: "+15550003333",
    dst: "200",
    context: "from-trunk",
    by: null,
    disposition: "CANCEL",
    duration: 10,
    billsec: 0,
  },
  {
    id: "M4",
    start: "02T13:00:00",
    answer: null,
    end: "02T13:00:20",
    src: "+15550004444",
    dst: "200",
    context: "from-trunk",
    by: null,
    disposition: "NO ANSWER",
    duration: 20,
    billsec: 0,
  },
  // M4's caller tries again and gets through.
  {
    id: "A3",
    start: "02T14:00:00",
    answer: "02T14:00:05",
    end: "02T14:01:00",
    src: "+15550004444",
    dst: "200",
    context: "from-trunk",
    by: "SIP/6001",
    disposition: "ANSWERED",
    duration: 60,
    billsec: 55,
  },
  {
    id: "M5",
    start: "02T15:00:00",
    answer: null,
    end: "02T15:00:15",
    src: "6002",
    dst: "6001",
    context: "internal",
    by: null,
    disposition: "NO ANSWER",
    duration: 15,
    billsec: 0,
  },
  {
    id: "N1",
    start: "03T23:30:00",
    answer: "03T23:30:10",
    end: "04T00:30:00",
    src: "+15550005555",
    dst: "200",
    context: "from-trunk",
    by: "SIP/6002",
    disposition: "ANSWERED",
    duration: 3600,
    billsec: 3590,
  },
  // Cut by the disconnect at 08:10: no Hangup was ever seen.
  {
    id: "G1",
    start: "04T08:00:00",
    answer: "04T08:00:05",
    end: null,
    src: "+15550006666",
    dst: "200",
    context: "from-trunk",
    by: "SIP/6001",
    disposition: "ANSWERED",
    duration: null,
    billsec: null,
    complete: false,
  },
  {
    id: "X1",
    start: "02T09:00:30",
    answer: "02T09:00:40",
    end: "02T09:01:30",
    src: "+15559999999",
    dst: "100",
    context: "from-trunk",
    by: "SIP/7001",
    disposition: "ANSWERED",
    duration: 60,
    billsec: 50,
    server: "pbx2",
  },
];

/** [call, endpoint, created, answered, hung up, cause, cause text, dial status] */
type SeedLeg = [
  string,
  string,
  string,
  string | null,
  string | null,
  number | null,
  string | null,
  string | null,
];
const LEGS: SeedLeg[] = [
  ["A1", "SIP/trunk", "02T09:00:00", "02T09:00:10", "02T09:05:00", 16, "Normal Clearing", null],
  [
    "A1",
    "Local/200@internal",
    "02T09:00:00.500",
    "02T09:00:10",
    "02T09:05:00",
    16,
    "Normal Clearing",
    null,
  ],
  ["A1", "SIP/6001", "02T09:00:01", "02T09:00:10", "02T09:05:00", 16, "Normal Clearing", "ANSWER"],
  ["A2", "SIP/6001", "02T09:01:00", "02T09:01:05", "02T09:02:00", 16, "Normal Clearing", null],
  ["A2", "SIP/6002", "02T09:01:01", "02T09:01:05", "02T09:02:00", 16, "Normal Clearing", "ANSWER"],
  ["M1", "SIP/trunk", "02T10:00:00", null, "02T10:00:30", 16, "Normal Clearing", null],
  ["M1", "SIP/6001", "02T10:00:01", null, "02T10:00:30", 19, "No answer", "NOANSWER"],
  ["M2", "SIP/trunk", "02T10:30:00", null, "02T10:30:05", 17, "User busy", null],
  ["C1", "SIP/6001", "02T11:00:00", "02T11:00:20", "02T11:10:00", 16, "Normal Clearing", null],
  ["C1", "SIP/trunk", "02T11:00:01", "02T11:00:20", "02T11:10:00", 16, "Normal Clearing", "ANSWER"],
  ["M3", "SIP/trunk", "02T12:00:00", null, "02T12:00:10", 16, "Normal Clearing", null],
  ["M3", "SIP/6001", "02T12:00:01", null, "02T12:00:10", 16, "Normal Clearing", "CANCEL"],
  ["M4", "SIP/trunk", "02T13:00:00", null, "02T13:00:20", 16, "Normal Clearing", null],
  ["M4", "SIP/6002", "02T13:00:01", null, "02T13:00:20", 20, "Subscriber absent", "CHANUNAVAIL"],
  ["A3", "SIP/trunk", "02T14:00:00", "02T14:00:05", "02T14:01:00", 16, "Normal Clearing", null],
  ["A3", "SIP/6001", "02T14:00:01", "02T14:00:05", "02T14:01:00", 16, "Normal Clearing", "ANSWER"],
  ["M5", "SIP/6002", "02T15:00:00", null, "02T15:00:15", 16, "Normal Clearing", null],
  ["M5", "SIP/6001", "02T15:00:01", null, "02T15:00:15", 19, "No answer", "NOANSWER"],
  ["N1", "SIP/trunk", "03T23:30:00", "03T23:30:10", "04T00:30:00", 16, "Normal Clearing", null],
  ["N1", "SIP/6002", "03T23:30:01", "03T23:30:10", "04T00:30:00", 16, "Normal Clearing", "ANSWER"],
  ["G1", "SIP/trunk", "04T08:00:00", "04T08:00:05", null, null, null, null],
  ["G1", "SIP/6001", "04T08:00:01", "04T08:00:05", null, null, null, "ANSWER"],
  ["X1", "SIP/trunk2", "02T09:00:30", "02T09:00:40", "02T09:01:30", 16, "Normal Clearing", null],
  ["X1", "SIP/7001", "02T09:00:31", "02T09:00:40", "02T09:01:30", 16, "Normal Clearing", "ANSWER"],
];

/** [uniqueid, queue, joined, outcome, hold, talk, agent] */
type SeedStay = [string, string, string, string, number, number | null, string | null];
const STAYS: SeedStay[] = [
  ["q1", "support", "02T09:00:00", "answered", 5, 100, "SIP/6001"],
  ["q2", "support", "02T09:10:00", "answered", 25, 200, "SIP/6002"],
  ["q3", "support", "02T09:20:00", "abandoned", 40, null, null],
  ["q4", "support", "02T09:30:00", "abandoned", 8, null, null],
  ["q5", "support", "02T09:40:00", "timeout", 300, null, null],
  ["s1", "sales", "02T09:00:00", "answered", 10, 60, "SIP/6001"],
];

/** [member channel, caller uniqueid, queue, agent, called, ring ms, outcome] */
type SeedAttempt = [string, string, string, string, string, number | null, string];
const ATTEMPTS: SeedAttempt[] = [
  ["a1", "q1", "support", "SIP/6001", "02T09:00:01", 3000, "connected"],
  ["a2", "q2", "support", "SIP/6001", "02T09:10:01", 15000, "no-answer"],
  ["a3", "q2", "support", "SIP/6002", "02T09:10:16", 5000, "connected"],
  ["a4", "q3", "support", "SIP/6001", "02T09:20:01", null, "cancelled"],
  ["a5", "s1", "sales", "SIP/6001", "02T09:00:01", 2000, "connected"],
];

/** [endpoint, observed, state] */
const SAMPLES: [string, string, string][] = [
  ["SIP/6001", "02T00:00:00", "reachable"],
  ["SIP/6001", "02T06:00:00", "unreachable"],
  ["SIP/6001", "02T08:00:00", "unknown"],
  ["SIP/6001", "02T12:00:00", "reachable"],
  ["SIP/6001", "03T10:00:00", "unreachable"],
  ["SIP/6001", "03T11:00:00", "unreachable"],
  ["SIP/6002", "02T00:00:00", "unmonitored"],
  ["SIP/6002", "02T12:00:00", "lagged"],
];

async function seed(db: SqlExecutor): Promise<void> {
  const iso = (s: string | null) => s === null ? null : T(s);
  await insertRecords(
    db,
    calls,
    CALLS.map((c) => ({
      server: c.server ?? "pbx1",
      call_id: c.id,
      started_at: T(c.start),
      answered_at: iso(c.answer),
      ended_at: iso(c.end),
      src: c.src,
      dst: c.dst,
      context: c.context,
      answered_by: c.by,
      disposition: c.disposition,
      duration_s: c.duration,
      billsec_s: c.billsec,
      transferred: false,
      legs: LEGS.filter((l) => l[0] === c.id).length,
      complete: c.complete ?? true,
    })),
    { columns: ["server", "call_id"], action: "nothing" },
  );
  await insertRecords(
    db,
    callLegs,
    LEGS.map(([call, endpoint, created, answered, hungup, cause, causeTxt, dial], i) => ({
      server: call === "X1" ? "pbx2" : "pbx1",
      uniqueid: `${call}.${i}`,
      call_id: call,
      channel: `${endpoint}-0000000${i}`,
      endpoint,
      created_at: T(created),
      answered_at: iso(answered),
      hungup_at: iso(hungup),
      cause,
      cause_txt: causeTxt,
      dial_status: dial,
    })),
    { columns: ["server", "uniqueid"], action: "nothing" },
  );
  await insertRecords(
    db,
    queueCalls,
    STAYS.map(([uniqueid, queue, joined, outcome, hold, talk, agent]) => ({
      server: "pbx1",
      uniqueid,
      call_id: uniqueid,
      queue,
      joined_at: T(joined),
      outcome,
      hold_s: hold,
      talk_s: talk,
      agent,
    })),
    { columns: ["server", "uniqueid", "queue", "joined_at"], action: "nothing" },
  );
  await insertRecords(
    db,
    queueAttempts,
    ATTEMPTS.map(([uniqueid, caller, queue, agent, called, ringMs, outcome]) => ({
      server: "pbx1",
      uniqueid,
      call_id: caller,
      caller_uniqueid: caller,
      queue,
      agent,
      called_at: T(called),
      ring_ms: ringMs,
      outcome,
    })),
    { columns: ["server", "uniqueid"], action: "nothing" },
  );
  await insertRecords(
    db,
    endpointStatus,
    SAMPLES.map(([endpoint, observed, state], i) => ({
      server: "pbx1",
      endpoint,
      observed_at: T(observed),
      state,
      source: "PeerEntry",
      event_id: String(1000 + i),
    })),
    { columns: ["event_id", "endpoint"], action: "nothing" },
  );
  const sessions: ColumnRecord[] = [
    // pbx1: one session until the disconnect at 11-04 08:10, the next from 08:30.
    {
      id: "018f0000-0000-7000-8000-000000000001",
      server: "pbx1",
      connected_at: T("01T00:00:00"),
      disconnected_at: T("04T08:10:00"),
      disconnect_reason: "eof",
    },
    {
      id: "018f0000-0000-7000-8000-000000000002",
      server: "pbx1",
      connected_at: T("04T08:30:00"),
      disconnected_at: null,
      disconnect_reason: null,
    },
    // pbx2: the daemon crashed (no end recorded, no events); the next session at 09:01.
    {
      id: "018f0000-0000-7000-8000-000000000003",
      server: "pbx2",
      connected_at: T("01T00:00:00"),
      disconnected_at: null,
      disconnect_reason: null,
    },
    {
      id: "018f0000-0000-7000-8000-000000000004",
      server: "pbx2",
      connected_at: T("02T09:01:00"),
      disconnected_at: null,
      disconnect_reason: null,
    },
  ];
  await insertRecords(db, amiSessions, sessions, { columns: ["id"], action: "nothing" });
  const legId = (call: string, endpoint: string) =>
    `${call}.${LEGS.findIndex((l) => l[0] === call && l[1] === endpoint)}`;
  await insertEventRecords(db, [
    {
      server: "pbx1",
      session_id: "018f0000-0000-7000-8000-000000000001",
      seq: 1,
      received_at: T("02T09:03:00"),
      event: "BlindTransfer",
      fields: {
        Event: "BlindTransfer",
        Result: "Success",
        TransfererChannel: "SIP/6001-00000002",
        TransfererUniqueid: legId("A1", "SIP/6001"),
        TransfereeChannel: "SIP/trunk-00000000",
        TransfereeUniqueid: legId("A1", "SIP/trunk"),
        Context: "internal",
        Extension: "300",
      },
    },
    {
      server: "pbx1",
      session_id: "018f0000-0000-7000-8000-000000000001",
      seq: 2,
      received_at: T("02T09:01:30"),
      event: "AttendedTransfer",
      fields: {
        Event: "AttendedTransfer",
        Result: "Fail",
        OrigTransfererChannel: "SIP/6001-00000003",
        OrigTransfererUniqueid: legId("A2", "SIP/6001"),
        TransfereeChannel: "SIP/6002-00000004",
        TransfereeUniqueid: legId("A2", "SIP/6002"),
        TransferTargetChannel: "SIP/6003-00000009",
      },
    },
  ]);
  // A 10-minute pause of an agent, so that agent-pauses has something to show.
  await insertEventRecords(
    db,
    [["1", "02T12:00:00", 5], ["0", "02T12:10:00", 6]].map(([paused, at, seq]) => ({
      server: "pbx1",
      session_id: "018f0000-0000-7000-8000-000000000001",
      seq,
      received_at: T(at as string),
      event: "QueueMemberPause",
      fields: {
        Event: "QueueMemberPause",
        Queue: "support",
        MemberName: "SIP/6001",
        Interface: "SIP/6001",
        Paused: paused,
        PausedReason: "lunch",
      },
    })),
  );
  // Two events of A1's trunk leg, so that call-timeline has something to show (a call of
  // their own: rows of one insert share the first row's columns).
  await insertEventRecords(db, [
    ...[["Newchannel", "02T09:00:00", 3], ["Hangup", "02T09:05:00", 4]].map((
      [event, at, seq],
    ) => ({
      server: "pbx1",
      session_id: "018f0000-0000-7000-8000-000000000001",
      seq,
      received_at: T(at as string),
      event,
      uniqueid: legId("A1", "SIP/trunk"),
      linkedid: legId("A1", "SIP/trunk"),
      channel: "SIP/trunk-00000000",
      fields: {
        Event: event,
        Channel: "SIP/trunk-00000000",
        ChannelStateDesc: event === "Hangup" ? "Up" : "Down",
        CallerIDNum: "+15550001111",
        Uniqueid: legId("A1", "SIP/trunk"),
        ...(event === "Hangup" ? { Cause: "16", "Cause-txt": "Normal Clearing" } : {}),
      },
    })),
  ]);
}

/** The tests that only read the seeded database, run as steps of one test on one database. */
const SEEDED_TESTS: [name: string, fn: (db: SqlExecutor) => Promise<void>][] = [];

/** Registers a test on the seeded database; it must not write to it. */
function seededTest(name: string, fn: (db: SqlExecutor) => Promise<void>): void {
  SEEDED_TESTS.push([name, fn]);
}

// One migrated and seeded database for every read-only test of this file: creating,
// migrating and dropping one per test was most of their time.
Deno.test("named queries on the seeded Monday", async (t) => {
  const store: TestStore = await openTestStore("queries");
  try {
    await seed(store.db);
    for (const [name, fn] of SEEDED_TESTS) await t.step(name, () => fn(store.db));
  } finally {
    await store.close();
  }
});

seededTest("calls-per-day counts answered, missed and incomplete calls per day", async (db) => {
  assert.deepEqual(await callsPerDay(db, { server: "pbx1" }), [
    { day: "2026-11-02", total: 9, answered: 4, missed: 5, incomplete: 0, avg_talk_s: 245 },
    { day: "2026-11-03", total: 1, answered: 1, missed: 0, incomplete: 0, avg_talk_s: 3590 },
    { day: "2026-11-04", total: 1, answered: 1, missed: 0, incomplete: 1, avg_talk_s: null },
  ]);
  const all = await callsPerDay(db, { from: "2026-11-02", to: "2026-11-03" });
  assert.deepEqual(all, [
    { day: "2026-11-02", total: 10, answered: 5, missed: 5, incomplete: 0, avg_talk_s: 206 },
  ]);
});

seededTest("calls-per-day groups by the days of the given time zone", async (db) => {
  // Tokyo is UTC+9: M5 (15:00 UTC) falls on 11-03, N1 (23:30 UTC) on 11-04.
  const days = await callsPerDay(db, { server: "pbx1", tz: "Asia/Tokyo" });
  assert.deepEqual(days.map((d) => [d.day, d.total]), [
    ["2026-11-02", 8],
    ["2026-11-03", 1],
    ["2026-11-04", 2],
  ]);
  // A local date bound is local midnight: 2026-11-03 00:00 Tokyo = 11-02 15:00 UTC.
  const from = await callsPerDay(db, { server: "pbx1", tz: "Asia/Tokyo", from: "2026-11-03" });
  assert.equal(from.reduce((n, d) => n + d.total, 0), 3);
});

seededTest(
  "missed-calls lists callers nobody reached since, by their last missed call",
  async (db) => {
    // M1 was called back (C1, dialed with a 9 prefix); M4's caller got through later (A3).
    assert.deepEqual(await missedCalls(db, { server: "pbx1" }), [
      {
        src: "6002",
        src_name: null,
        missed: 1,
        first_missed_at: "2026-11-02 15:00:00",
        last_missed_at: "2026-11-02 15:00:00",
        last_dst: "6001",
        last_call_id: "M5",
      },
      {
        src: "+15550003333",
        src_name: null,
        missed: 2,
        first_missed_at: "2026-11-02 10:30:00",
        last_missed_at: "2026-11-02 12:00:00",
        last_dst: "200",
        last_call_id: "M3",
      },
    ]);
    const inbound = await missedCalls(db, { context: "from-trunk" });
    assert.deepEqual(inbound.map((r) => r.src), ["+15550003333"]);
  },
);

seededTest("longest-calls orders by duration and honours the limit", async (db) => {
  const rows = await longestCalls(db, { server: "pbx1", limit: 3 });
  assert.deepEqual(rows.map((r) => [r.call_id, r.duration_s, r.billsec_s]), [
    ["N1", 3600, 3590],
    ["C1", 600, 580],
    ["A1", 300, 290],
  ]);
  assert.deepEqual(rows[0], {
    call_id: "N1",
    started_at: "2026-11-03 23:30:00",
    src: "+15550005555",
    dst: "200",
    answered_by: "SIP/6002",
    disposition: "ANSWERED",
    duration_s: 3600,
    billsec_s: 3590,
    complete: true,
  });
});

seededTest(
  "busiest-extensions ranks endpoints by calls, leaving Local channels out",
  async (db) => {
    assert.deepEqual(
      await busiestExtensions(db, { server: "pbx1", from: "2026-11-02", to: "2026-11-03" }),
      [
        { endpoint: "SIP/6001", calls: 7, answered: 4, unanswered: 3, talk_s: 980 },
        { endpoint: "SIP/trunk", calls: 7, answered: 3, unanswered: 4, talk_s: 925 },
        { endpoint: "SIP/6002", calls: 3, answered: 1, unanswered: 2, talk_s: 55 },
      ],
    );
  },
);

seededTest("heatmap counts calls by hour and weekday, every hour present", async (db) => {
  const rows = await heatmap(db, { server: "pbx1", from: "2026-11-02", to: "2026-11-03" });
  assert.equal(rows.length, 24);
  const mondays = Object.fromEntries(rows.filter((r) => r.total > 0).map((r) => [r.hour, r.mon]));
  assert.deepEqual(mondays, { 9: 2, 10: 2, 11: 1, 12: 1, 13: 1, 14: 1, 15: 1 });
  assert.equal(rows.reduce((n, r) => n + r.tue + r.wed + r.thu + r.fri + r.sat + r.sun, 0), 0);
});

seededTest(
  "peak-concurrency finds each day's peak, counting calls carried over midnight",
  async (db) => {
    assert.deepEqual(await peakConcurrency(db, { server: "pbx1" }), [
      { day: "2026-11-02", peak: 2, peak_at: "09:01:00", calls: 9 },
      { day: "2026-11-03", peak: 1, peak_at: "23:30:00", calls: 1 },
      { day: "2026-11-04", peak: 1, peak_at: "00:00:00", calls: 1 },
    ]);
    // Both servers: X1 (pbx2, 09:00:30-09:01:30) overlaps A1 and A2.
    const both = await peakConcurrency(db, { from: "2026-11-02", to: "2026-11-03" });
    assert.deepEqual(both, [{ day: "2026-11-02", peak: 3, peak_at: "09:01:00", calls: 10 }]);
  },
);

seededTest(
  "queue-summary gives offered, answered, abandoned, waits and service level",
  async (db) => {
    assert.deepEqual(await queueSummary(db, {}), [
      {
        queue: "sales",
        offered: 1,
        answered: 1,
        abandoned: 0,
        unanswered: 0,
        avg_wait_s: 10,
        avg_abandon_s: null,
        max_wait_s: 10,
        avg_talk_s: 60,
        service_level_pct: 100,
      },
      {
        queue: "support",
        offered: 5,
        answered: 2,
        abandoned: 2,
        unanswered: 1,
        avg_wait_s: 15,
        avg_abandon_s: 24,
        max_wait_s: 300,
        avg_talk_s: 150,
        service_level_pct: 20,
      },
    ]);
    const lenient = await queueSummary(db, { queue: "support", threshold: 30 });
    assert.equal(lenient.length, 1);
    assert.equal(lenient[0].service_level_pct, 40);
  },
);

seededTest("agent-performance combines rings (ms) and talk time (s) per agent", async (db) => {
  assert.deepEqual(await agentPerformance(db, {}), [
    {
      agent: "SIP/6001",
      rung: 4,
      answered: 2,
      no_answer: 1,
      answer_rate_pct: 50,
      avg_ring_s: 2.5,
      talk_s: 160,
      avg_talk_s: 80,
      avg_caller_wait_s: 7.5,
    },
    {
      agent: "SIP/6002",
      rung: 1,
      answered: 1,
      no_answer: 0,
      answer_rate_pct: 100,
      avg_ring_s: 5,
      talk_s: 200,
      avg_talk_s: 200,
      avg_caller_wait_s: 25,
    },
  ]);
  const sales = await agentPerformance(db, { queue: "sales" });
  assert.deepEqual(sales.map((r) => [r.agent, r.rung, r.answered]), [["SIP/6001", 1, 1]]);
});

seededTest("abandon-waits buckets abandoned callers' waits with cumulative shares", async (db) => {
  assert.deepEqual(await abandonWaits(db, { queue: "support" }), [
    { wait_s: "0-10", abandoned: 1, pct: 50, cumulative_pct: 50 },
    { wait_s: "10-30", abandoned: 0, pct: 0, cumulative_pct: 50 },
    { wait_s: "30-60", abandoned: 1, pct: 50, cumulative_pct: 100 },
    { wait_s: "60-120", abandoned: 0, pct: 0, cumulative_pct: 100 },
    { wait_s: "120-300", abandoned: 0, pct: 0, cumulative_pct: 100 },
    { wait_s: "300+", abandoned: 0, pct: 0, cumulative_pct: 100 },
  ]);
  const coarse = await abandonWaits(db, { buckets: [10, 60] });
  assert.deepEqual(coarse.map((b) => [b.wait_s, b.abandoned]), [["0-10", 1], ["10-60", 1], [
    "60+",
    0,
  ]]);
  await assert.rejects(() => abandonWaits(db, { buckets: [30, 10] }), QueryParamError);
});

seededTest("endpoint-availability weighs states by time, leaving unknown time out", async (db) => {
  // SIP/6001: up 00-06, down 06-08, unknown 08-12, up 12-24 → 64800 / 72000.
  // SIP/6002: unmonitored 00-12, lagged (up) 12-24.
  assert.deepEqual(await endpointAvailability(db, { from: "2026-11-02", to: "2026-11-03" }), [
    {
      day: "2026-11-02",
      endpoint: "SIP/6001",
      up_pct: 90,
      up_s: 64800,
      down_s: 7200,
      samples: 4,
    },
    { day: "2026-11-02", endpoint: "SIP/6002", up_pct: 100, up_s: 43200, down_s: 0, samples: 2 },
  ]);
  const days = await endpointAvailability(db, {
    endpoint: "SIP/6001",
    from: "2026-11-02",
    to: "2026-11-04",
  });
  // 11-03: up 00-10 (carried from the 12:00 sample), down 10-24.
  assert.deepEqual(days[1], {
    day: "2026-11-03",
    endpoint: "SIP/6001",
    up_pct: 41.67,
    up_s: 36000,
    down_s: 50400,
    samples: 2,
  });
  // The same day on its own: the state at 00:00 comes from a sample before the range.
  assert.deepEqual(
    await endpointAvailability(db, { endpoint: "SIP/6001", from: "2026-11-03", to: "2026-11-04" }),
    [days[1]],
  );
});

seededTest("endpoint-outages reports down intervals, the last one still open", async (db) => {
  assert.deepEqual(await endpointOutages(db, {}), [
    {
      server: "pbx1",
      endpoint: "SIP/6001",
      down_from: "2026-11-02 06:00:00",
      down_until: "2026-11-02 12:00:00",
      duration_s: 21600,
      samples: 1,
    },
    {
      server: "pbx1",
      endpoint: "SIP/6001",
      down_from: "2026-11-03 10:00:00",
      down_until: null,
      duration_s: null,
      samples: 2,
    },
  ]);
  const later = await endpointOutages(db, { from: "2026-11-03" });
  assert.equal(later.length, 1);
  // A range inside an outage reports the whole outage: its start and end lie outside.
  const whole = await endpointOutages(db, { from: "2026-11-02 08:00", to: "2026-11-02 09:00" });
  assert.deepEqual(whole.map((o) => [o.down_from, o.down_until, o.samples]), [
    ["2026-11-02 06:00:00", "2026-11-02 12:00:00", 1],
  ]);
});

seededTest("failure-causes groups failed legs by endpoint, cause and dial status", async (db) => {
  const rows = await failureCauses(db, { server: "pbx1", from: "2026-11-02", to: "2026-11-03" });
  assert.deepEqual(
    rows.map((r) => [r.endpoint, r.cause, r.dial_status, r.legs, r.pct_of_endpoint]),
    [
      ["SIP/6001", 19, "NOANSWER", 2, 28.6],
      ["SIP/6001", 16, "CANCEL", 1, 14.3],
      ["SIP/6002", 16, null, 1, 33.3],
      ["SIP/6002", 20, "CHANUNAVAIL", 1, 33.3],
      ["SIP/trunk", 16, null, 3, 42.9],
      ["SIP/trunk", 17, null, 1, 14.3],
    ],
  );
  assert.equal(rows.find((r) => r.cause === 17)?.cause_txt, "User busy");
});

seededTest("transfers lists blind and attended transfers with their calls", async (db) => {
  assert.deepEqual(await transfers(db, { server: "pbx1" }), [
    {
      at: "2026-11-02 09:01:30",
      kind: "attended",
      result: "Fail",
      call_id: "A2",
      transferer: "SIP/6001-00000003",
      transferee: "SIP/6002-00000004",
      target: "SIP/6003-00000009",
    },
    {
      at: "2026-11-02 09:03:00",
      kind: "blind",
      result: "Success",
      call_id: "A1",
      transferer: "SIP/6001-00000002",
      transferee: "SIP/trunk-00000000",
      target: "300@internal",
    },
  ]);
});

seededTest("calls-during-gaps finds calls open across a disconnect or a crash", async (db) => {
  const rows = await callsDuringGaps(db, {});
  assert.deepEqual(
    rows.map((r) => [r.server, r.gap_from, r.gap_until, r.disconnect_reason, r.call_id]),
    [
      ["pbx2", "2026-11-01 00:00:00", "2026-11-02 09:01:00", null, "X1"],
      ["pbx1", "2026-11-04 08:10:00", "2026-11-04 08:30:00", "eof", "G1"],
    ],
  );
  assert.equal(rows[1].complete, false);
  assert.deepEqual((await callsDuringGaps(db, { server: "pbx1" })).map((r) => r.call_id), ["G1"]);
});

seededTest(
  "parameters are bound, so quotes in values match nothing instead of everything",
  async (db) => {
    assert.deepEqual(await callsPerDay(db, { server: "pbx1' or '1'='1" }), []);
    assert.deepEqual(await missedCalls(db, { context: "x'); drop table calls; --" }), []);
    assert.equal((await longestCalls(db, {})).length, 11);
  },
);

seededTest("bad times and time zones are refused with the parameter named", async (db) => {
  await assert.rejects(
    () => callsPerDay(db, { from: "last tuesday" }),
    /--from: "last tuesday" is not a time/,
  );
  await assert.rejects(() => callsPerDay(db, { tz: "Mars/Olympus" }), /--tz: unknown time zone/);
  assert.equal(
    (await callsPerDay(db, { from: "2026-11-02T00:00:00+09:00", to: "2026-11-05T00:00:00Z" }))
      .length,
    3,
  );
});

Deno.test("call-timeline shows one call's events in order, found by any of its uniqueids", async () => {
  const store = await openTestStore("queries_timeline");
  try {
    await loadFixtureEvents(store.db, "sip-calls");
    await runProjectionsOnce(store);
    const byCallee = await callTimeline(store.db, { call: "1795663687.43", tz: "UTC" });
    assert.deepEqual(byCallee.map((r) => r.event), [
      "Newchannel",
      "Newstate",
      "Newchannel",
      "NewCallerid",
      "Newstate",
      "DialBegin",
      "DialState",
      "Newstate",
      "DialEnd",
      "Newstate",
      "BridgeEnter",
      "BridgeEnter",
      "HangupRequest",
      "BridgeLeave",
      "SoftHangupRequest",
      "Hangup",
      "Cdr",
      "BridgeLeave",
      "Hangup",
    ]);
    assert.deepEqual(byCallee[0], {
      at: "2026-11-26 03:28:07.205511",
      server: "pbx1",
      event: "Newchannel",
      channel: "SIP/trunk-00000010",
      uniqueid: "1795663687.42",
      details:
        "ChannelStateDesc=Down CallerIDNum=sipp CallerIDName=sipp Context=from-trunk Exten=300",
    });
    assert.equal(byCallee[8].details, "DestChannel=SIP/6001-00000011 DialStatus=ANSWER");
    const byCallId = await callTimeline(store.db, { call: "1795663687.42", tz: "UTC" });
    assert.deepEqual(byCallId, byCallee);
    const everything = await callTimeline(store.db, { call: "1795663687.42", all: true });
    assert.ok(everything.some((r) => r.event === "VarSet"));
    assert.ok(everything.some((r) => r.event === "CEL"));
    assert.deepEqual(await callTimeline(store.db, { call: "1795663687.999" }), []);
    const busy = await callTimeline(store.db, { call: "1795663691.45" });
    assert.deepEqual(busy.at(-1)?.details, "Cause=17 Cause-txt=User busy");
  } finally {
    await store.close();
  }
});

Deno.test("the registry holds the fifteen named queries of DESIGN.md, then the dashboard's", () => {
  assert.deepEqual(QUERIES.map((q) => q.name), [
    "calls-per-day",
    "missed-calls",
    "call-timeline",
    "longest-calls",
    "busiest-extensions",
    "heatmap",
    "peak-concurrency",
    "queue-summary",
    "agent-performance",
    "abandon-waits",
    "endpoint-availability",
    "endpoint-outages",
    "failure-causes",
    "transfers",
    "calls-during-gaps",
    "queue-stats",
    "agent-pauses",
  ]);
  for (const q of QUERIES) {
    assert.ok(q.description.length > 0 && !q.description.includes("\n"), q.name);
    assert.equal(findQuery(q.name), q);
  }
});

seededTest("every registered query runs and returns rows with its declared columns", async (db) => {
  for (const q of QUERIES) {
    const rows = await q.run(db, q.name === "call-timeline" ? { call: "A1" } : { tz: "UTC" });
    assert.ok(rows.length > 0, `${q.name} returned no rows on the seeded data`);
    for (const row of rows) assert.deepEqual(Object.keys(row), [...q.columns], q.name);
  }
  assert.deepEqual(
    (await callTimeline(db, { call: "A1", tz: "UTC" })).map((r) => [r.at, r.event, r.details]),
    [
      [
        "2026-11-02 09:00:00.000000",
        "Newchannel",
        "ChannelStateDesc=Down CallerIDNum=+15550001111",
      ],
      ["2026-11-02 09:05:00.000000", "Hangup", "Cause=16 Cause-txt=Normal Clearing"],
    ],
  );
});

Deno.test("CSV output follows RFC 4180: CRLF, quoted commas, doubled quotes, empty nulls", () => {
  const csv = formatCsv(["a", "b", "c"], [
    { a: 'say "hi"', b: "x,y", c: null },
    { a: "line\nbreak", b: 3, c: true },
  ]);
  assert.equal(csv, 'a,b,c\r\n"say ""hi""","x,y",\r\n"line\nbreak",3,true\r\n');
});

Deno.test("table output aligns columns, numbers to the right, and counts rows", () => {
  const table = formatTable(["endpoint", "calls"], [
    { endpoint: "SIP/6001", calls: 7 },
    { endpoint: "PJSIP/ünï", calls: 12 },
  ]);
  assert.equal(
    table,
    "endpoint   calls\n---------  -----\nSIP/6001       7\nPJSIP/ünï     12\n(2 rows)\n",
  );
  assert.equal(formatTable(["x"], []), "x\n-\n(0 rows)\n");
});

Deno.test("JSON output is one object per line with the declared columns", () => {
  const text = formatRows("json", ["day", "total"], [
    { day: "2026-11-02", total: 9, extra: "dropped" },
    { day: "2026-11-03", total: 1 },
  ]);
  assert.equal(text, '{"day":"2026-11-02","total":9}\n{"day":"2026-11-03","total":1}\n');
});

Deno.test("deno task query prints a named query as CSV and lists every query", async () => {
  const store = await openTestStore("queries_cli");
  try {
    await seed(store.db);
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("../daemon/query_cli.ts", import.meta.url).pathname, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    };
    const csv = await run(
      "calls-per-day",
      "--database-url",
      store.url!,
      "--server",
      "pbx1",
      "--tz",
      "UTC",
      "--format",
      "csv",
    );
    assert.equal(csv.code, 0, csv.stderr);
    assert.equal(
      csv.stdout,
      "day,total,answered,missed,incomplete,avg_talk_s\r\n2026-11-02,9,4,5,0,245\r\n2026-11-03,1,1,0,0,3590\r\n2026-11-04,1,1,0,1,\r\n",
    );
    const list = await run("--list");
    assert.equal(list.code, 0);
    assert.equal(list.stdout.trim().split("\n").length, QUERIES.length);
    const bad = await run("calls-per-day", "--database-url", store.url!, "--format", "xml");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--format: "xml" is not one of table, csv, json/);
    const unknown = await run("calls-per-week");
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown query "calls-per-week"/);
  } finally {
    await store.close();
  }
});

/** Runs the query CLI in this process on `database`; returns its status and what it printed. */
async function runCli(
  argv: string[],
  database: CliDatabase,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stderr: string[] = [];
  const stdout: string[] = [];
  const { error, log } = console;
  const write = Deno.stdout.write;
  console.error = (...data: unknown[]) => stderr.push(data.join(" "));
  console.log = (...data: unknown[]) => stdout.push(data.join(" "));
  Deno.stdout.write = (bytes: Uint8Array) => {
    stdout.push(new TextDecoder().decode(bytes));
    return Promise.resolve(bytes.length);
  };
  try {
    const code = await cliMain(argv, database);
    return { code, stdout: stdout.join("\n"), stderr: stderr.join("\n") };
  } finally {
    Object.assign(console, { error, log });
    Deno.stdout.write = write;
  }
}

/** A database side that records the options it was opened with and has no tables. */
function recordingDatabase(): CliDatabase & { opened: Record<string, unknown>[] } {
  const opened: Record<string, unknown>[] = [];
  return {
    opened,
    options: CLI_DATABASE.options,
    help: CLI_DATABASE.help,
    open(values) {
      opened.push(values);
      return Promise.reject(new Error("not connected (test)"));
    },
    describeError: (error) => (error as Error).message,
  };
}

/** A value each required parameter accepts, so that only the option under test varies. */
function requiredArgs(query: QueryDefinition): string[] {
  return query.params.filter((p) => p.required).flatMap((p) => [`--${p.name}`, "1"]);
}

Deno.test("every time option takes a relative time after a space, as --help shows (--from -7d)", async () => {
  let checked = 0;
  for (const query of QUERIES) {
    for (const param of query.params.filter((p) => p.kind === "time")) {
      for (const value of ["-7d", "-12h", "-30m"]) {
        const database = recordingDatabase();
        const argv = [query.name, `--${param.name}`, value, ...requiredArgs(query)];
        const result = await runCli(argv, database);
        assert.equal(result.code, 1, `${argv.join(" ")}: ${result.stderr}`);
        assert.equal(result.stderr, "error: not connected (test)");
        assert.equal(database.opened[0][param.name], value, argv.join(" "));
        checked++;
      }
    }
  }
  assert.ok(checked >= 3 * 2 * 14, `${checked} relative times checked`);
  // A mistyped option is still an error, not taken for a value.
  const typo = await runCli(["calls-per-day", "--from", "--to", "today"], recordingDatabase());
  assert.equal(typo.code, 2);
});

Deno.test("an impossible date names the option and the forms expected, before any SQL runs", async () => {
  const cases: [string, RegExp][] = [
    ["2026-13-45", /month 13/],
    ["2026-02-30", /day 30 \(2026-02 has 28\)/],
    ["2028-02-30", /day 30 \(2028-02 has 29\)/],
    ["2026-11-26 24:00", /hour 24/],
    ["2026-11-26T08:61:00Z", /minute 61/],
    ["2026-11-26 08:00:60", /second 60/],
    ["2026-11-26T08:00:00+24:00", /UTC offset 24 hours/],
  ];
  for (const [value, problem] of cases) {
    const database = recordingDatabase();
    const result = await runCli(["calls-per-day", "--to", value], database);
    assert.equal(result.code, 2, value);
    assert.match(result.stderr, /^error: --to: "/);
    assert.match(result.stderr, problem);
    assert.match(result.stderr, /expected 2026-11-26, '2026-11-26 08:00', .* -7d \/ -12h \/ -30m/);
    assert.deepEqual(database.opened, [], "the database is not even opened");
    // Code calling the query function directly gets the same error.
    await assert.rejects(callsPerDay(failingExecutor, { from: value }), QueryParamError);
  }
  const word = await runCli(["missed-calls", "--from", "last week"], recordingDatabase());
  assert.equal(word.code, 2);
  assert.match(word.stderr, /--from: "last week" is not a time \(expected 2026-11-26/);
  for (const ok of ["2024-02-29", "2026-11-26 23:59:59.5", "2026-11-26T08:00:00+05:30"]) {
    const result = await runCli(["calls-per-day", "--from", ok], recordingDatabase());
    assert.equal(result.code, 1, `${ok}: ${result.stderr}`);
  }
});

/** An executor that fails any SQL it is given: a query that reaches it checked too late. */
const failingExecutor = {
  execute: () => Promise.reject(new Error("SQL was run")),
} as unknown as SqlExecutor;

Deno.test("a query never creates an embedded store: a mistyped --data-dir says none is there", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dami-query-store-" });
  try {
    const typo = `${dir}/dta`;
    const missing = await runCli(["calls-per-day", "--data-dir", typo], CLI_DATABASE);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^error: no DAMI store in .*\/dta \(--data-dir .*\/dta\)/);
    await assert.rejects(Deno.stat(typo), Deno.errors.NotFound, "nothing was created");
    // The same through a config file's dataDir, and through the default ./data.
    await Deno.writeTextFile(`${dir}/c.jsonc`, `{ "dataDir": "./elsewhere" }`);
    const viaConfig = await runCli(["calls-per-day", "--config", `${dir}/c.jsonc`], CLI_DATABASE);
    assert.match(viaConfig.stderr, /no DAMI store in .*\/elsewhere \(dataDir of .*c\.jsonc\)/);
    // The default ./data, run in that directory (in a process of its own: the working
    // directory is shared by the test files that run in parallel).
    const byDefault = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        fileURLToPath(new URL("../daemon/query_cli.ts", import.meta.url)),
        "calls-per-day",
      ],
      cwd: dir,
      env: { NO_COLOR: "1" },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(byDefault.code, 1);
    assert.match(
      new TextDecoder().decode(byDefault.stderr),
      /^error: no DAMI store in \.\/data \(the default \.\/data\)/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["c.jsonc"]);
    // A store the daemon created opens and answers.
    await (await openStore({ dataDir: `${dir}/data` })).close();
    const found = await runCli(["calls-per-day", "--data-dir", `${dir}/data`], CLI_DATABASE);
    assert.equal(found.code, 0, found.stderr);
    assert.match(found.stdout, /\(0 rows\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
