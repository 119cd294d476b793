/**
 * The ingest queue keeps its cached events as columns, not objects (see
 * `daemon/ingest/queue.ts`): every record it gives back, taken, forgotten or skipped,
 * must be the record it was given, in order, with the spool positions it was given.
 */
import assert from "node:assert/strict";
import { recordBytes, RecordQueue } from "../daemon/ingest/queue.ts";
import {
  type EventRecord,
  eventRecord,
  type IngestRecord,
  RowArena,
} from "../daemon/ingest_record.ts";
import type { SpoolPosition } from "../daemon/spool.ts";

const SESSION = "01930000-0000-7000-8000-000000000001";

/** A mix of events (two servers, UTF-8, a fractional receive time) and other records. */
function records(count: number, arena = new RowArena()): IngestRecord[] {
  const out: IngestRecord[] = [];
  for (let i = 0; i < count; i++) {
    if (i % 97 === 5) {
      out.push({
        type: "session_start",
        session: { id: SESSION, server: "pbx2", connectedAt: new Date(i), banner: null },
      });
      continue;
    }
    out.push(eventRecord(i % 3 === 0 ? "pbx2" : "pbx1", SESSION, {
      kind: "event",
      headers: [["Event", "Newchannel"], ["Uniqueid", `17${i}.5`], ["CallerIDName", `Zoë ${i}`]],
      seq: i + 1,
      receivedAt: Date.UTC(2026, 10, 30) + i + 0.25,
    }, arena));
  }
  return out;
}

/** Spool positions as the spool gives them: records end one after another, segments roll. */
function positions(count: number): SpoolPosition[] {
  return Array.from({ length: count + 1 }, (_, i) => ({
    segment: 1 + Math.floor(i / 1000),
    offset: (i % 1000) * 500,
  }));
}

/** What a record is, compared by value (an event's row by its bytes). */
function plain(record: IngestRecord): unknown {
  if (record.type !== "event") return record;
  const { bytes, ...rest } = record as EventRecord;
  return { ...rest, bytes: [...bytes] };
}

/** Same records in the same order; fails at the first that differs (a diff of all is slow). */
function assertSameRecords(actual: IngestRecord[], expected: IngestRecord[]): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.deepEqual(plain(actual[i]), plain(expected[i]), `record ${i}`);
  }
}

function fill(queue: RecordQueue, all: IngestRecord[], at: SpoolPosition[]): void {
  all.forEach((r, i) => queue.push(r, recordBytes(r), at[i], at[i + 1]));
}

Deno.test("the queue gives back every record as given, in order, across compactions", () => {
  const all = records(10_000);
  const at = positions(all.length);
  const queue = new RecordQueue(at[0], { maxBytes: 1 << 30 });
  fill(queue, all, at);
  assert.equal(queue.length, all.length);
  const taken: IngestRecord[] = [];
  let expectedEnd = 0;
  while (queue.length > 0) {
    const { batch, end } = queue.take(777, 1 << 30);
    taken.push(...batch);
    expectedEnd += batch.length;
    assert.deepEqual(end, at[expectedEnd]);
    assert.deepEqual(queue.start, at[expectedEnd]);
  }
  assertSameRecords(taken, all);
  // An event's row is a view of the same memory, not a copy.
  const first = taken[0] as EventRecord;
  assert.equal(first.bytes.buffer, (all[0] as EventRecord).bytes.buffer);
  assert.equal(queue.bytes, 0);
});

Deno.test("take stops at maxBytes (one record at least), and an empty take keeps the position", () => {
  const all = records(10);
  const at = positions(all.length);
  const queue = new RecordQueue(at[0]);
  assert.deepEqual(queue.take(5, 1 << 20), { batch: [], end: at[0] });
  fill(queue, all, at);
  const one = queue.take(5, 1);
  assert.equal(one.batch.length, 1);
  assert.deepEqual(one.end, at[1]);
  const size = recordBytes(all[1]) + recordBytes(all[2]);
  const two = queue.take(5, size);
  assertSameRecords(two.batch, all.slice(1, 3));
  assert.deepEqual(queue.take(100, 1 << 20).end, at[10]);
  assert.deepEqual(queue.take(100, 1 << 20), { batch: [], end: at[10] });
});

Deno.test("past maxBytes the oldest records are forgotten, whole, and skipWhile skips by position", () => {
  const all = records(3000);
  const at = positions(all.length);
  const forgotten: IngestRecord[] = [];
  const limit = all.slice(0, 1000).reduce((n, r) => n + recordBytes(r), 0);
  const queue = new RecordQueue(at[0], { maxBytes: limit, onForget: (r) => forgotten.push(r) });
  fill(queue, all, at);
  assert.ok(queue.bytes <= limit);
  assert.equal(queue.evicted, forgotten.length);
  assert.equal(forgotten.length + queue.length, all.length);
  assertSameRecords(forgotten, all.slice(0, forgotten.length));
  assert.deepEqual(queue.start, at[forgotten.length]);
  // The writer read the next 100 from the spool: they are skipped, handed to onForget.
  const from = forgotten.length;
  const cursor = at[from + 100];
  queue.skipWhile((end) =>
    end.segment < cursor.segment || (end.segment === cursor.segment && end.offset <= cursor.offset)
  );
  assertSameRecords(forgotten.slice(from), all.slice(from, from + 100));
  assert.deepEqual(queue.take(1, 1 << 20).batch.map(plain), [plain(all[from + 100])]);
});

Deno.test("records pushed and taken in turns (the ring wraps, then grows while wrapped) stay in order", () => {
  const all = records(20_000);
  const at = positions(all.length);
  const queue = new RecordQueue(at[0], { maxBytes: 1 << 30 });
  const taken: IngestRecord[] = [];
  let pushed = 0;
  // Pushes outpace takes: the ring fills up around its end and must grow while wrapped.
  for (let round = 0; pushed < all.length; round++) {
    const n = Math.min(700 + (round % 5) * 300, all.length - pushed);
    for (let i = 0; i < n; i++, pushed++) {
      queue.push(all[pushed], recordBytes(all[pushed]), at[pushed], at[pushed + 1]);
    }
    taken.push(...queue.take(600, 1 << 30).batch);
    assert.equal(queue.length, pushed - taken.length);
  }
  while (queue.length > 0) taken.push(...queue.take(1000, 1 << 30).batch);
  assertSameRecords(taken, all);
  assert.deepEqual(queue.start, at[all.length]);
});
