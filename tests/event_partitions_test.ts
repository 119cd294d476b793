import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { BatchWriter } from "../daemon/batch_writer.ts";
import {
  createEventPartitions,
  eventPartitions,
  keepPartitionsAhead,
  PARTITION_DAYS_AHEAD,
  utcDay,
} from "../daemon/event_partitions.ts";
import { uuidv7 } from "../daemon/ids.ts";
import { decodeRecord, encodeRecord, eventRecord } from "../daemon/ingest_record.ts";
import { MIGRATIONS_FOLDER, openStore, type Store } from "../daemon/store.ts";
import { selectRows } from "../queries/db.ts";
import { createTestDatabase } from "./pg.ts";

/** Runs `fn` on a fresh PostgreSQL store, then on a fresh PGlite store. */
async function onBothStores(prefix: string, fn: (store: Store) => Promise<void>): Promise<void> {
  const database = await createTestDatabase(prefix);
  const dataDir = await Deno.makeTempDir();
  try {
    for (const options of [{ url: database.url, dataDir }, { dataDir }]) {
      const store = await openStore(options);
      try {
        await fn(store);
      } finally {
        await store.close();
      }
    }
  } finally {
    await database.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
}

function event(sessionId: string, seq: number, receivedAt: number, name = "Newchannel") {
  return eventRecord("pbx1", sessionId, {
    kind: "event",
    headers: [["Event", name], ["Uniqueid", `1700000000.${seq}`]],
    seq,
    receivedAt,
  });
}

interface KeyRow {
  id: string;
  session_id: string;
  seq: number;
  received_at: string;
}

async function keys(store: Store): Promise<KeyRow[]> {
  return await selectRows<KeyRow>(
    store.db,
    sql`select id::text, session_id::text, seq::int,
          to_char(received_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as received_at
        from ami_events order by id`,
  );
}

Deno.test("an event replayed from the spool keeps its received_at and lands on the same key, stored once", async () => {
  await onBothStores("partitions_replay", async (store) => {
    const sessionId = uuidv7();
    // The last millisecond of a day: a replay stamped with a later clock reading would
    // fall into the next day's partition and escape the unique key.
    const receivedAt = Date.UTC(2026, 2, 14, 23, 59, 59, 999);
    const first = event(sessionId, 1, receivedAt);
    const writer = new BatchWriter(store);
    await writer.write([first]);

    const replayed = decodeRecord(encodeRecord(first));
    assert.equal(replayed.type, "event");
    assert.equal(replayed.type === "event" && replayed.receivedAt, receivedAt);
    // Replayed long after, together with an event not yet stored.
    const second = event(sessionId, 2, Date.UTC(2026, 2, 15, 0, 0, 0, 1));
    const result = await writer.write([replayed, second]);
    assert.equal(result.rejected.length, 0);

    const rows = await keys(store);
    assert.deepEqual(rows.map((r) => [r.session_id, r.seq, r.received_at]), [
      [sessionId, 1, "2026-03-14T23:59:59.999Z"],
      [sessionId, 2, "2026-03-15T00:00:00.001Z"],
    ]);
    const days = (await eventPartitions(store.db)).map((p) => p.day);
    assert.ok(days.includes("2026-03-14") && days.includes("2026-03-15"), days.join());
  });
});

Deno.test("an event whose day has no partition gets one created and is stored; there is no default partition", async () => {
  await onBothStores("partitions_on_demand", async (store) => {
    const sessionId = uuidv7();
    const before = (await eventPartitions(store.db)).map((p) => p.day);
    const jumped = Date.UTC(2031, 0, 1, 12); // a clock that jumped years ahead
    assert.ok(!before.includes(utcDay(jumped)));
    const result = await new BatchWriter(store).write([
      event(sessionId, 1, Date.now()),
      event(sessionId, 2, jumped),
      event(sessionId, 3, jumped + 86_400_000),
    ]);
    assert.equal(result.rejected.length, 0);
    assert.deepEqual((await keys(store)).map((r) => r.seq), [1, 2, 3]);
    const after = (await eventPartitions(store.db)).map((p) => p.day);
    assert.ok(after.includes("2031-01-01") && after.includes("2031-01-02"), after.join());
    // Only the days of the events: no range of empty partitions up to the jump.
    assert.equal(after.filter((d) => !before.includes(d)).length, 2);
    const [{ defaults }] = await selectRows<{ defaults: number }>(
      store.db,
      sql`select count(*)::int as defaults from pg_partitioned_table
          where partrelid = 'ami_events'::regclass and partdefid <> 0`,
    );
    assert.equal(defaults, 0);
  });
});

Deno.test("partitions are kept ahead: today and the next days exist at start", async () => {
  await onBothStores("partitions_ahead", async (store) => {
    const created = Promise.withResolvers<string[]>();
    const keeper = keepPartitionsAhead(store.db, {
      onCreated: created.resolve,
      onError: created.reject,
    });
    try {
      const days = await created.promise;
      const now = Date.now();
      const expected = Array.from(
        { length: PARTITION_DAYS_AHEAD + 1 },
        (_, i) => utcDay(now + i * 86_400_000),
      );
      const existing = (await eventPartitions(store.db)).map((p) => p.day);
      for (const day of expected) assert.ok(existing.includes(day), `${day} in ${existing}`);
      // Today's partition was made by the migration; the keeper made the rest.
      assert.ok(days.length >= PARTITION_DAYS_AHEAD - 1, days.join());
    } finally {
      keeper.stop();
    }
  });
});

Deno.test("partitions created at once from several connections: each day once, none fails", async () => {
  const database = await createTestDatabase("partitions_concurrent");
  try {
    const stores = await Promise.all(
      [1, 2, 3, 4].map(() => openStore({ url: database.url, dataDir: "/nonexistent" })),
    );
    const instants = Array.from({ length: 10 }, (_, i) => Date.UTC(2027, 5, 1 + i, 6));
    const created = await Promise.all(stores.map((s) => createEventPartitions(s.db, instants)));
    assert.equal(created.flat().length, 10);
    assert.deepEqual(created.flat().sort(), instants.map(utcDay));
    await Promise.all(stores.map((s) => s.close()));
  } finally {
    await database.drop();
  }
});

/** The migrations folder as the previous release shipped it: every one before partitioning. */
async function previousReleaseMigrations(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/meta`);
  const journal = JSON.parse(await Deno.readTextFile(`${MIGRATIONS_FOLDER}/meta/_journal.json`));
  journal.entries = journal.entries.slice(
    0,
    journal.entries.findIndex((e: { tag: string }) => e.tag.endsWith("_partition_ami_events")),
  );
  assert.ok(journal.entries.length >= 4);
  await Deno.writeTextFile(`${dir}/meta/_journal.json`, JSON.stringify(journal));
  for (const { tag } of journal.entries) {
    await Deno.copyFile(`${MIGRATIONS_FOLDER}/${tag}.sql`, `${dir}/${tag}.sql`);
  }
  return dir;
}

/** Every column of ami_events, as text where the drivers' types differ. */
const ALL_COLUMNS = `id::text, server, session_id::text, seq::text, received_at::text, event,
  uniqueid, linkedid, channel, action_id, fields::text, raw_b64, escaped, inserted_at::text`;

Deno.test("a database of the previous release is migrated to the partitioned log with every row and id kept", async () => {
  const database = await createTestDatabase("partitions_upgrade");
  const folder = await previousReleaseMigrations();
  const client = postgres(database.url, { max: 1, onnotice: () => {} });
  try {
    await migrate(drizzle(client), { migrationsFolder: folder });
    const [{ partitioned }] = await client`
      select relkind = 'p' as partitioned from pg_class where relname = 'ami_events'`;
    assert.equal(partitioned, false);
    // 3,000 events over five days (two of them with no events), a NUL-escaped row, a
    // raw row, and ids with a gap left by a rolled-back insert.
    await client`
      insert into ami_events (server, session_id, seq, received_at, event, uniqueid, linkedid,
        channel, action_id, fields, raw_b64, escaped)
      select 'pbx' || (n % 2), ('0192f0a0-0000-7000-8000-00000000000' || (n % 3))::uuid, n,
        timestamptz '2026-06-01 22:00:00+00' + (n % 5 * 2) * interval '1 day' + n * interval '1 s',
        case when n % 7 = 0 then 'Hangup' else 'Newchannel' end,
        '1780000000.' || n, case when n % 4 = 0 then null else '1780000000.' || (n / 4) end,
        'PJSIP/100-' || n, case when n % 10 = 0 then 'a' || n end,
        jsonb_build_object('Event', 'Newchannel', 'Uniqueid', '1780000000.' || n, 'Rep', jsonb_build_array('a', 'b')),
        case when n = 5 then 'AAEC' end, n = 6
      from generate_series(1, 3000) as n`;
    await client.begin(async (tx) => {
      await tx`insert into ami_events (server, session_id, seq, received_at, event, fields)
               values ('x', gen_random_uuid(), 1, now(), 'E', '{}')`;
      throw new Error("rolled back");
    }).catch(() => {});
    const before = await client.unsafe(`select ${ALL_COLUMNS} from ami_events order by id`);
    assert.equal(before.length, 3000);

    const store = await openStore({ url: database.url, dataDir: "/nonexistent" });
    try {
      const after = await selectRows<Record<string, unknown>>(
        store.db,
        sql.raw(`select ${ALL_COLUMNS} from ami_events order by id`),
      );
      assert.deepEqual(after, before.map((r) => ({ ...r })));
      const [{ kind }] = await selectRows<{ kind: string }>(
        store.db,
        sql`select relkind::text as kind from pg_class where relname = 'ami_events'`,
      );
      assert.equal(kind, "p");
      const days = (await eventPartitions(store.db)).map((p) => p.day);
      for (const day of ["2026-06-01", "2026-06-03", "2026-06-05", "2026-06-07", "2026-06-09"]) {
        assert.ok(days.includes(day), `${day} in ${days}`);
      }
      assert.ok(!days.includes("2026-06-02"), "no partition for a day without events");
      // The sequence continues after the old one (3000 rows, one id burnt by the rollback).
      await new BatchWriter(store).write([event(uuidv7(), 1, Date.now())]);
      const [{ id }] = await selectRows<{ id: string }>(
        store.db,
        sql`select max(id)::text as id from ami_events`,
      );
      assert.equal(id, "3002");
    } finally {
      await store.close();
    }
  } finally {
    await client.end();
    await Deno.remove(folder, { recursive: true });
    await database.drop();
  }
});
