/**
 * No single event stops the projector: a real stream repeats events (a PBX restart, the
 * on-connect QueueStatus, a fixture replayed on one connection), and an event whose
 * projection fails for good is isolated, recorded with the PostgreSQL error, counted,
 * and skipped, while the checkpoint goes on to the head of the log.
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import {
  isPermanentProjectionError,
  runProjectionsOnce,
  startProjector,
} from "../daemon/projections/projector.ts";
import { selectRows } from "../queries/db.ts";
import {
  fixtureEvents,
  insertMessages,
  insertSession,
  loadFixtureEvents,
  openTestStore,
  type TestStore,
} from "./load_events.ts";

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
    // Handled, not set aside.
    assert.deepEqual(await selectRows(twice.db, sql`select * from projection_errors`), []);
  } finally {
    await once.close();
    await twice.close();
  }
});

/**
 * Makes PostgreSQL refuse, for good, every queue stay of queue `support` (the queue of
 * the recorded queue call) with a data exception: a stand-in for any row the database
 * will never take (a value out of range, a string it cannot store).
 */
async function refuseQueueStays(store: TestStore): Promise<void> {
  await store.db.execute(sql.raw(`
    create function refuse_queue_stay() returns trigger language plpgsql as $$
    begin
      raise exception 'queue stays of % are refused' , new.queue using errcode = '22023';
    end $$;
    create trigger refuse_queue_stay before insert on queue_calls
      for each row when (new.queue = 'support') execute function refuse_queue_stay();`));
}

Deno.test("an event whose projection PostgreSQL refuses for good is set aside with its error, and the rest is projected", async () => {
  const store = await openTestStore("iso_refused");
  try {
    await refuseQueueStays(store);
    await loadFixtureEvents(store.db, "queue-call");
    await loadFixtureEvents(store.db, "sip-calls");
    const progress = await runProjectionsOnce(store, { batchSize: 64 });
    assert.equal(progress.isolated, 1);
    const errors = await selectRows<Record<string, unknown>>(
      store.db,
      sql`select e.event, e.server, e.code, e.message, a.event as stored_event
          from projection_errors e join ami_events a on a.id = e.event_id`,
    );
    assert.deepEqual(errors, [{
      event: "QueueCallerJoin",
      server: "pbx1",
      code: "22023",
      message: "queue stays of support are refused",
      stored_event: "QueueCallerJoin",
    }]);
    const [state] = await selectRows<{ behind: number; calls: number; queue: string | null }>(
      store.db,
      sql`select ((select max(id) from ami_events) - last_event_id)::int as behind,
            (select count(*)::int from calls) as calls,
            (select queue from calls where call_id = '1795663698.47') as queue
          from projection_checkpoints`,
    );
    // The queue call is still there (without its queue); the SIP calls after it too.
    assert.equal(state.behind, 0);
    assert.ok(state.calls > 1, `calls: ${state.calls}`);
    assert.equal(state.queue, null);
    // A rebuild tries set-aside events again.
    await store.db.execute(sql`drop trigger refuse_queue_stay on queue_calls`);
    const { rebuildProjections } = await import("../daemon/projections/projector.ts");
    await rebuildProjections(store);
    assert.deepEqual(await selectRows(store.db, sql`select * from projection_errors`), []);
    const [rebuilt] = await selectRows<{ queue: string | null }>(
      store.db,
      sql`select queue from calls where call_id = '1795663698.47'`,
    );
    assert.equal(rebuilt.queue, "support");
  } finally {
    await store.close();
  }
});

Deno.test("the continuous projector counts a set-aside event, keeps going and reaches the head", async () => {
  const store = await openTestStore("iso_continuous");
  const projector = startProjector(store, { intervalMs: 10 });
  try {
    await refuseQueueStays(store);
    await loadFixtureEvents(store.db, "queue-call");
    await loadFixtureEvents(store.db, "sip-calls");
    const [{ head }] = await selectRows<{ head: string }>(
      store.db,
      sql`select max(id)::text as head from ami_events`,
    );
    await waitFor(() => projector.stats().lastEventId === BigInt(head));
    await waitFor(() => projector.stats().headEventId === BigInt(head));
    const stats = projector.stats();
    assert.equal(stats.eventsIsolated, 1);
    assert.equal(stats.lastIsolated?.event, "QueueCallerJoin");
    assert.equal(stats.lastIsolated?.code, "22023");
    assert.equal(stats.eventsBehind, 0);
    assert.equal(stats.oldestPendingAt, null);
    assert.equal(stats.lastError, null);
    assert.equal(stats.stuck, false);
  } finally {
    await projector.stop();
    await store.close();
  }
});

Deno.test("a projector whose runs keep failing is stuck, with its error, until a run succeeds", async () => {
  const store = await openTestStore("iso_stuck");
  const projector = startProjector(store, { intervalMs: 10, stuckAfterMs: 300 });
  try {
    await loadFixtureEvents(store.db, "queue-call");
    await waitFor(() => projector.stats().lastEventId !== null);
    // An error no retry cures and no event causes: nothing may be set aside for it.
    await store.db.execute(sql`alter table projection_checkpoints rename to checkpoints_away`);
    await loadFixtureEvents(store.db, "sip-calls");
    await waitFor(() => projector.stats().stuck);
    const stuck = projector.stats();
    assert.match(stuck.lastError ?? "", /^42P01 /); // undefined_table
    assert.notEqual(stuck.failingSince, null);
    assert.ok(stuck.failedRuns > 0);
    assert.equal(stuck.eventsIsolated, 0);
    await store.db.execute(sql`alter table checkpoints_away rename to projection_checkpoints`);
    await waitFor(() => !projector.stats().stuck && projector.stats().eventsBehind === 0);
    const recovered = projector.stats();
    assert.equal(recovered.lastError, null);
    assert.equal(recovered.failingSince, null);
    assert.deepEqual(await selectRows(store.db, sql`select * from projection_errors`), []);
  } finally {
    await projector.stop();
    await store.close();
  }
});

Deno.test("only errors the same rows would meet again set an event aside", () => {
  const pg = (code: string) => Object.assign(new Error("x"), { code });
  const wrapped = (code: string) => new Error("Failed query: ...", { cause: pg(code) });
  for (const code of ["21000", "22003", "22P02", "23505", "54000"]) {
    assert.equal(isPermanentProjectionError(wrapped(code)), true, code);
  }
  for (
    const code of ["08006", "57P01", "53300", "40001", "42P01", "42501", "CONNECTION_CLOSED"]
  ) {
    assert.equal(isPermanentProjectionError(wrapped(code)), false, code);
  }
  assert.equal(isPermanentProjectionError(new Error("write CONNECT_TIMEOUT")), false);
  assert.equal(isPermanentProjectionError(new TypeError("x is undefined")), true);
});

/** Polls `condition` (cheap, in memory) until it holds. */
async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}
