/**
 * The session-gap rule (`queries/session_gaps.ts`), read from real `ami_sessions` and
 * `ami_events` rows: the projector's `calls.complete` and the `calls-during-gaps` query
 * both read gaps through it.
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { selectRows } from "../queries/db.ts";
import { sessionGapsQuery } from "../queries/session_gaps.ts";
import { eventRecord, insertEventRecords, insertSession, openTestStore } from "./load_events.ts";

const T0 = Date.UTC(2026, 10, 2);
const at = (s: number) => T0 + s * 1000;
const iso = (s: number) => new Date(at(s)).toISOString();

Deno.test("session gaps run from a disconnect to the next connect, a crash ends at the last event, open after the last", async () => {
  const store = await openTestStore("session_gaps");
  try {
    const db = store.db;
    const session = (id: string, server: string, from: number, to: number | null) =>
      insertSession(db, {
        id,
        server,
        connectedAtMs: at(from),
        disconnectedAtMs: to === null ? null : at(to),
      });
    const ids = [1, 2, 3, 4, 5, 6].map((n) => `018f0000-0000-7000-8000-00000000000${n}`);
    await session(ids[0], "pbx1", 0, 100);
    // Crashed: no end recorded; its last event was received at 300.
    await session(ids[1], "pbx1", 150, null);
    await insertEventRecords(db, [
      eventRecord("pbx1", ids[1], {
        kind: "event",
        seq: 1,
        headers: [["Event", "FullyBooted"]],
        receivedAt: at(300),
      }, at(300)),
    ]);
    await session(ids[2], "pbx1", 400, 500);
    // Still connected, alone: no gap.
    await session(ids[3], "pbx2", 0, null);
    // Overlapping sessions (a second instance took over early): no negative gap.
    await session(ids[4], "pbx3", 0, 200);
    await session(ids[5], "pbx3", 100, null);

    const gaps = await selectRows<{ server: string; gap_from: string; gap_until: string | null }>(
      db,
      sql`select server, to_char(gap_from at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as gap_from,
            to_char(gap_until at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as gap_until
          from (${sessionGapsQuery(sql`true`)}) g order by server, gap_from`,
    );
    assert.deepEqual(gaps, [
      { server: "pbx1", gap_from: iso(100), gap_until: iso(150) },
      { server: "pbx1", gap_from: iso(300), gap_until: iso(400) },
      { server: "pbx1", gap_from: iso(500), gap_until: null },
    ]);
  } finally {
    await store.close();
  }
});
