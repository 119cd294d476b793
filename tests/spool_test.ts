import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { getTableConfig } from "drizzle-orm/pg-core";
import type { AmiMessage } from "../dami/message.ts";
import { Ingest } from "../daemon/ingest.ts";
import {
  CURRENT_EVENT_FORMAT,
  decodeRecord,
  encodeRecord,
  EVENT_LINE_FORMATS,
  eventRecord,
} from "../daemon/ingest_record.ts";
import { Spool, type SpoolPosition } from "../daemon/spool.ts";
import { openStore } from "../daemon/store.ts";
import { amiEvents } from "../schema/mod.ts";
import { createTestDatabase } from "./pg.ts";

const payload = (i: number) => JSON.stringify({ i, text: `record ${i} ünïcode \\ "quoted"` });

async function readAll(spool: Spool, from: SpoolPosition, batch = 1000) {
  const payloads: string[] = [];
  let corrupt = 0;
  let position = from;
  for (;;) {
    const read = await spool.read(position, batch);
    payloads.push(...read.payloads);
    corrupt += read.corrupt;
    if (read.payloads.length === 0 && read.corrupt === 0) return { payloads, corrupt, position };
    position = read.end;
  }
}

async function segmentFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("records read back in append order, across segment files and buffered or not", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir, { segmentBytes: 4096 });
  const expected = Array.from({ length: 1000 }, (_, i) => payload(i));
  for (const p of expected.slice(0, 600)) assert.ok(spool.append(p));
  await spool.flush();
  for (const p of expected.slice(600)) assert.ok(spool.append(p)); // still buffered
  const { payloads, corrupt, position } = await readAll(spool, spool.start, 37);
  assert.deepEqual(payloads, expected);
  assert.equal(corrupt, 0);
  assert.equal(spool.distance(position, spool.end), 0);
  assert.ok((await segmentFiles(dir)).length > 10);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a spool reopened after close gives back every unreleased record, and new ones after", async () => {
  const dir = await Deno.makeTempDir();
  const first = await Spool.open(dir, { segmentBytes: 2048 });
  for (let i = 0; i < 100; i++) first.append(payload(i));
  const { end } = await first.read(first.start, 40);
  first.release(end);
  await first.close();

  const second = await Spool.open(dir, { segmentBytes: 2048 });
  second.append(payload(100));
  const { payloads } = await readAll(second, second.start);
  // Whole segments before the released position are gone; the rest comes back in order.
  const firstIndex = JSON.parse(payloads[0]).i;
  assert.ok(firstIndex <= 40, `replay starts at ${firstIndex}`);
  assert.deepEqual(
    payloads,
    Array.from({ length: 101 - firstIndex }, (_, k) => payload(firstIndex + k)),
  );
  await second.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("records flushed before a crash are all there for the next process", async () => {
  const dir = await Deno.makeTempDir();
  const crashed = await Spool.open(dir);
  for (let i = 0; i < 500; i++) crashed.append(payload(i));
  await crashed.flush();
  // No close(): the next open sees the files exactly as a killed process leaves them.
  const next = await Spool.open(dir);
  const { payloads, corrupt } = await readAll(next, next.start);
  assert.equal(payloads.length, 500);
  assert.equal(corrupt, 0);
  await crashed.close();
  await next.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a torn last line is skipped, not misparsed, and reading goes on in the next segment", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir);
  for (let i = 0; i < 10; i++) spool.append(payload(i));
  await spool.close();
  const [file] = await segmentFiles(dir);
  const full = await Deno.readFile(`${dir}/${file}`);
  // A crash in the middle of writing record 9: its bytes are cut short, no newline.
  const lastLineStart = full.lastIndexOf(0x0a, full.length - 2) + 1;
  await Deno.writeFile(`${dir}/${file}`, full.subarray(0, lastLineStart + 20));

  const reopened = await Spool.open(dir);
  reopened.append(payload(10));
  const { payloads, corrupt } = await readAll(reopened, reopened.start);
  assert.deepEqual(payloads, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10].map(payload));
  assert.equal(corrupt, 1);
  await reopened.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a line whose checksum does not match is skipped and the lines after it are read", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir);
  for (let i = 0; i < 5; i++) spool.append(payload(i));
  await spool.close();
  const [file] = await segmentFiles(dir);
  const bytes = await Deno.readFile(`${dir}/${file}`);
  const thirdLine = bytes.indexOf(0x0a, bytes.indexOf(0x0a) + 1) + 1;
  bytes[thirdLine + 20] ^= 0x01; // one flipped bit inside record 2's JSON
  await Deno.writeFile(`${dir}/${file}`, bytes);

  const reopened = await Spool.open(dir);
  const { payloads, corrupt } = await readAll(reopened, reopened.start);
  assert.deepEqual(payloads, [0, 1, 3, 4].map(payload));
  assert.equal(corrupt, 1);
  await reopened.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("released segments are deleted, and a fully released spool leaves no file", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir, { segmentBytes: 1024 });
  for (let i = 0; i < 200; i++) spool.append(payload(i));
  await spool.flush();
  const before = (await segmentFiles(dir)).length;
  const half = await spool.read(spool.start, 100);
  spool.release(half.end);
  await spool.flush();
  const after = (await segmentFiles(dir)).length;
  assert.ok(after < before, `${after} files after releasing half, ${before} before`);
  const rest = await readAll(spool, half.end);
  assert.equal(rest.payloads.length, 100);
  spool.release(rest.position);
  assert.equal(spool.bytes, 0);
  await spool.close();
  assert.deepEqual(await segmentFiles(dir), []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("records released before their first write never touch the disk; an empty segment left by a previous run is still removed", async () => {
  const dir = await Deno.makeTempDir();
  // Left by a previous run: an empty segment file (a crash right after it was created).
  await Deno.writeFile(`${dir}/000000000007.spool`, new Uint8Array(0));
  const spool = await Spool.open(dir, { segmentBytes: 1024, fsyncIntervalMs: 60_000 });
  const removed: string[] = [];
  const remove = Deno.remove;
  Deno.remove = (path, options) => {
    removed.push(String(path).split("/").pop()!);
    return remove(path, options);
  };
  try {
    for (let round = 0; round < 20; round++) {
      spool.append(payload(round));
      // Written by the database before the interval's flush: released from memory.
      spool.release(spool.end);
    }
    await spool.flush();
    assert.deepEqual(removed, ["000000000007.spool"]);
    assert.deepEqual(await segmentFiles(dir), []);
  } finally {
    Deno.remove = remove;
    await spool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("append refuses past the cap and accepts again once records are released", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir, { capBytes: 2000, segmentBytes: 500 });
  let accepted = 0;
  while (spool.append(payload(accepted))) accepted++;
  assert.ok(accepted > 5 && spool.bytes <= 2000, `${accepted} records, ${spool.bytes} bytes`);
  assert.equal(spool.append(payload(999)), null);
  const { payloads, position } = await readAll(spool, spool.start);
  assert.equal(payloads.length, accepted);
  spool.release(position);
  assert.ok(spool.append(payload(accepted)));
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an empty spool takes a record larger than the cap rather than refusing it forever", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir, { capBytes: 100 });
  assert.ok(spool.append(JSON.stringify("x".repeat(500))));
  assert.equal(spool.append(payload(1)), null);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a payload containing a newline is refused", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir);
  assert.throws(() => spool.append('{"a":\n1}'), TypeError);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

// --- the ingest pipeline's spool line format ----------------------------------------

/** One event, every value fixed, with characters COPY and JSON must escape. */
const PINNED_EVENT: AmiMessage = {
  kind: "event",
  headers: [
    ["Event", "Hangup"],
    ["Channel", "PJSIP/6001-00000001"],
    ["Uniqueid", "1700000000.1"],
    ["Linkedid", "1700000000.1"],
    ["Cause-txt", "Normal\tClearing \\ ü"],
  ],
  seq: 7,
  receivedAt: Date.UTC(2026, 10, 30, 12, 0, 0, 123),
};
const PINNED_SESSION = "01930000-0000-7000-8000-000000000001";

/** The segment file that event makes, byte for byte: format e1, as released. */
const PINNED_E1_FILE = "aac08c6d e1\tpbx1\t01930000-0000-7000-8000-000000000001\t7\t" +
  "2026-11-30T12:00:00.123Z\tHangup\t1700000000.1\t1700000000.1\tPJSIP/6001-00000001\t\\N\t" +
  '{"Event":"Hangup","Channel":"PJSIP/6001-00000001","Uniqueid":"1700000000.1",' +
  '"Linkedid":"1700000000.1","Cause-txt":"Normal\\\\tClearing \\\\\\\\ ü"}\t\\N\tf\n';

Deno.test("an event's spool line is pinned byte for byte (format e1) and reads back as written", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir);
  const record = eventRecord("pbx1", PINNED_SESSION, PINNED_EVENT);
  spool.append(encodeRecord(record));
  await spool.close();
  const [file] = await segmentFiles(dir);
  assert.equal(await Deno.readTextFile(`${dir}/${file}`), PINNED_E1_FILE);
  const line = PINNED_E1_FILE.slice(9, -1);
  assert.deepEqual(decodeRecord(line), record);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("format e1 is frozen, and the current format writes every ami_events column without a default", () => {
  assert.deepEqual(EVENT_LINE_FORMATS.e1.columns, [
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
  ]);
  // A column added to ami_events must come with a new line format (e2, ...): old lines
  // keep their own column list, new lines carry the new column.
  const columns = getTableConfig(amiEvents).columns;
  const notWritten = columns.filter((c) => !CURRENT_EVENT_FORMAT.columns.includes(c.name));
  assert.deepEqual(notWritten.filter((c) => !c.hasDefault && !c.generatedIdentity), []);
  const names = columns.map((c) => c.name);
  assert.deepEqual(CURRENT_EVENT_FORMAT.columns.filter((c) => !names.includes(c)), []);
  assert.deepEqual(
    Object.keys(EVENT_LINE_FORMATS).filter((tag) => EVENT_LINE_FORMATS[tag].tag !== tag),
    [],
  );
});

Deno.test("a line of a format this version does not know is refused, never misread", () => {
  const row = PINNED_E1_FILE.slice(12, -1);
  for (const line of [`e9\t${row}`, `e1${row}`, `\t${row}`, `toString\t${row}`, "e1\t"]) {
    assert.throws(() => decodeRecord(line), SyntaxError, JSON.stringify(line.slice(0, 12)));
  }
});

Deno.test("PostgreSQL: a spool written in format e1 replays into its own columns after a column is added", async () => {
  const database = await createTestDatabase("spool_upgrade");
  const dataDir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dataDir}/spool`);
    await Deno.writeTextFile(`${dataDir}/spool/000000000001.spool`, PINNED_E1_FILE);
    const store = await openStore({ url: database.url, dataDir });
    // The upgrade: a column the e1 line knows nothing about, placed before its last ones.
    await store.db.execute(
      sql`ALTER TABLE ami_events ADD COLUMN note text NOT NULL DEFAULT 'added later'`,
    );
    const ingest = await Ingest.open({ store, dataDir });
    await ingest.close({ timeoutMs: 60_000 });
    assert.equal(ingest.stats().spooledEvents, 1);
    assert.equal(ingest.stats().corruptSpoolRecords, 0);
    const result = await store.db.execute(sql`
      SELECT server, session_id::text, seq::int,
             (received_at AT TIME ZONE 'UTC')::text AS received_at, event, uniqueid, linkedid,
             channel, action_id, fields, raw_b64, escaped, note
        FROM ami_events`);
    const rows = Array.isArray(result) ? result : (result as { rows: unknown[] }).rows;
    assert.deepEqual(rows.map((r) => ({ ...r as object })), [{
      server: "pbx1",
      session_id: PINNED_SESSION,
      seq: 7,
      received_at: "2026-11-30 12:00:00.123",
      event: "Hangup",
      uniqueid: "1700000000.1",
      linkedid: "1700000000.1",
      channel: "PJSIP/6001-00000001",
      action_id: null,
      fields: Object.fromEntries(PINNED_EVENT.headers),
      raw_b64: null,
      escaped: false,
      note: "added later",
    }]);
    await store.close();
  } finally {
    await database.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a large record after others in the buffer is kept whole, as text (3-byte UTF-8) or as bytes", async () => {
  const dir = await Deno.makeTempDir();
  const spool = await Spool.open(dir, { fsyncIntervalMs: 60_000, bufferBytes: 1 << 30 });
  // The buffer (64 KiB) must grow past twice its size for a record whose UTF-8 is three
  // times its length: it must also keep what it already holds.
  const filler = "f".repeat(1_000);
  const wide = "中".repeat(50_000);
  const bytes = new TextEncoder().encode("b".repeat(300_000));
  spool.append(filler);
  spool.append(wide);
  spool.append(filler);
  spool.appendBytes(new TextEncoder().encode("e1\t"), bytes);
  spool.append(filler);
  const { payloads, corrupt } = await spool.read(spool.start, 10);
  assert.equal(corrupt, 0);
  assert.deepEqual(payloads.map((p) => p.length), [1_000, 50_000, 1_000, 300_003, 1_000]);
  assert.equal(payloads[1], wide);
  assert.equal(payloads[3], "e1\t" + "b".repeat(300_000));
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a burst is written as it comes but fsynced once per interval, and is durable within it", async () => {
  const dir = await Deno.makeTempDir();
  const syncData = Deno.FsFile.prototype.syncData;
  let syncs = 0;
  Deno.FsFile.prototype.syncData = function (this: Deno.FsFile) {
    syncs++;
    return syncData.call(this);
  };
  try {
    const spool = await Spool.open(dir, { fsyncIntervalMs: 300, bufferBytes: 4096 });
    // Let the timer's first (empty) flush pass, then burst.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const before = syncs;
    for (let i = 0; i < 50; i++) {
      spool.append("x".repeat(1000));
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    // Written already (the buffer is bounded), not fsynced yet.
    const [file] = await segmentFiles(dir);
    assert.ok(
      (await Deno.stat(`${dir}/${file}`)).size >= 40 * 1010,
      "early flushes wrote the burst",
    );
    // At most the new file's directory entry (made durable at once), not one per early flush.
    assert.ok(syncs - before <= 1, `${syncs - before} fsyncs during the burst`);
    // The interval's flush fsyncs what the early flushes wrote.
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.ok(syncs > before, "fsynced within the interval");
    await spool.close();
  } finally {
    Deno.FsFile.prototype.syncData = syncData;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("records appended while a write fails are kept with the failed bytes and written by the next flush", async () => {
  const dir = await Deno.makeTempDir();
  const write = Deno.FsFile.prototype.write;
  let failNext = false;
  let writing: (() => void) | undefined;
  Deno.FsFile.prototype.write = async function (this: Deno.FsFile, data: Uint8Array) {
    if (!failNext) return await write.call(this, data);
    failNext = false;
    // Appends go on while this write is under way, then it fails (a full disk, EIO).
    await new Promise<void>((resolve) => writing = resolve);
    throw new Deno.errors.WriteZero("disk full");
  };
  const errors: unknown[] = [];
  try {
    const spool = await Spool.open(dir, {
      fsyncIntervalMs: 60_000,
      onError: (e) => errors.push(e),
    });
    for (let i = 0; i < 10; i++) spool.append(payload(i));
    failNext = true;
    const failed = spool.flush();
    while (!writing) await new Promise((resolve) => setTimeout(resolve, 1));
    for (let i = 10; i < 20; i++) spool.append(payload(i));
    writing();
    await assert.rejects(failed);
    for (let i = 20; i < 30; i++) spool.append(payload(i));
    await spool.flush();
    const expected = Array.from({ length: 30 }, (_, i) => payload(i));
    // Read back from the files: before the fix, the appends made during the failed write
    // were counted but gone (and a read of the open spool spun forever waiting for them).
    await spool.close();
    const reopened = await Spool.open(dir);
    assert.deepEqual((await readAll(reopened, reopened.start)).payloads, expected);
    await reopened.close();
  } finally {
    Deno.FsFile.prototype.write = write;
    await Deno.remove(dir, { recursive: true });
  }
});
