import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { sql } from "drizzle-orm";
import { BatchWriter } from "../daemon/batch_writer.ts";
import {
  ArchiveChecksumError,
  archiveDay,
  archiveFileName,
  ArchiveFormatError,
  dropDay,
  PartitionChangedError,
  restoreArchive,
} from "../daemon/event_archive.ts";
import { eventPartitions } from "../daemon/event_partitions.ts";
import { uuidv7 } from "../daemon/ids.ts";
import { eventRecord } from "../daemon/ingest_record.ts";
import { rebuildProjections, runProjectionsOnce } from "../daemon/projections/projector.ts";
import { horizonDay, runRetention } from "../daemon/retention.ts";
import { main as retentionMain } from "../daemon/retention_cli.ts";
import { openStore, type Store } from "../daemon/store.ts";
import { selectRows } from "../queries/db.ts";
import { fixtureEvents, insertMessages, insertSession, type TimedMessage } from "./load_events.ts";
import { createTestDatabase } from "./pg.ts";

const DAY_MS = 86_400_000;

async function withStore(
  kind: "postgres" | "pglite",
  fn: (store: Store, dir: string) => Promise<void>,
): Promise<void> {
  const database = kind === "postgres" ? await createTestDatabase("retention") : undefined;
  const dir = await Deno.makeTempDir({ prefix: "dami-retention-" });
  const store = await openStore({ url: database?.url, dataDir: dir });
  try {
    await fn(store, dir);
  } finally {
    await store.close();
    await database?.drop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Stores `perDay` events on each of `days` (UTC, `YYYY-MM-DD`) through the batch writer. */
async function storeEvents(store: Store, days: string[], perDay: number): Promise<void> {
  const sessionId = uuidv7();
  let seq = 0;
  const records = days.flatMap((day) =>
    Array.from({ length: perDay }, (_, i) =>
      eventRecord("pbx1", sessionId, {
        kind: "event",
        headers: [
          ["Event", i % 2 ? "Hangup" : "Newchannel"],
          ["Uniqueid", `1780000000.${++seq}`],
          ["Variable", "a=1"],
          ["Variable", "b=\t2"],
        ],
        seq,
        receivedAt: Date.parse(`${day}T00:00:00Z`) + i * 60_000,
      }))
  );
  const result = await new BatchWriter(store).write(records);
  assert.equal(result.rejected.length, 0);
}

/** Every column of every event, in id order, as text. */
async function allEvents(store: Store): Promise<Record<string, unknown>[]> {
  return await selectRows(
    store.db,
    sql`select id::text, server, session_id::text, seq::text, received_at::text, event, uniqueid,
          linkedid, channel, action_id, fields::text, raw_b64, escaped, inserted_at::text
        from ami_events order by id`,
  );
}

async function gunzipLines(file: string): Promise<string[]> {
  const text = await new Response(
    (await Deno.open(file)).readable.pipeThrough(new DecompressionStream("gzip")),
  ).text();
  return text.split("\n").filter((l) => l !== "");
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(file)).digest("hex");
}

for (const kind of ["postgres", "pglite"] as const) {
  Deno.test(`${kind}: a day is archived to gzipped JSON lines with its checksum, dropped, and restored exactly once with its ids`, async () => {
    await withStore(kind, async (store, dir) => {
      await storeEvents(store, ["2026-05-01", "2026-05-02"], 20);
      const before = await allEvents(store);
      const archive = await archiveDay(store.db, "2026-05-01", `${dir}/archive`);
      assert.equal(archive.file, `${dir}/archive/${archiveFileName("2026-05-01")}`);
      assert.equal(archive.events, 20);
      assert.equal(archive.existed, false);
      assert.equal(
        await Deno.readTextFile(`${archive.file}.sha256`),
        `${await sha256(archive.file)}  ami_events-2026-05-01.jsonl.gz\n`,
      );
      const lines = (await gunzipLines(archive.file)).map((l) => JSON.parse(l));
      assert.equal(lines.length, 20);
      assert.deepEqual(Object.keys(lines[0]), [
        "id",
        "server",
        "session_id",
        "seq",
        "received_at",
        "event",
        "uniqueid",
        "linkedid",
        "channel",
        "action_id",
        "fields",
        "raw_b64",
        "escaped",
        "inserted_at",
      ]);
      assert.deepEqual(lines[1].fields, {
        Event: "Hangup",
        Uniqueid: "1780000000.2",
        Variable: ["a=1", "b=\t2"],
      });
      assert.equal(lines[0].received_at, "2026-05-01T00:00:00+00:00");

      assert.equal(await dropDay(store.db, "2026-05-01", { archive }), 20);
      assert.deepEqual((await eventPartitions(store.db)).map((p) => p.day).slice(0, 1), [
        "2026-05-02",
      ]);
      const [pruned] = await selectRows<{ day: string; events: number; archive: string }>(
        store.db,
        sql`select day::text, events::int, archive from ami_events_pruned`,
      );
      assert.deepEqual(pruned, { day: "2026-05-01", events: 20, archive: archive.file });
      assert.equal((await allEvents(store)).length, 20);

      const first = await restoreArchive(store.db, archive.file);
      assert.deepEqual(first, {
        file: archive.file,
        events: 20,
        inserted: 20,
        days: ["2026-05-01"],
      });
      const again = await restoreArchive(store.db, archive.file);
      assert.equal(again.inserted, 0);
      assert.deepEqual(await allEvents(store), before);
      const prunedAfter = await selectRows(store.db, sql`select day from ami_events_pruned`);
      assert.equal(prunedAfter.length, 0);
    });
  });
}

Deno.test("a damaged archive is refused before anything is inserted", async () => {
  await withStore("postgres", async (store, dir) => {
    await storeEvents(store, ["2026-05-01"], 10);
    const archive = await archiveDay(store.db, "2026-05-01", dir);
    await dropDay(store.db, "2026-05-01", { archive });
    const bytes = await Deno.readFile(archive.file);
    bytes[bytes.length - 12] ^= 0xff;
    await Deno.writeFile(archive.file, bytes);
    await assert.rejects(restoreArchive(store.db, archive.file), ArchiveChecksumError);
    const plain = `${dir}/by-hand.jsonl`;
    await Deno.writeTextFile(
      plain,
      `{"id": 1, "received_at": "2026-05-01T00:00:00+00:00"}\n{"id": 2, "received_at": \n`,
    );
    await assert.rejects(restoreArchive(store.db, plain), ArchiveFormatError);
    assert.equal((await allEvents(store)).length, 0);
  });
});

Deno.test("retention: a crash between archive and drop neither loses nor duplicates the day", async () => {
  await withStore("postgres", async (store, dir) => {
    await storeEvents(store, ["2026-05-01", "2026-05-02"], 10);
    const archiveDir = `${dir}/archive`;
    // The crash: the archive is complete, the partition was not dropped.
    const first = await archiveDay(store.db, "2026-05-01", archiveDir);
    await Deno.writeTextFile(`${archiveDir}/${archiveFileName("2026-05-03")}.partial`, "torn");
    const now = Date.parse("2026-05-02T12:00:00Z");
    const report = await runRetention(store.db, { events: "1d", archiveDir }, { now });
    assert.deepEqual(report.dropped.map((d) => [d.day, d.events, d.archive?.existed]), [
      ["2026-05-01", 10, true],
    ]);
    assert.equal(report.dropped[0].archive?.sha256, first.sha256);
    const files = [...Deno.readDirSync(archiveDir)].map((e) => e.name).sort();
    assert.deepEqual(files, [
      "ami_events-2026-05-01.jsonl.gz",
      "ami_events-2026-05-01.jsonl.gz.sha256",
      "ami_events-2026-05-03.jsonl.gz.partial",
    ]);
    assert.equal((await gunzipLines(first.file)).length, 10);
  });
});

Deno.test("retention: events added to a day after its archive stop the drop; the next run archives it again under a new name", async () => {
  await withStore("postgres", async (store, dir) => {
    await storeEvents(store, ["2026-05-01"], 10);
    const archive = await archiveDay(store.db, "2026-05-01", dir);
    await storeEvents(store, ["2026-05-01"], 3); // a late spool
    await assert.rejects(
      dropDay(store.db, "2026-05-01", {
        expected: { events: archive.events, lastId: archive.lastId },
        archive,
      }),
      PartitionChangedError,
    );
    assert.equal((await allEvents(store)).length, 13);
    const report = await runRetention(store.db, { events: "1d", archiveDir: dir }, {
      now: Date.parse("2026-05-03T00:00:00Z"),
    });
    assert.equal(report.dropped[0].events, 13);
    assert.equal(report.dropped[0].archive?.file, `${dir}/ami_events-2026-05-01.2.jsonl.gz`);
    assert.equal((await gunzipLines(`${dir}/ami_events-2026-05-01.2.jsonl.gz`)).length, 13);
    assert.equal((await allEvents(store)).length, 0);
  });
});

Deno.test("retention after a long downtime drops at most maxDaysPerRun days, oldest first, and none it cannot archive", async () => {
  await withStore("postgres", async (store, dir) => {
    const days = Array.from({ length: 6 }, (_, i) => `2026-05-0${i + 1}`);
    await storeEvents(store, days, 2);
    const now = Date.parse("2026-05-06T10:00:00Z");
    assert.equal(horizonDay(2, now), "2026-05-05");
    // The archive directory is a file: nothing can be archived, so nothing is dropped.
    await Deno.writeTextFile(`${dir}/not-a-dir`, "");
    const blocked = await runRetention(store.db, {
      events: "2d",
      archiveDir: `${dir}/not-a-dir`,
      maxDaysPerRun: 3,
    }, { now });
    assert.deepEqual(blocked.dropped, []);
    assert.equal(blocked.remainingDays, 4);
    assert.match(blocked.error ?? "", /^2026-05-01: /);
    assert.equal((await allEvents(store)).length, 12);

    const first = await runRetention(store.db, {
      events: "2d",
      archiveDir: `${dir}/archive`,
      maxDaysPerRun: 3,
    }, { now });
    assert.deepEqual(first.dropped.map((d) => d.day), ["2026-05-01", "2026-05-02", "2026-05-03"]);
    assert.equal(first.remainingDays, 1);
    const second = await runRetention(store.db, {
      events: "2d",
      archiveDir: `${dir}/archive`,
      maxDaysPerRun: 3,
    }, { now });
    assert.deepEqual(second.dropped.map((d) => d.day), ["2026-05-04"]);
    assert.equal(second.remainingDays, 0);
    const kept = (await eventPartitions(store.db)).map((p) => p.day);
    assert.deepEqual(kept.slice(0, 2), ["2026-05-05", "2026-05-06"]);
  });
});

Deno.test("retention deletes action runs past their horizon and keeps the rest", async () => {
  await withStore("postgres", async (store) => {
    for (const [i, startedAt] of ["2026-04-01T10:00:00Z", "2026-05-05T23:59:59Z"].entries()) {
      await store.db.execute(
        sql`insert into action_runs (id, server, name, action, started_at, status)
        values (${uuidv7()}::uuid, 'pbx1', ${"run" + i}, 'Ping', ${startedAt}::timestamptz, 'ok')`,
      );
    }
    const report = await runRetention(store.db, { actionRuns: "2d" }, {
      now: Date.parse("2026-05-06T10:00:00Z"),
    });
    assert.equal(report.actionRunsDeleted, 1);
    const rows = await selectRows<{ name: string }>(store.db, sql`select name from action_runs`);
    assert.deepEqual(rows, [{ name: "run1" }]);
  });
});

/** The fixture's events moved `days` later: received_at and the Timestamp header. */
function shifted(events: TimedMessage[], days: number): TimedMessage[] {
  return events.map(({ message, receivedAtMs }) => ({
    receivedAtMs: receivedAtMs + days * DAY_MS,
    message: {
      ...message,
      headers: message.headers.map(([k, v]) =>
        k === "Timestamp" ? [k, (Number(v) + days * 86_400).toFixed(6)] as const : [k, v] as const
      ),
    },
  }));
}

Deno.test("rebuild-projections keeps the calls of days whose raw events were pruned and rebuilds the rest", async () => {
  await withStore("postgres", async (store, dir) => {
    // sip-calls on 2026-11-26, queue-call moved to 2026-11-27.
    const sessions = [
      { id: crypto.randomUUID(), events: fixtureEvents("sip-calls") },
      { id: crypto.randomUUID(), events: shifted(fixtureEvents("queue-call"), 1) },
    ];
    for (const { id, events } of sessions) {
      await insertSession(store.db, {
        id,
        server: "pbx1",
        connectedAtMs: events[0].receivedAtMs - 1000,
        disconnectedAtMs: events.at(-1)!.receivedAtMs + 1000,
      });
      await insertMessages(store.db, "pbx1", id, events);
    }
    await runProjectionsOnce(store);
    const callsOf = () =>
      selectRows<Record<string, unknown>>(
        store.db,
        sql`select call_id, started_at::text, disposition, legs, src, dst from calls order by 1`,
      );
    const legsOf = () =>
      selectRows<Record<string, unknown>>(
        store.db,
        sql`select uniqueid, call_id, hungup_at::text from call_legs order by 1`,
      );
    const projected = await callsOf();
    const legs = await legsOf();
    const days = new Set(projected.map((c) => String(c.started_at).slice(0, 10)));
    assert.deepEqual([...days].sort(), ["2026-11-26", "2026-11-27"]);

    const report = await runRetention(store.db, { events: "1d", archiveDir: dir }, {
      now: Date.parse("2026-11-27T12:00:00Z"),
    });
    assert.deepEqual(report.dropped.map((d) => d.day), ["2026-11-26"]);
    // The ids of the dropped day are a hole that is no transaction in flight.
    await rebuildProjections(store, { holeWaitMs: 0 });
    assert.deepEqual(await callsOf(), projected);
    assert.deepEqual(await legsOf(), legs);
    const leftovers = await selectRows(
      store.db,
      sql`select relname from pg_class where relname like 'projection_kept_%'`,
    );
    assert.deepEqual(leftovers, []);

    // With the day restored, the rebuild derives everything from raw events again.
    await restoreArchive(store.db, report.dropped[0].archive!.file);
    await rebuildProjections(store, { holeWaitMs: 0 });
    assert.deepEqual(await callsOf(), projected);
  });
});

Deno.test("deno task archive, prune and restore: by hand, with --database-url, restore twice adds nothing", async () => {
  const database = await createTestDatabase("retention_cli");
  const dir = await Deno.makeTempDir({ prefix: "dami-retention-cli-" });
  const printed: string[] = [];
  const error = console.error;
  const log = console.log;
  console.error = console.log = (line: string) => printed.push(line);
  try {
    const store = await openStore({ url: database.url, dataDir: dir });
    await storeEvents(store, ["2026-05-01", "2026-05-02", "2026-05-03"], 5);
    const before = await allEvents(store);
    await store.close();
    const db = ["--database-url", database.url];
    assert.equal(
      await retentionMain("archive", ["--before", "2026-05-03", "--dir", dir, ...db]),
      0,
    );
    assert.deepEqual(printed.slice(-2), [
      `2026-05-01: 5 events in ${dir}/ami_events-2026-05-01.jsonl.gz`,
      `2026-05-02: 5 events in ${dir}/ami_events-2026-05-02.jsonl.gz`,
    ]);
    assert.equal(await retentionMain("prune", ["--before", "2026-05-03", ...db]), 0);
    assert.deepEqual(printed.slice(-2), [
      "2026-05-01: dropped (5 events)",
      "2026-05-02: dropped (5 events)",
    ]);
    const files = [1, 2].map((d) => `${dir}/ami_events-2026-05-0${d}.jsonl.gz`);
    assert.equal(await retentionMain("restore", [...files, ...db]), 0);
    assert.equal(await retentionMain("restore", [...files, ...db]), 0);
    assert.deepEqual(printed.slice(-2), [
      `${files[0]}: 0 of 5 events restored (5 already stored)`,
      `${files[1]}: 0 of 5 events restored (5 already stored)`,
    ]);
    const reopened = await openStore({ url: database.url, dataDir: dir });
    assert.deepEqual(await allEvents(reopened), before);
    await reopened.close();

    assert.equal(await retentionMain("prune", ["--before", "2026-13-01", ...db]), 2);
    assert.match(printed.at(-1)!, /is not a date/);
    assert.equal(await retentionMain("prune", ["--before", "2999-01-01", ...db]), 2);
    assert.match(printed.at(-1)!, /after today/);
    assert.equal(await retentionMain("restore", [...db]), 2);
    assert.match(printed.at(-1)!, /name at least one archive file/);
  } finally {
    console.error = error;
    console.log = log;
    await database.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("two instances archiving the same day into one directory at once leave one archive and drop the day once", async () => {
  await withStore("postgres", async (store, dir) => {
    await storeEvents(store, ["2026-05-01", "2026-05-02"], 50);
    const now = Date.parse("2026-05-02T12:00:00Z");
    const policy = { events: "1d", archiveDir: `${dir}/archive` };
    const reports = await Promise.all([
      runRetention(store.db, policy, { now }),
      runRetention(store.db, policy, { now }),
    ]);
    assert.equal(reports.flatMap((r) => r.dropped).length, 1);
    assert.deepEqual(reports.map((r) => r.error), [undefined, undefined]);
    const files = [...Deno.readDirSync(`${dir}/archive`)].map((e) => e.name).sort();
    assert.deepEqual(files, [
      "ami_events-2026-05-01.jsonl.gz",
      "ami_events-2026-05-01.jsonl.gz.sha256",
    ]);
    assert.equal((await gunzipLines(`${dir}/archive/${files[0]}`)).length, 50);
  });
});

Deno.test("retention removes partial archives an interrupted run left hours ago, and keeps one being written", async () => {
  await withStore("postgres", async (store, dir) => {
    await storeEvents(store, ["2026-05-01", "2026-05-02"], 5);
    const archiveDir = `${dir}/archive`;
    await Deno.mkdir(archiveDir);
    const now = Date.parse("2026-05-02T12:00:00Z");
    const stale = `${archiveFileName("2026-04-20")}.0badf00d.partial`;
    const writing = `${archiveFileName("2026-04-21")}.12345678.partial`;
    for (const name of [stale, `${stale}.sha256`, writing, "unrelated.partial"]) {
      await Deno.writeTextFile(`${archiveDir}/${name}`, "torn");
    }
    const hoursAgo = (h: number) => new Date(now - h * 3600_000);
    await Deno.utime(`${archiveDir}/${stale}`, hoursAgo(7), hoursAgo(7));
    await Deno.utime(`${archiveDir}/${stale}.sha256`, hoursAgo(7), hoursAgo(7));
    await Deno.utime(`${archiveDir}/unrelated.partial`, hoursAgo(7), hoursAgo(7));
    await Deno.utime(`${archiveDir}/${writing}`, hoursAgo(0.01), hoursAgo(0.01));
    const report = await runRetention(store.db, { events: "1d", archiveDir }, { now });
    assert.deepEqual(report.dropped.map((d) => d.day), ["2026-05-01"]);
    const files = [...Deno.readDirSync(archiveDir)].map((e) => e.name).sort();
    assert.deepEqual(files, [
      "ami_events-2026-04-21.jsonl.gz.12345678.partial",
      "ami_events-2026-05-01.jsonl.gz",
      "ami_events-2026-05-01.jsonl.gz.sha256",
      "unrelated.partial",
    ]);
  });
});
