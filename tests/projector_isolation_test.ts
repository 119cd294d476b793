/**
 * No single event stops the projector: a real stream repeats events (a PBX restart, the
 * on-connect QueueStatus, a fixture replayed on one connection), and an event whose
 * projection fails for good is isolated, recorded with the PostgreSQL error, counted,
 * and skipped, while the checkpoint goes on to the head of the log.
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { runProjectionsOnce } from "../daemon/projections/projector.ts";
import { selectRows } from "../queries/db.ts";
import { fixtureEvents, insertMessages, insertSession, openTestStore } from "./load_events.ts";

Deno.test("a queue call replayed twice on one connection projects one queue stay, as played once", async () => {
  const once = await openTestStore("iso_once");
  const twice = await openTestStore("iso_twice");
  try {
    const events = fixtureEvents("queue-call");
    // The same bytes again on the same connection: new seq numbers, same headers.
    const lastSeq = Math.max(...events.map((e) => e.message.seq));
    const replay = events.map((e) => ({
      message: { ...e.message, seq: e.message.seq + lastSeq },
      receivedAtMs: e.receivedAtMs + 60_000,
    }));
    for (const [store, plays] of [[once, [events]], [twice, [events, replay]]] as const) {
      const sessionId = crypto.randomUUID();
      await insertSession(store.db, {
        id: sessionId,
        server: "pbx1",
        connectedAtMs: events[0].receivedAtMs - 1000,
        disconnectedAtMs: null,
      });
      // Projected as the daemon does: the first play, then the replay as it arrives.
      for (const messages of plays) {
        await insertMessages(store.db, "pbx1", sessionId, messages);
        await runProjectionsOnce(store);
      }
    }
    const stays = (db: typeof once.db) =>
      selectRows<Record<string, unknown>>(
        db,
        sql`select call_id, uniqueid, queue, caller, joined_at::text, connected_at::text,
              left_at::text, agent, hold_s, talk_s, outcome from queue_calls order by joined_at`,
      );
    const played = await stays(once.db);
    assert.equal(played.length, 1);
    assert.deepEqual(await stays(twice.db), played);
    const head = (db: typeof once.db) =>
      selectRows<{ behind: number }>(
        db,
        sql`select ((select max(id) from ami_events) - last_event_id)::int as behind
            from projection_checkpoints`,
      );
    assert.deepEqual(await head(twice.db), [{ behind: 0 }]);
  } finally {
    await once.close();
    await twice.close();
  }
});
