/**
 * The session-gap rule (`queries/session_gaps.ts`), read from real `ami_sessions` and
 * `ami_events` rows: the projector's `calls.complete` and the `calls-during-gaps` query
 * both read gaps through it.
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { type CallDuringGapRow, callsDuringGaps } from "../queries/calls_during_gaps.ts";
import { selectRows, type SqlExecutor } from "../queries/db.ts";
import { localTime, rangeBounds, type RangeParams } from "../queries/query.ts";
import { sessionGapsQuery } from "../queries/session_gaps.ts";
import { seededRandom } from "./fixtures.ts";
import {
  eventRecord,
  insertEventRecords,
  insertSession,
  openPgliteTestStore,
  openTestStore,
} from "./load_events.ts";

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

/**
 * `calls-during-gaps` as it was first written (every call started before a gap's end is
 * read for each gap): the reference its index-served form must equal, row for row.
 */
async function callsDuringGapsReference(
  db: SqlExecutor,
  params: RangeParams,
): Promise<CallDuringGapRow[]> {
  const { tz, from, to } = rangeBounds(params);
  const server = params.server === undefined ? sql`true` : sql`s.server = ${params.server}`;
  return await selectRows<CallDuringGapRow>(
    db,
    sql`with gaps as (${sessionGapsQuery(server)})
        select g.server, ${localTime(sql`g.gap_from`, tz)} as gap_from,
          ${localTime(sql`g.gap_until`, tz)} as gap_until, g.disconnect_reason, c.call_id,
          ${localTime(sql`c.started_at`, tz)} as started_at, ${
      localTime(sql`c.ended_at`, tz)
    } as ended_at,
          c.src, c.dst, c.complete
        from gaps g join calls c on c.server = g.server
          and c.started_at < coalesce(g.gap_until, 'infinity')
          and coalesce(c.ended_at, g.gap_from) >= g.gap_from
          and (c.ended_at is not null or not exists (
            select 1 from gaps g2 where g2.server = g.server and g2.gap_from >= c.started_at
              and g2.gap_from < g.gap_from))
        where g.gap_from >= ${from} and g.gap_from < ${to}
        order by g.gap_from, c.started_at, c.call_id, g.server, g.gap_until, g.disconnect_reason`,
  );
}

for (const kind of ["postgres", "pglite"] as const) {
  Deno.test(`calls-during-gaps equals its reference on random gaps and calls (${kind})`, async () => {
    const store = kind === "postgres"
      ? await openTestStore("calls_during_gaps")
      : await openPgliteTestStore();
    try {
      const db = store.db;
      const random = seededRandom(kind === "postgres" ? 7 : 8);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)];
      // Times on a minute grid, so calls often start or end exactly on a gap's edge.
      const minute = (m: number) => T0 + m * 60_000;
      const edges: number[] = [];
      let n = 0;
      for (const server of ["pbx1", "pbx2"]) {
        let t = Math.floor(random() * 30);
        let prevEnd: number | undefined;
        for (let i = 0; i < 14; i++) {
          const id = `018f0000-0000-7000-8000-${String(++n).padStart(12, "0")}`;
          const length = 20 + Math.floor(random() * 200);
          const shape = random();
          if (shape < 0.15) {
            // Crashed: no end recorded, ended at its last event.
            await insertSession(db, {
              id,
              server,
              connectedAtMs: minute(t),
              disconnectedAtMs: null,
            });
            await insertEventRecords(db, [
              eventRecord(server, id, {
                kind: "event",
                seq: 1,
                headers: [["Event", "FullyBooted"]],
                receivedAt: minute(t + length),
              }, minute(t + length)),
            ]);
          } else if (shape < 0.2) {
            // Crashed before any event: ended at its start.
            await insertSession(db, {
              id,
              server,
              connectedAtMs: minute(t),
              disconnectedAtMs: null,
            });
          } else if (shape < 0.3 && prevEnd !== undefined) {
            // Recorded as ending when the previous one did (a clock stepped back): two gaps
            // begin at the same time.
            await insertSession(db, {
              id,
              server,
              connectedAtMs: minute(t),
              disconnectedAtMs: minute(prevEnd),
            });
          } else {
            await insertSession(db, {
              id,
              server,
              connectedAtMs: minute(t),
              disconnectedAtMs: minute(t + length),
            });
          }
          prevEnd = t + length;
          edges.push(t, t + length);
          // The next session: after a gap, or overlapping this one (no gap).
          t += length + (random() < 0.15 ? -5 : Math.floor(random() * 40) + 1);
        }
      }
      const last = Math.max(...edges);
      const rows = [];
      for (let i = 0; i < 400; i++) {
        const start = random() < 0.3 ? pick(edges) + pick([-1, 0, 1]) : Math.floor(random() * last);
        const shape = random();
        const end = shape < 0.12
          ? null // never ended
          : shape < 0.17
          ? start - 1 - Math.floor(random() * 10) // ends before it starts (bad clocks)
          : shape < 0.4
          ? pick(edges) + pick([-1, 0, 1]) // on a gap's edge
          : start + Math.floor(random() * 120);
        rows.push(
          sql`(${pick(["pbx1", "pbx2"])}, ${`C${i}`}, ${
            new Date(minute(start)).toISOString()
          }::timestamptz,
          ${end === null ? null : new Date(minute(end)).toISOString()}::timestamptz,
          ${`${i}`}, ${"600"}, 1, ${end !== null && random() < 0.8})`,
        );
      }
      await db.execute(sql`insert into calls (server, call_id, started_at, ended_at, src, dst,
          legs, complete) values ${sql.join(rows, sql`, `)}`);

      const iso = (m: number) => new Date(minute(m)).toISOString();
      const cases: RangeParams[] = [
        {},
        { server: "pbx1" },
        { server: "pbx2", tz: "Asia/Tokyo" },
        { from: iso(last / 4), to: iso(last / 2) },
        { from: iso(last / 3), tz: "America/New_York" },
        { to: iso(last / 3), server: "pbx1" },
      ];
      let compared = 0;
      let unended = 0;
      for (const params of cases) {
        const expected = await callsDuringGapsReference(db, params);
        assert.deepEqual(await callsDuringGaps(db, params), expected, JSON.stringify(params));
        compared += expected.length;
        unended += expected.filter((r) => r.ended_at === null).length;
      }
      // Not vacuous: many calls × gaps, calls that never ended among them.
      assert.ok(compared > 200, `${compared} rows compared`);
      assert.ok(unended > 20, `${unended} rows of calls that never ended`);
    } finally {
      await store.close();
    }
  });
}

for (const kind of ["postgres", "pglite"] as const) {
  Deno.test(`calls-during-gaps keeps servers apart when their gaps coincide, hashes colliding too (${kind})`, async () => {
    const store = kind === "postgres"
      ? await openTestStore("calls_during_gaps_servers")
      : await openPgliteTestStore();
    try {
      const db = store.db;
      // The index finds a server's calls by `hashtext(server)`: the first two names share a
      // hash, so only the exact comparison of the server keeps their calls apart.
      const servers = ["pbx-6469", "pbx-216197", "pbx1", "pbx2", "pbx3"];
      const [{ same }] = await selectRows<{ same: boolean }>(
        db,
        sql`select hashtext(${servers[0]}) = hashtext(${servers[1]}) as same`,
      );
      assert.equal(same, true, "the first two servers' hashes collide");
      const random = seededRandom(kind === "postgres" ? 11 : 12);
      const minute = (m: number) => T0 + m * 60_000;
      // Every server's sessions end at 100, 200 and 300 and the next begins 5 minutes later
      // (a recorder restart): the gaps of all servers fall at the same times.
      let n = 0;
      for (const server of servers) {
        for (const [from, to] of [[0, 100], [105, 200], [205, 300], [305, null]]) {
          await insertSession(db, {
            id: `018f0000-0000-7000-8000-${String(++n).padStart(12, "0")}`,
            server,
            connectedAtMs: minute(from!),
            disconnectedAtMs: to === null ? null : minute(to),
          });
        }
      }
      const rows = [];
      for (let i = 0; i < 300; i++) {
        const server = servers[i % servers.length];
        const start = random() < 0.5
          ? [100, 200, 300][Math.floor(random() * 3)] - Math.floor(random() * 8)
          : Math.floor(random() * 320);
        const end = random() < 0.1 ? null : start + Math.floor(random() * 12);
        rows.push(
          sql`(${server}, ${`${server}/C${i}`}, ${
            new Date(minute(start)).toISOString()
          }::timestamptz,
          ${end === null ? null : new Date(minute(end)).toISOString()}::timestamptz,
          ${`${i}`}, ${"600"}, 1, ${end !== null})`,
        );
      }
      await db.execute(sql`insert into calls (server, call_id, started_at, ended_at, src, dst,
          legs, complete) values ${sql.join(rows, sql`, `)}`);

      let compared = 0;
      for (
        const params of [
          {},
          { server: servers[0] },
          { server: servers[1], tz: "Europe/Paris" },
          { from: new Date(minute(150)).toISOString() },
        ] as RangeParams[]
      ) {
        const expected = await callsDuringGaps(db, params);
        assert.deepEqual(
          expected,
          await callsDuringGapsReference(db, params),
          JSON.stringify(params),
        );
        for (const row of expected) {
          assert.ok(row.call_id.startsWith(`${row.server}/`), row.call_id);
        }
        compared += expected.length;
      }
      const all = await callsDuringGaps(db);
      for (const server of servers) {
        assert.ok(
          all.filter((r) => r.server === server).length > 5,
          `${server}: calls in its gaps`,
        );
      }
      assert.ok(compared > 100, `${compared} rows compared`);
    } finally {
      await store.close();
    }
  });
}
