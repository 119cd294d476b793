/**
 * Call-history projections built from real Asterisk 20 events (tests/fixtures), stored in
 * `ami_events` as the daemon stores them, projected by the runner, read back with SQL.
 * Where a rule needs a situation the recordings do not contain (a transfer, an abandon),
 * the real events are edited header by header.
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import type { AmiMessage } from "../dami/message.ts";
import { headerValue } from "../dami/message.ts";
import {
  rebuildProjections,
  runProjectionsOnce,
  startProjector,
} from "../daemon/projections/projector.ts";
import { selectRows, type SqlExecutor } from "../queries/db.ts";
import { CALL_FIXTURE_NAMES, type FixtureName } from "./fixtures.ts";
import {
  fixtureEvents,
  insertMessages,
  insertSession,
  loadFixtureEvents,
  openPgliteTestStore,
  openTestStore,
  type TestStore,
  type TimedMessage,
} from "./load_events.ts";

interface CallRow {
  call_id: string;
  started_at: string;
  answered_at: string | null;
  ended_at: string | null;
  src: string | null;
  dst: string | null;
  context: string | null;
  answered_by: string | null;
  disposition: string | null;
  duration_s: number | null;
  billsec_s: number | null;
  hangup_cause: number | null;
  transferred: boolean;
  queue: string | null;
  legs: number;
  complete: boolean;
}

async function withStore(prefix: string, fn: (store: TestStore) => Promise<void>): Promise<void> {
  const store = await openTestStore(prefix);
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

/** The call a channel belongs to. */
async function callOf(db: SqlExecutor, uniqueid: string): Promise<CallRow | undefined> {
  const [row] = await selectRows<CallRow>(
    db,
    sql`select c.call_id, to_char(c.started_at at time zone 'UTC', 'HH24:MI:SS.US') as started_at,
          to_char(c.answered_at at time zone 'UTC', 'HH24:MI:SS.US') as answered_at,
          to_char(c.ended_at at time zone 'UTC', 'HH24:MI:SS.US') as ended_at,
          c.src, c.dst, c.context, c.answered_by, c.disposition, c.duration_s, c.billsec_s,
          c.hangup_cause, c.transferred, c.queue, c.legs, c.complete
        from calls c join call_legs l on l.server = c.server and l.call_id = c.call_id
        where l.uniqueid = ${uniqueid}`,
  );
  return row;
}

async function countCalls(db: SqlExecutor): Promise<number> {
  const [row] = await selectRows<{ n: number }>(db, sql`select count(*)::int as n from calls`);
  return row.n;
}

/** Every projection table as JSON text, in key order. */
async function snapshot(db: SqlExecutor): Promise<Record<string, string>> {
  const tables: Record<string, string> = {
    calls: "server, call_id",
    call_legs: "server, uniqueid",
    queue_calls: "server, uniqueid, queue, joined_at",
    queue_attempts: "server, uniqueid",
    endpoint_status: "event_id, endpoint",
    projection_nodes: "server, node",
  };
  const out: Record<string, string> = {};
  for (const [table, order] of Object.entries(tables)) {
    const rows = await selectRows(
      db,
      sql`select to_jsonb(t)::text as row from ${sql.identifier(table)} t order by ${
        sql.raw(order)
      }`,
    );
    out[table] = JSON.stringify(rows);
  }
  return out;
}

/** Copy of `message` with headers replaced (`undefined` removes), matched case-insensitively. */
function edit(message: AmiMessage, changes: Record<string, string | undefined>): AmiMessage {
  const lower = new Map(
    Object.entries(changes).map(([k, v]) => [k.toLowerCase(), [k, v] as const]),
  );
  const headers: [string, string][] = [];
  const seen = new Set<string>();
  for (const [k, v] of message.headers) {
    const change = lower.get(k.toLowerCase());
    if (change === undefined) headers.push([k, v]);
    else if (change[1] !== undefined) headers.push([k, change[1]]);
    seen.add(k.toLowerCase());
  }
  for (const [key, [name, value]] of lower) {
    if (!seen.has(key) && value !== undefined) headers.push([name, value]);
  }
  return { ...message, headers };
}

const eventName = (m: AmiMessage) => headerValue(m, "Event") ?? "";
const uniqueidOf = (m: AmiMessage) => headerValue(m, "Uniqueid");

/** Fixture events in one session; `change` edits or drops (returns undefined) events. */
async function loadEdited(
  db: SqlExecutor,
  name: FixtureName,
  change: (m: AmiMessage) => AmiMessage | undefined,
  sessionId = crypto.randomUUID(),
): Promise<TimedMessage[]> {
  const events = fixtureEvents(name).flatMap((e) => {
    const message = change(e.message);
    return message === undefined ? [] : [{ ...e, message }];
  });
  await insertSession(db, {
    id: sessionId,
    server: "pbx1",
    connectedAtMs: events[0].receivedAtMs - 1000,
    disconnectedAtMs: events[events.length - 1].receivedAtMs + 1000,
  });
  await insertMessages(db, "pbx1", sessionId, events);
  return events;
}

/** Makes every channel its own linkedid, so only the other link rules can join legs. */
function unlink(m: AmiMessage): AmiMessage {
  const changes: Record<string, string | undefined> = {};
  for (const [k, v] of m.headers) {
    const key = k.toLowerCase();
    if (key === "linkedid") changes[k] = headerValue(m, "Uniqueid") ?? v;
    if (key === "destlinkedid") changes[k] = headerValue(m, "DestUniqueid") ?? v;
  }
  return edit(m, changes);
}

Deno.test("an answered SIP call joins trunk and phone legs into one ANSWERED call", async () => {
  await withStore("proj_answered", async ({ db }) => {
    await loadFixtureEvents(db, "sip-calls");
    await runProjectionsOnce({ db });
    const call = await callOf(db, "1795663687.43");
    assert.deepEqual(call, {
      call_id: "1795663687.42",
      started_at: "03:28:07.205511", // Newchannel of the trunk leg
      answered_at: "03:28:07.208040", // the trunk's Newstate Up: cdr.c answers party A there
      ended_at: "03:28:10.215833", // the last Hangup
      src: "sipp",
      dst: "300",
      context: "from-trunk",
      answered_by: "SIP/6001",
      disposition: "ANSWERED",
      duration_s: 3,
      billsec_s: 3,
      hangup_cause: 16,
      transferred: false,
      queue: null,
      legs: 2,
      complete: true,
    });
    const legs = await selectRows<Record<string, unknown>>(
      db,
      sql`select uniqueid, channel, endpoint, caller_num, context, exten, cause, cause_txt, dial_status
          from call_legs where call_id = '1795663687.42' order by uniqueid`,
    );
    assert.deepEqual(legs, [
      {
        uniqueid: "1795663687.42",
        channel: "SIP/trunk-00000010",
        endpoint: "SIP/trunk",
        caller_num: "sipp",
        context: "from-trunk",
        exten: "300",
        cause: 16,
        cause_txt: "Normal Clearing",
        dial_status: "ANSWER",
      },
      {
        uniqueid: "1795663687.43",
        channel: "SIP/6001-00000011",
        endpoint: "SIP/6001",
        caller_num: "300",
        context: "internal",
        exten: "300",
        cause: 16,
        cause_txt: "Normal Clearing",
        dial_status: "ANSWER",
      },
    ]);
  });
});

Deno.test("busy and congested calls take their disposition from the hangup cause", async () => {
  await withStore("proj_busy", async ({ db }) => {
    await loadFixtureEvents(db, "sip-calls");
    await runProjectionsOnce({ db });
    const busy = await callOf(db, "1795663691.45");
    const congested = await callOf(db, "1795663692.46");
    assert.equal(busy?.disposition, "BUSY");
    assert.equal(busy?.hangup_cause, 17);
    assert.equal(busy?.answered_at, null);
    assert.equal(busy?.billsec_s, 0);
    assert.equal(congested?.disposition, "CONGESTION");
    assert.equal(congested?.hangup_cause, 34);
    assert.equal(await countCalls(db), 3);
  });
});

Deno.test("an Originate into a Local channel is answered when the originated channel goes Up", async () => {
  await withStore("proj_originate", async ({ db }) => {
    await loadFixtureEvents(db, "originate-local");
    await runProjectionsOnce({ db });
    const call = await callOf(db, "1795663605.16");
    assert.equal(call?.call_id, "1795663605.15");
    assert.equal(call?.answered_at, "03:26:45.130739"); // Newstate Up of ;1, before DialEnd
    assert.equal(call?.src, "5551234");
    assert.equal(call?.legs, 2);
    const failed = await callOf(db, "1795663614.20");
    assert.equal(failed?.disposition, "FAILED");
    assert.equal(failed?.answered_at, null);
    assert.equal(await countCalls(db), 3);
  });
});

Deno.test("DialBegin joins the dialed channel to its caller without a shared linkedid", async () => {
  await withStore("proj_dial", async ({ db }) => {
    // No linkedid link, no bridge: only DialBegin/DialEnd name both channels.
    await loadEdited(
      db,
      "sip-calls",
      (m) => eventName(m) === "BridgeEnter" ? undefined : unlink(m),
    );
    await runProjectionsOnce({ db });
    const call = await callOf(db, "1795663687.43");
    assert.equal(call?.call_id, "1795663687.42");
    assert.equal(call?.legs, 2);
    // Answered when the caller's channel goes Up, bridge or not.
    assert.equal(call?.answered_at, "03:28:07.208040");
    assert.equal(call?.disposition, "ANSWERED");
  });
});

Deno.test("a two-party bridge joins its channels and answers the call", async () => {
  await withStore("proj_bridge", async ({ db }) => {
    await loadEdited(
      db,
      "sip-calls",
      (m) => eventName(m).startsWith("Dial") ? undefined : unlink(m),
    );
    await runProjectionsOnce({ db });
    const call = await callOf(db, "1795663687.43");
    assert.equal(call?.call_id, "1795663687.42");
    assert.equal(call?.legs, 2);
    assert.equal(call?.answered_at, "03:28:07.208040");
    assert.equal(call?.answered_by, "SIP/6001"); // the caller's partner in the bridge
  });
});

Deno.test("a holding bridge neither joins its channels nor answers", async () => {
  await withStore("proj_holding", async ({ db }) => {
    await loadEdited(db, "sip-calls", (m) => {
      if (eventName(m).startsWith("Dial")) return undefined;
      const unlinked = unlink(m);
      return eventName(m) === "BridgeEnter" ? edit(unlinked, { BridgeType: "holding" }) : unlinked;
    });
    await runProjectionsOnce({ db });
    const caller = await callOf(db, "1795663687.42");
    const callee = await callOf(db, "1795663687.43");
    assert.equal(caller?.legs, 1);
    assert.equal(callee?.call_id, "1795663687.43");
    assert.equal(caller?.answered_by, null);
    assert.equal(await countCalls(db), 4);
  });
});

Deno.test("LocalBridge joins the two halves of a Local channel", async () => {
  for (const keepLocalBridge of [true, false]) {
    await withStore("proj_local", async ({ db }) => {
      await loadEdited(
        db,
        "originate-local",
        (m) => !keepLocalBridge && eventName(m) === "LocalBridge" ? undefined : unlink(m),
      );
      await runProjectionsOnce({ db });
      const half = await callOf(db, "1795663605.16");
      assert.equal(half?.call_id, keepLocalBridge ? "1795663605.15" : "1795663605.16");
    });
  }
});

Deno.test("a blind transfer merges two calls under the oldest linkedid and marks it transferred", async () => {
  await withStore("proj_transfer", async ({ db }) => {
    const events = fixtureEvents("sip-calls");
    const sessionId = crypto.randomUUID();
    await insertSession(db, {
      id: sessionId,
      server: "pbx1",
      connectedAtMs: events[0].receivedAtMs - 1000,
      disconnectedAtMs: null,
    });
    await insertMessages(db, "pbx1", sessionId, events);
    await runProjectionsOnce({ db });
    assert.equal(await countCalls(db), 3);
    // The phone of the first call blind-transfers the busy call's trunk leg (headers as
    // Asterisk 20's manager_bridges.c writes them, channels from the recording).
    const last = events[events.length - 1];
    const transfer: AmiMessage = {
      kind: "event",
      seq: 1000,
      receivedAt: last.receivedAtMs,
      headers: [
        ["Event", "BlindTransfer"],
        ["Privilege", "call,all"],
        ["Timestamp", "1795663691.827000"],
        ["Result", "Success"],
        ["TransfererChannel", "SIP/6001-00000011"],
        ["TransfererUniqueid", "1795663687.43"],
        ["TransfererLinkedid", "1795663687.42"],
        ["TransfereeChannel", "SIP/trunk-00000012"],
        ["TransfereeUniqueid", "1795663691.45"],
        ["TransfereeLinkedid", "1795663691.45"],
        ["IsExternal", "No"],
        ["Context", "internal"],
        ["Extension", "500"],
      ],
    };
    await insertMessages(db, "pbx1", sessionId, [{
      message: transfer,
      receivedAtMs: last.receivedAtMs,
    }]);
    await runProjectionsOnce({ db });
    assert.equal(await countCalls(db), 2);
    const merged = await callOf(db, "1795663691.45");
    assert.equal(merged?.call_id, "1795663687.42");
    assert.equal(merged?.transferred, true);
    assert.equal(merged?.legs, 3);
    assert.equal(merged?.ended_at, "03:28:11.828303");
  });
});

Deno.test("a queue call records join, connect, agent, hold and talk seconds", async () => {
  await withStore("proj_queue", async ({ db }) => {
    await loadFixtureEvents(db, "queue-call");
    await runProjectionsOnce({ db });
    const rows = await selectRows<Record<string, unknown>>(
      db,
      sql`select call_id, queue, caller, agent, hold_s, talk_s, outcome,
            to_char(joined_at at time zone 'UTC', 'HH24:MI:SS.US') as joined,
            to_char(connected_at at time zone 'UTC', 'HH24:MI:SS.US') as connected
          from queue_calls`,
    );
    assert.deepEqual(rows, [{
      call_id: "1795663698.47",
      queue: "support",
      caller: "sipp",
      agent: "SIP/6001",
      hold_s: 0,
      talk_s: 4,
      outcome: "answered",
      joined: "03:28:18.671624",
      connected: "03:28:18.674236",
    }]);
    const attempts = await selectRows<Record<string, unknown>>(
      db,
      sql`select uniqueid, caller_uniqueid, agent, ring_ms, outcome from queue_attempts`,
    );
    assert.deepEqual(attempts, [{
      uniqueid: "1795663698.48",
      caller_uniqueid: "1795663698.47",
      agent: "SIP/6001",
      ring_ms: 0,
      outcome: "connected",
    }]);
    const call = await callOf(db, "1795663698.47");
    assert.equal(call?.queue, "support");
    assert.equal(call?.answered_by, "SIP/6001");
  });
});

Deno.test("an abandoned queue call keeps HoldTime in seconds and a member's RingTime in ms", async () => {
  await withStore("proj_abandon", async ({ db }) => {
    // The recorded caller, but the agent never answers: AgentRingNoAnswer after 15 s of
    // ringing (RingTime in ms), then the caller hangs up after 17 s (HoldTime in s).
    const ringNoAnswer = (m: AmiMessage) =>
      edit(m, { Event: "AgentRingNoAnswer", Timestamp: "1795663713.672000", RingTime: "15000" });
    const abandon = (m: AmiMessage) =>
      edit(m, {
        Event: "QueueCallerAbandon",
        Timestamp: "1795663715.671624",
        Position: "1",
        OriginalPosition: "1",
        HoldTime: "17",
        Count: undefined,
      });
    const keep = new Set(["Newchannel", "Newstate", "QueueCallerJoin", "AgentCalled", "Hangup"]);
    await loadEdited(db, "queue-call", (m) => {
      const name = eventName(m);
      if (name === "AgentConnect") return ringNoAnswer(m);
      if (name === "QueueCallerLeave") return abandon(m);
      if (name === "Hangup") return edit(m, { Timestamp: "1795663715.680000" });
      return keep.has(name) ? m : undefined;
    });
    await runProjectionsOnce({ db });
    const [stay] = await selectRows<Record<string, unknown>>(
      db,
      sql`select outcome, hold_s, agent, talk_s from queue_calls`,
    );
    assert.deepEqual(stay, { outcome: "abandoned", hold_s: 17, agent: null, talk_s: null });
    const [attempt] = await selectRows<Record<string, unknown>>(
      db,
      sql`select agent, ring_ms, outcome from queue_attempts`,
    );
    assert.deepEqual(attempt, { agent: "SIP/6001", ring_ms: 15000, outcome: "no-answer" });
    // The dialplan answered the caller before Queue(): that is the call's answer time.
    const call = await callOf(db, "1795663698.47");
    assert.equal(call?.answered_at, "03:28:18.170175");
  });
});

Deno.test("a call stays incomplete until its last leg hangs up; the late Hangup completes it", async () => {
  await withStore("proj_late", async ({ db }) => {
    const events = fixtureEvents("sip-calls");
    const isLastHangup = (m: AmiMessage) =>
      eventName(m) === "Hangup" && uniqueidOf(m) === "1795663687.43";
    const sessionId = crypto.randomUUID();
    await insertSession(db, {
      id: sessionId,
      server: "pbx1",
      connectedAtMs: events[0].receivedAtMs - 1000,
      disconnectedAtMs: null,
    });
    await insertMessages(db, "pbx1", sessionId, events.filter((e) => !isLastHangup(e.message)));
    await runProjectionsOnce({ db });
    const open = await callOf(db, "1795663687.42");
    assert.equal(open?.complete, false);
    assert.equal(open?.ended_at, "03:28:10.215596"); // provisional: the trunk's Hangup
    assert.equal(open?.disposition, "ANSWERED");

    await insertMessages(db, "pbx1", sessionId, events.filter((e) => isLastHangup(e.message)));
    await runProjectionsOnce({ db });
    const closed = await callOf(db, "1795663687.42");
    assert.equal(closed?.complete, true);
    assert.equal(closed?.ended_at, "03:28:10.215833");
  });
});

Deno.test("events stored out of order project the same calls as in order", async () => {
  const inOrder = await (async () => {
    let snap: Record<string, string> = {};
    await withStore("proj_order_a", async ({ db }) => {
      await loadFixtureEvents(db, "sip-calls", {
        sessionId: "018f0000-0000-7000-8000-000000000001",
      });
      await runProjectionsOnce({ db });
      snap = await snapshot(db);
    });
    return snap;
  })();
  await withStore("proj_order_b", async ({ db }) => {
    const events = fixtureEvents("sip-calls");
    const sessionId = "018f0000-0000-7000-8000-000000000001";
    await insertSession(db, {
      id: sessionId,
      server: "pbx1",
      connectedAtMs: events[0].receivedAtMs - 1000,
      disconnectedAtMs: events[events.length - 1].receivedAtMs + 1000,
    });
    // Reverse order, projected every 10 events: every call is seen end first.
    const reversed = [...events].reverse();
    for (let i = 0; i < reversed.length; i += 10) {
      await insertMessages(db, "pbx1", sessionId, reversed.slice(i, i + 10));
      await runProjectionsOnce({ db });
    }
    const snap = await snapshot(db);
    // endpoint_status rows carry event ids, which differ with insertion order.
    delete snap.endpoint_status;
    delete inOrder.endpoint_status;
    assert.deepEqual(snap, inOrder);
  });
});

Deno.test("a call cut by an AMI disconnect is incomplete; calls after the reconnect are not", async () => {
  await withStore("proj_gap", async ({ db }) => {
    const events = fixtureEvents("sip-calls");
    const cut = events.findIndex((e) => eventName(e.message) === "BridgeEnter");
    const first = events.slice(0, cut);
    const second = events.slice(cut + 1); // the BridgeEnter was lost with the connection
    const cutAtMs = Number(headerValue(events[cut].message, "Timestamp")) * 1000;
    const s1 = crypto.randomUUID();
    const s2 = crypto.randomUUID();
    await insertSession(db, {
      id: s1,
      server: "pbx1",
      connectedAtMs: first[0].receivedAtMs - 1000,
      disconnectedAtMs: cutAtMs,
    });
    await insertSession(db, {
      id: s2,
      server: "pbx1",
      connectedAtMs: cutAtMs + 500,
      disconnectedAtMs: null,
    });
    await insertMessages(db, "pbx1", s1, first);
    await insertMessages(db, "pbx1", s2, second);
    await runProjectionsOnce({ db });
    assert.equal((await callOf(db, "1795663687.42"))?.complete, false);
    assert.equal((await callOf(db, "1795663691.45"))?.complete, true);
    assert.equal((await callOf(db, "1795663692.46"))?.complete, true);
  });
});

Deno.test("a caller first seen in a channel poll spans the call from its estimated creation", async () => {
  await withStore("proj_polled_caller", async ({ db }) => {
    // The caller's Newchannel was missed; a CoreShowChannel says it was up 5 s already.
    await loadEdited(
      db,
      "sip-calls",
      (m) =>
        eventName(m) === "Newchannel" && uniqueidOf(m) === "1795663687.42"
          ? edit(m, { Event: "CoreShowChannel", Duration: "00:00:05" })
          : m,
    );
    await runProjectionsOnce({ db });
    const call = await callOf(db, "1795663687.42");
    assert.equal(call?.started_at, "03:28:02.205511");
    assert.equal(call?.duration_s, 8);
    assert.equal(call?.billsec_s, 3);
    assert.equal(call?.complete, false);
  });
});

Deno.test("a call open when the last session ended stays incomplete without an end", async () => {
  await withStore("proj_gap_open", async ({ db }) => {
    await loadEdited(db, "sip-calls", (m) => eventName(m) === "Hangup" ? undefined : m);
    await runProjectionsOnce({ db });
    const call = await callOf(db, "1795663687.42");
    assert.equal(call?.complete, false);
    assert.equal(call?.ended_at, null);
    assert.equal(call?.duration_s, null);
    assert.equal(call?.disposition, "ANSWERED");
  });
});

Deno.test("incremental projection in small batches equals a full rebuild", async () => {
  await withStore("proj_rebuild", async ({ db }) => {
    const names: FixtureName[] = ["originate-local", "lists-and-errors", "sip-calls", "queue-call"];
    for (const name of names) {
      await loadFixtureEvents(db, name);
      await runProjectionsOnce({ db }, { batchSize: 7 });
    }
    const incremental = await snapshot(db);
    const progress = await rebuildProjections({ db });
    assert.equal(progress.lastEventId > 0n, true);
    const rebuilt = await snapshot(db);
    assert.deepEqual(rebuilt, incremental);
    assert.equal(JSON.parse(rebuilt.calls).length, 7);
  });
});

Deno.test("every recorded kind of call projects the same in small batches as in a rebuild", async () => {
  await withStore("proj_rebuild_kinds", async ({ db }) => {
    for (const name of CALL_FIXTURE_NAMES) {
      await loadFixtureEvents(db, name, { server: name });
      // Batches cut transfers, queue retries and parallel dials at arbitrary events.
      await runProjectionsOnce({ db }, { batchSize: 23 });
    }
    const incremental = await snapshot(db);
    await rebuildProjections({ db });
    assert.deepEqual(await snapshot(db), incremental);
    assert.equal(JSON.parse(incremental.calls).length, 18);
  });
});

Deno.test("endpoint samples come from polls and pushed events, normalised", async () => {
  await withStore("proj_endpoints", async ({ db }) => {
    await loadFixtureEvents(db, "lists-and-errors");
    const peer = fixtureEvents("sip-calls").find((e) => eventName(e.message) === "PeerEntry")!;
    const sessionId = crypto.randomUUID();
    await insertSession(db, {
      id: sessionId,
      server: "pbx1",
      connectedAtMs: peer.receivedAtMs,
      disconnectedAtMs: null,
    });
    const at = (message: AmiMessage, seq: number) => ({
      message: { ...message, seq },
      receivedAtMs: peer.receivedAtMs,
    });
    const pushed = (seq: number, headers: [string, string][]): TimedMessage =>
      at({ kind: "event", seq, receivedAt: 0, headers }, seq);
    await insertMessages(db, "pbx1", sessionId, [
      at(edit(peer.message, { Status: "OK (5 ms)" }), 1),
      at(edit(peer.message, { ObjectName: "6002", Status: "LAGGED (2500 ms)" }), 2),
      pushed(3, [
        ["Event", "PeerStatus"],
        ["Timestamp", "1795663700.000000"],
        [
          "ChannelType",
          "SIP",
        ],
        ["Peer", "SIP/6003"],
        ["PeerStatus", "Unreachable"],
      ]),
      pushed(4, [
        ["Event", "ContactStatus"],
        ["Timestamp", "1795663701.000000"],
        [
          "URI",
          "sip:7001@10.0.0.5:5060",
        ],
        ["ContactStatus", "Reachable"],
        ["AOR", "7001"],
        ["EndpointName", "7001"],
        [
          "RoundtripUsec",
          "12345",
        ],
      ]),
      pushed(5, [["Event", "EndpointList"], ["ObjectType", "endpoint"], ["ObjectName", "7002"], [
        "DeviceState",
        "Unavailable",
      ]]),
      pushed(6, [["Event", "DeviceStateChange"], ["Timestamp", "1795663702.000000"], [
        "Device",
        "Queue:support",
      ], ["State", "INUSE"]]),
    ]);
    await runProjectionsOnce({ db });
    const rows = await selectRows<Record<string, unknown>>(
      db,
      sql`select endpoint, state, latency_ms, source, detail from endpoint_status order by event_id, endpoint`,
    );
    assert.deepEqual(rows, [
      {
        endpoint: "SIP/6001",
        state: "unreachable",
        latency_ms: null,
        source: "PeerEntry",
        detail: "UNREACHABLE",
      },
      {
        endpoint: "SIP/6002",
        state: "unmonitored",
        latency_ms: null,
        source: "PeerEntry",
        detail: "Unmonitored",
      },
      {
        endpoint: "SIP/trunk",
        state: "unmonitored",
        latency_ms: null,
        source: "PeerEntry",
        detail: "Unmonitored",
      },
      {
        endpoint: "SIP/6001",
        state: "unreachable",
        latency_ms: null,
        source: "DeviceStateChange",
        detail: "UNAVAILABLE",
      },
      {
        endpoint: "SIP/6001",
        state: "reachable",
        latency_ms: 5,
        source: "PeerEntry",
        detail: "OK (5 ms)",
      },
      {
        endpoint: "SIP/6002",
        state: "lagged",
        latency_ms: 2500,
        source: "PeerEntry",
        detail: "LAGGED (2500 ms)",
      },
      {
        endpoint: "SIP/6003",
        state: "unreachable",
        latency_ms: null,
        source: "PeerStatus",
        detail: "Unreachable",
      },
      {
        endpoint: "PJSIP/7001",
        state: "reachable",
        latency_ms: 12.345,
        source: "ContactStatus",
        detail: "Reachable",
      },
      {
        endpoint: "PJSIP/7002",
        state: "unreachable",
        latency_ms: null,
        source: "EndpointList",
        detail: "Unavailable",
      },
    ]);
  });
});

Deno.test("the projector gives the same tables on PGlite as on PostgreSQL", async () => {
  const load = async (store: TestStore) => {
    const names: FixtureName[] = ["sip-calls", "queue-call", "originate-local", "lists-and-errors"];
    for (const [i, name] of names.entries()) {
      await loadFixtureEvents(store.db, name, {
        sessionId: `018f0000-0000-7000-8000-00000000000${i}`,
      });
    }
    await runProjectionsOnce(store, { batchSize: 50 });
    return await snapshot(store.db);
  };
  const lite = await openPgliteTestStore();
  let fromLite: Record<string, string>;
  try {
    fromLite = await load(lite);
  } finally {
    await lite.close();
  }
  await withStore("proj_pglite", async (store) => {
    assert.deepEqual(await load(store), fromLite);
  });
});

Deno.test("a young hole in event ids holds the checkpoint back until it is old", async () => {
  await withStore("proj_hole", async ({ db }) => {
    const events = fixtureEvents("sip-calls");
    const sessionId = crypto.randomUUID();
    await insertSession(db, {
      id: sessionId,
      server: "pbx1",
      connectedAtMs: events[0].receivedAtMs - 1000,
      disconnectedAtMs: null,
    });
    await insertMessages(db, "pbx1", sessionId, events.slice(0, 10));
    // An insert that has taken ids but not committed yet looks like a hole.
    await db.execute(
      sql`select nextval(pg_get_serial_sequence('ami_events', 'id')) from generate_series(1, 3)`,
    );
    await insertMessages(db, "pbx1", sessionId, events.slice(10));
    const held = await runProjectionsOnce({ db });
    assert.equal(held.lastEventId, 10n);
    const aged = await runProjectionsOnce({ db }, { holeWaitMs: 0 });
    assert.equal(aged.lastEventId, BigInt(events.length + 3));
    assert.equal(await countCalls(db), 3);
  });
});

Deno.test("the continuous projector projects new events until stopped", async () => {
  await withStore("proj_continuous", async ({ db }) => {
    const projector = startProjector({ db }, { intervalMs: 10 });
    try {
      await loadFixtureEvents(db, "sip-calls");
      const deadline = Date.now() + 10_000;
      while (projector.stats().callsProjected < 3 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await projector.stop();
    }
    const stats = projector.stats();
    assert.equal(stats.lastError, null);
    assert.equal(await countCalls(db), 3);
    assert.ok(stats.eventsProjected >= 65);
  });
});

Deno.test("stopping the projector during a long catch-up ends it after the current batch", async () => {
  await withStore("proj_stop", async ({ db }) => {
    const { messages } = await loadFixtureEvents(db, "sip-calls");
    const projector = startProjector({ db }, { batchSize: 5, intervalMs: 10 });
    await projector.stop();
    const [stopped] = await selectRows<{ id: number }>(
      db,
      sql`select last_event_id::int as id from projection_checkpoints`,
    );
    assert.ok(stopped.id < messages.length, `stopped at ${stopped.id} of ${messages.length}`);
    const rest = await runProjectionsOnce({ db }, { batchSize: 5 });
    assert.equal(rest.lastEventId, BigInt(messages.length));
    assert.equal(await countCalls(db), 3);
  });
});
