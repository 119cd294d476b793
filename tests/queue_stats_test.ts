/**
 * The Queues page's figures (`queue-stats`, `agent-pauses`) against answers computed by
 * hand: the recorded queue call (one caller, answered at once, 4 s of talk), then
 * callers added with known waits, covering each definition's edge (short abandon,
 * service-level threshold, unanswered), and pauses with reasons clipped to a range.
 */
import assert from "node:assert/strict";
import { runProjectionsOnce } from "../daemon/projections/projector.ts";
import { insertRecords } from "../daemon/projections/write.ts";
import { agentPauses, queueStats } from "../queries/mod.ts";
import { queueCalls } from "../schema/mod.ts";
import {
  insertEventRecords,
  insertSession,
  loadFixtureEvents,
  openTestStore,
} from "./load_events.ts";

Deno.test("queue-stats on the recorded queue call: one offered, answered at once, AHT 4 s", async () => {
  const store = await openTestStore("queue-stats");
  try {
    await loadFixtureEvents(store.db, "queue-call");
    await runProjectionsOnce(store);
    const rows = await queueStats(store.db, { interval: "day" });
    assert.equal(rows.length, 1);
    const { interval_start: _, ...figures } = rows[0];
    assert.deepEqual(figures, {
      queue: "support",
      offered: 1,
      answered: 1,
      abandoned: 0,
      short_abandoned: 0,
      unanswered: 0,
      service_level_pct: 100,
      asa_s: 0,
      aht_s: 4,
      abandon_rate_pct: 0,
    });
  } finally {
    await store.close();
  }
});

Deno.test("queue-stats definitions: short abandons excluded, SL at the threshold, ASA, AHT, per interval", async () => {
  const store = await openTestStore("queue-stats");
  try {
    const row = (n: number, at: string, outcome: string, hold: number, talk: number | null) => ({
      server: "pbx1",
      uniqueid: `u${n}`,
      call_id: `c${n}`,
      queue: "sales",
      joined_at: at,
      outcome,
      hold_s: hold,
      talk_s: talk,
    });
    await insertRecords(store.db, queueCalls, [
      // 08:00-09:00 UTC: answered after 10 s (talk 60), after 20 s (talk 120: still within
      // SL 20), after 30 s (talk 30: outside), abandoned after 40 s, short abandon after 3 s,
      // one unanswered (timeout after 60 s).
      row(1, "2026-03-29T08:05:00Z", "answered", 10, 60),
      row(2, "2026-03-29T08:10:00Z", "answered", 20, 120),
      row(3, "2026-03-29T08:20:00Z", "answered", 30, 30),
      row(4, "2026-03-29T08:30:00Z", "abandoned", 40, null),
      row(5, "2026-03-29T08:40:00Z", "abandoned", 3, null),
      row(6, "2026-03-29T08:50:00Z", "timeout", 60, null),
      // 09:00-10:00 UTC: one abandoned after exactly the short threshold (5 s: counts).
      row(7, "2026-03-29T09:15:00Z", "abandoned", 5, null),
    ], { columns: ["server", "uniqueid", "queue", "joined_at"], action: "nothing" });

    const hours = await queueStats(store.db, { interval: "hour", tz: "UTC", threshold: 20 });
    assert.deepEqual(
      hours.map((
        r,
      ) => [r.interval_start, r.offered, r.answered, r.abandoned, r.short_abandoned, r.unanswered]),
      [
        ["2026-03-29 08:00", 5, 3, 1, 1, 1],
        ["2026-03-29 09:00", 1, 0, 1, 0, 0],
      ],
    );
    const h8 = hours[0];
    assert.equal(h8.service_level_pct, 40); // 2 answered within 20 s / 5 offered
    assert.equal(h8.asa_s, 20); // (10 + 20 + 30) / 3
    assert.equal(h8.aht_s, 70); // (60 + 120 + 30) / 3
    assert.equal(h8.abandon_rate_pct, 20); // 1 / 5
    assert.equal(hours[1].abandon_rate_pct, 100);
    assert.equal(hours[1].asa_s, null);

    // 15-minute bins and a day in Europe/Berlin, the day clocks went forward (2026-03-29):
    // 08:05 UTC is 10:05 local (CEST); the day is one row.
    const quarter = await queueStats(store.db, { interval: "15m", tz: "UTC" });
    assert.deepEqual(quarter.map((r) => r.interval_start), [
      "2026-03-29 08:00",
      "2026-03-29 08:15",
      "2026-03-29 08:30",
      "2026-03-29 08:45",
      "2026-03-29 09:15",
    ]);
    const berlin = await queueStats(store.db, { interval: "hour", tz: "Europe/Berlin" });
    assert.equal(berlin[0].interval_start, "2026-03-29 10:00");
    const day = await queueStats(store.db, {
      interval: "day",
      tz: "Europe/Berlin",
      shortAbandon: 0,
    });
    assert.equal(day.length, 1);
    assert.equal(day[0].interval_start, "2026-03-29 00:00");
    assert.equal(day[0].offered, 7); // no short abandons at threshold 0
    assert.equal(day[0].abandoned, 3);

    await assert.rejects(
      () => queueStats(store.db, { interval: "week" as "day" }),
      /--interval: "week" is not one of 15m, hour, day/,
    );
  } finally {
    await store.close();
  }
});

Deno.test("agent-pauses: time paused per agent and reason, open pauses clipped to the range", async () => {
  const store = await openTestStore("agent-pauses");
  try {
    const session = crypto.randomUUID();
    await insertSession(store.db, {
      id: session,
      server: "pbx1",
      connectedAtMs: Date.parse("2026-11-26T07:00:00Z"),
      disconnectedAtMs: null,
    });
    let seq = 0;
    const pause = (at: string, member: string, paused: boolean, reason = "") => ({
      server: "pbx1",
      session_id: session,
      seq: ++seq,
      received_at: at,
      event: "QueueMemberPause",
      uniqueid: null,
      linkedid: null,
      channel: null,
      action_id: null,
      fields: {
        Event: "QueueMemberPause",
        Queue: "support",
        MemberName: member,
        Interface: member,
        Paused: paused ? "1" : "0",
        PausedReason: reason,
      },
    });
    await insertEventRecords(store.db, [
      pause("2026-11-26T08:00:00Z", "SIP/6001", true, "lunch"), // 30 min lunch
      pause("2026-11-26T08:30:00Z", "SIP/6001", false),
      pause("2026-11-26T09:00:00Z", "SIP/6001", true, "break"), // 10 min, then changes reason
      pause("2026-11-26T09:10:00Z", "SIP/6001", true, "lunch"), // 5 min lunch
      pause("2026-11-26T09:15:00Z", "SIP/6001", false),
      pause("2026-11-26T09:50:00Z", "SIP/6002", true), // no reason, still paused at 10:00
    ]);
    const rows = await agentPauses(store.db, {
      from: "2026-11-26T08:10:00Z",
      to: "2026-11-26T10:00:00Z",
    });
    assert.deepEqual(rows, [
      { agent: "SIP/6001", queue: "support", reason: "break", pauses: 1, paused_s: 600 },
      // 08:10-08:30 (clipped) + 09:10-09:15
      { agent: "SIP/6001", queue: "support", reason: "lunch", pauses: 2, paused_s: 1500 },
      { agent: "SIP/6002", queue: "support", reason: "(none)", pauses: 1, paused_s: 600 },
    ]);
  } finally {
    await store.close();
  }
});
