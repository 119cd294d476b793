import assert from "node:assert/strict";
import { asc, sql } from "drizzle-orm";
import { AmiParser } from "../dami/parser.ts";
import { type AmiMessage, headersToFields, headerValue } from "../dami/message.ts";
import { BatchWriter } from "../daemon/batch_writer.ts";
import { uuidv7 } from "../daemon/ids.ts";
import { Ingest, type IngestOptions } from "../daemon/ingest.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";
import { eventRecord } from "../daemon/ingest_record.ts";
import { isTransientError, MigrationError, openStore, type Store } from "../daemon/store.ts";
import { actionRuns, amiEvents, amiEventsRejected, amiSessions } from "../schema/mod.ts";
import { FIXTURE_NAMES, loadFixture } from "./fixtures.ts";
import { eventAt } from "./ingest_child.ts";
import { formatAmiMessage } from "../demo/ami_wire.ts";
import { createTestDatabase } from "./pg.ts";
import { TcpProxy } from "./tcp_proxy.ts";

/** Rows of a raw query, whichever the driver. */
async function query<T>(store: Store, text: ReturnType<typeof sql>): Promise<T[]> {
  const result = await store.db.execute(text);
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

async function eventCount(store: Store): Promise<number> {
  const [row] = await query<{ n: number }>(store, sql`SELECT count(*)::int AS n FROM ami_events`);
  return row.n;
}

/**
 * Asserts that `ami_events` holds exactly seq 1..n of each session, once each, and
 * that ids follow seq within each session.
 */
async function assertExactlyOnceInOrder(store: Store, expected: Map<string, number>) {
  const rows = await store.db.select({ sessionId: amiEvents.sessionId, seq: amiEvents.seq })
    .from(amiEvents).orderBy(asc(amiEvents.id));
  const next = new Map<string, number>();
  for (const { sessionId, seq } of rows) {
    const want = (next.get(sessionId) ?? 0) + 1;
    assert.equal(seq, want, `session ${sessionId}: seq ${seq} where ${want} was due`);
    next.set(sessionId, seq);
  }
  assert.deepEqual(next, expected);
}

async function withPostgres(
  prefix: string,
  fn: (url: string, dataDir: string) => Promise<void>,
): Promise<void> {
  const database = await createTestDatabase(prefix);
  const dataDir = await Deno.makeTempDir();
  try {
    await fn(database.url, dataDir);
  } finally {
    await database.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/**
 * Ingests `count` events of a session (fixture events renumbered) into `ingest`: parsed
 * (`event`), or as the supervisor gives them, from their wire bytes (`eventBytes`, the
 * parsed path for those it declines).
 */
function ingestSession(
  ingest: Ingest,
  server: string,
  count: number,
  path: "parsed" | "wire" = "parsed",
): string {
  const id = uuidv7();
  ingest.sessionStarted({ id, server, connectedAt: new Date() });
  const encoder = new TextEncoder();
  let wire = 0;
  for (let seq = 1; seq <= count; seq++) {
    const msg = eventAt(seq);
    if (path === "wire") {
      const bytes = encoder.encode(formatAmiMessage(msg.headers));
      if (ingest.eventBytes(server, id, bytes, 0, bytes.length, seq, msg.receivedAt)) {
        wire++;
        continue;
      }
    }
    ingest.event(server, id, msg);
  }
  // Most recorded events are plain enough for the wire path: it is the one tested.
  if (path === "wire") assert.ok(wire > count / 2, `${wire} of ${count} taken from the wire`);
  return id;
}

async function spoolFiles(dataDir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(`${dataDir}/spool`)) names.push(e.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names;
}

// --- behaviours checked on both drivers ---------------------------------------------

/** Every event of every fixture, parsed from the recorded chunks, then read back. */
async function fixturesRoundTrip(store: Store, dataDir: string): Promise<void> {
  const ingest = await Ingest.open({ store, dataDir });
  const expected: { sessionId: string; msg: AmiMessage }[] = [];
  for (const name of FIXTURE_NAMES) {
    const sessionId = uuidv7();
    ingest.sessionStarted({ id: sessionId, server: name, connectedAt: new Date() });
    const parser = new AmiParser();
    for (const chunk of loadFixture(name).inChunks) {
      for (const msg of parser.push(chunk)) {
        ingest.event(name, sessionId, msg);
        if (msg.kind === "event") expected.push({ sessionId, msg });
      }
    }
  }
  await ingest.close();
  assert.equal(ingest.stats().storedEvents, expected.length);
  const rows = await store.db.select().from(amiEvents).orderBy(asc(amiEvents.id));
  assert.equal(rows.length, expected.length);
  rows.forEach((row, i) => {
    const { sessionId, msg } = expected[i];
    const where = `${row.server} seq ${msg.seq}`;
    assert.equal(row.sessionId, sessionId, where);
    assert.equal(row.seq, msg.seq, where);
    assert.deepEqual(row.fields, headersToFields(msg.headers), where);
    assert.equal(row.event, headerValue(msg, "Event"), where);
    assert.equal(row.uniqueid, headerValue(msg, "Uniqueid") ?? null, where);
    assert.equal(row.linkedid, headerValue(msg, "Linkedid") ?? null, where);
    assert.equal(row.channel, headerValue(msg, "Channel") ?? null, where);
    assert.equal(row.actionId, headerValue(msg, "ActionID") ?? null, where);
    assert.equal(row.receivedAt.getTime(), msg.receivedAt, where);
    assert.equal(row.rawB64, null, where);
    assert.equal(row.escaped, false, where);
  });
  // The fixtures use both spellings; both land in the column.
  assert.ok(rows.some((r) => "UniqueID" in (r.fields as object) && r.uniqueid !== null));
  assert.ok(rows.some((r) => "Uniqueid" in (r.fields as object) && r.uniqueid !== null));
}

async function nulIsEscaped(store: Store, dataDir: string): Promise<void> {
  const ingest = await Ingest.open({ store, dataDir });
  const sessionId = uuidv7();
  const bytes = new Uint8Array([0x45, 0x76, 0xff]);
  ingest.event("pbx1", sessionId, {
    kind: "event",
    headers: [["Event", "UserEvent"], ["Channel", "SIP/1\u0000x"], ["Body\u0000", "a\u0000b"]],
    seq: 1,
    receivedAt: Date.now(),
    rawBytes: bytes,
  });
  await ingest.close();
  const [row] = await store.db.select().from(amiEvents).where(sql`session_id = ${sessionId}`);
  assert.equal(row.escaped, true);
  assert.equal(row.channel, "SIP/1\\u0000x");
  assert.deepEqual(row.fields, {
    Event: "UserEvent",
    Channel: "SIP/1\\u0000x",
    "Body\\u0000": "a\\u0000b",
  });
  assert.equal(row.rawB64, btoa(String.fromCharCode(...bytes)));
  assert.equal(ingest.stats().rejectedEvents, 0);
}

async function refusedRowsAreSetAside(store: Store, dataDir: string): Promise<void> {
  const ingest = await Ingest.open({ store, dataDir });
  const sessionId = uuidv7();
  for (let seq = 1; seq <= 300; seq++) {
    let msg = eventAt(seq);
    // A timestamp PostgreSQL cannot represent, and a lone surrogate jsonb refuses.
    if (seq === 120) msg = { ...msg, receivedAt: 1e20 };
    if (seq === 200) msg = { ...msg, headers: [...msg.headers, ["Broken", "x\ud800y"]] };
    ingest.event("pbx1", sessionId, msg);
  }
  await ingest.close();
  const stats = ingest.stats();
  assert.equal(stats.rejectedEvents, 2);
  assert.equal(stats.storedEvents, 298);
  const stored = await store.db.select({ seq: amiEvents.seq }).from(amiEvents)
    .where(sql`session_id = ${sessionId}`).orderBy(asc(amiEvents.id));
  const good = Array.from({ length: 300 }, (_, i) => i + 1).filter((s) => s !== 120 && s !== 200);
  assert.deepEqual(stored.map((r) => r.seq), good);
  const rejected = await store.db.select().from(amiEventsRejected)
    .where(sql`session_id = ${sessionId}`).orderBy(asc(amiEventsRejected.seq));
  assert.deepEqual(rejected.map((r) => [r.kind, r.server, r.seq]), [
    ["event", "pbx1", 120],
    ["event", "pbx1", 200],
  ]);
  assert.match(rejected[0].error, /^22\w{3} /);
  assert.match(rejected[1].error, /^22\w{3} /);
  // The payload keeps the whole record, including the value that was refused.
  const [timestamp, surrogate] = rejected.map((r) => JSON.parse(r.payload));
  assert.equal(timestamp.received_at, "100000000000000000000");
  assert.equal(timestamp.session_id, sessionId);
  assert.equal(timestamp.fields.Event, eventAt(120).headers[0][1]);
  assert.equal(surrogate.fields.Broken, "x\ud800y");
}

async function sessionsAndRunsAreUpserted(store: Store, dataDir: string): Promise<void> {
  const ingest = await Ingest.open({ store, dataDir });
  const sessionId = uuidv7();
  const runId = uuidv7();
  const connectedAt = new Date("2026-11-26T03:00:00.000Z");
  ingest.sessionStarted({
    id: sessionId,
    server: "pbx9",
    connectedAt,
    banner: "Asterisk Call Manager/9.0.0",
    host: "10.0.0.9",
    port: 5038,
  });
  const startedAt = new Date("2026-11-26T03:00:01.000Z");
  const run = { id: runId, server: "pbx9", name: "sip-peers", action: "SIPPeers", startedAt };
  ingest.actionRun({ ...run, status: "timeout", sessionId });
  ingest.event("pbx9", sessionId, eventAt(1));
  ingest.actionRun({
    ...run,
    sessionId,
    actionId: "dami-1",
    status: "ok",
    finishedAt: new Date("2026-11-26T03:00:02.000Z"),
    itemCount: 3,
    response: { Response: "Success", Message: "Peer status list will follow" },
  });
  ingest.sessionEnded({
    id: sessionId,
    server: "pbx9",
    disconnectedAt: new Date("2026-11-26T04:00:00.000Z"),
    reason: "eof",
    eventCount: 1,
  });
  await ingest.close();
  const [session] = await store.db.select().from(amiSessions).where(sql`id = ${sessionId}`);
  assert.deepEqual(session, {
    id: sessionId,
    server: "pbx9",
    connectedAt,
    disconnectedAt: new Date("2026-11-26T04:00:00.000Z"),
    banner: "Asterisk Call Manager/9.0.0",
    disconnectReason: "eof",
    host: "10.0.0.9",
    port: 5038,
    instance: null,
    eventCount: 1,
  });
  const runs = await store.db.select().from(actionRuns).where(sql`id = ${runId}`);
  assert.deepEqual(runs, [{
    id: runId,
    server: "pbx9",
    name: "sip-peers",
    action: "SIPPeers",
    actionId: "dami-1",
    sessionId,
    startedAt,
    finishedAt: new Date("2026-11-26T03:00:02.000Z"),
    status: "ok",
    message: null,
    itemCount: 3,
    response: { Response: "Success", Message: "Peer status list will follow" },
  }]);
}

/**
 * A spool written while the database was down, replayed twice into `store`: the
 * second replay adds nothing.
 */
async function spoolReplayedTwice(store: Store, dataDir: string): Promise<void> {
  // Port 1 refuses connections: this store is down from the start.
  const down = await openStore({ url: "postgres://postgres@127.0.0.1:1/none", dataDir });
  const writing = await Ingest.open({ store: down, dataDir });
  const a = ingestSession(writing, "pbx1", 2500);
  const b = ingestSession(writing, "pbx2", 1500);
  await writing.close({ timeoutMs: 300 });
  await down.close();
  assert.equal(writing.stats().storedEvents, 0);
  const backup = await Deno.makeTempDir();
  for (const name of await spoolFiles(dataDir)) {
    await Deno.copyFile(`${dataDir}/spool/${name}`, `${backup}/${name}`);
  }
  assert.ok((await spoolFiles(dataDir)).length > 0);

  for (const replay of [1, 2]) {
    if (replay === 2) {
      for await (const e of Deno.readDir(backup)) {
        await Deno.copyFile(`${backup}/${e.name}`, `${dataDir}/spool/${e.name}`);
      }
    }
    const ingest = await Ingest.open({ store, dataDir });
    await ingest.close({ timeoutMs: 60_000 });
    assert.equal(ingest.stats().spooledEvents, 4000, `replay ${replay}`);
    assert.deepEqual(await spoolFiles(dataDir), [], `replay ${replay} leaves the spool empty`);
    await assertExactlyOnceInOrder(store, new Map([[a, 2500], [b, 1500]]));
  }
  const sessions = await store.db.select().from(amiSessions).orderBy(asc(amiSessions.id));
  assert.deepEqual(sessions.map((s) => s.id), [a, b]);
  await Deno.remove(backup, { recursive: true });
}

// --- PostgreSQL ----------------------------------------------------------------------

Deno.test("PostgreSQL: every fixture event is stored with fields equal to its parsed headers", async () => {
  await withPostgres("ingest_fixtures", async (url, dataDir) => {
    const store = await openStore({ url, dataDir });
    await fixturesRoundTrip(store, dataDir);
    await store.close();
  });
});

Deno.test("PostgreSQL: a NUL byte is stored as the text \\u0000 and the row flagged escaped", async () => {
  await withPostgres("ingest_nul", async (url, dataDir) => {
    const store = await openStore({ url, dataDir });
    await nulIsEscaped(store, dataDir);
    await store.close();
  });
});

Deno.test("PostgreSQL: rows the database refuses go to ami_events_rejected and the rest of the batch is stored", async () => {
  await withPostgres("ingest_rejected", async (url, dataDir) => {
    const store = await openStore({ url, dataDir });
    await refusedRowsAreSetAside(store, dataDir);
    await store.close();
  });
});

Deno.test("PostgreSQL: sessions and action runs go through the pipeline as upserts", async () => {
  await withPostgres("ingest_sessions", async (url, dataDir) => {
    const store = await openStore({ url, dataDir });
    await sessionsAndRunsAreUpserted(store, dataDir);
    await store.close();
  });
});

Deno.test("PostgreSQL: replaying the same spool twice stores every event exactly once", async () => {
  await withPostgres("ingest_replay", async (url, dataDir) => {
    const store = await openStore({ url, dataDir });
    await spoolReplayedTwice(store, dataDir);
    await store.close();
  });
});

Deno.test("PostgreSQL: a batch cut in the middle of its COPY and retried is stored exactly once", async () => {
  await withPostgres("ingest_cut_batch", async (url) => {
    const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
    const store = await openStore({ url: proxy.url(url), dataDir: "/nonexistent" });
    const writer = new BatchWriter(store);
    const sessionId = uuidv7();
    const batch = Array.from(
      { length: 20_000 },
      (_, i) => eventRecord("pbx1", sessionId, eventAt(i + 1)),
    );
    proxy.cutAfter(2 * 1024 * 1024); // about 3,000 rows into the COPY
    await assert.rejects(writer.write(batch), (error) => isTransientError(error));
    assert.equal(await eventCount(store), 0);
    // Retried: stored once. Retried again, as when the commit's acknowledgement is lost:
    // the unique key turns the COPY into the staging path, and nothing is added.
    await writer.write(batch);
    await writer.write(batch);
    await writer.write(batch.slice(5_000, 15_000));
    const expected = new Map([[sessionId, 20_000]]);
    // Cut anywhere (BEGIN, COPY, COMMIT): the retry stores each row once, and the
    // driver's trouble with closed sockets never escapes as an uncaught error.
    for (const offset of [100, 1_000, 10_000, 100_000, 1_000_000, 3_000_000]) {
      const id = uuidv7();
      const rows = Array.from({ length: 5_000 }, (_, i) => eventRecord("pbx2", id, eventAt(i + 1)));
      proxy.cutAfter(offset);
      for (let attempt = 0;; attempt++) {
        try {
          await writer.write(rows);
          break;
        } catch (error) {
          assert.ok(isTransientError(error) && attempt < 5, String(error));
        }
      }
      expected.set(id, 5_000);
    }
    await assertExactlyOnceInOrder(store, expected);
    await store.close();
    await proxy.close();
  });
});

Deno.test("PostgreSQL: cut for seconds while 20,000 events stream in, every event is stored once in seq order", async () => {
  await withPostgres("ingest_outage", async (url, dataDir) => {
    const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
    const store = await openStore({ url: proxy.url(url), dataDir });
    let sawDown = false;
    const ingest = await Ingest.open({ store, dataDir });
    const sessions = [uuidv7(), uuidv7()];
    sessions.forEach((id, i) =>
      ingest.sessionStarted({ id, server: `pbx${i}`, connectedAt: new Date() })
    );
    for (let n = 0; n < 20_000; n++) {
      const s = n % 2;
      ingest.event(`pbx${s}`, sessions[s], eventAt(Math.floor(n / 2) + 1));
      if (n === 5_000) proxy.cut(3_000);
      if (n % 50 === 49) {
        await new Promise((resolve) => setTimeout(resolve, 10)); // about 5,000 events/s
        sawDown ||= !ingest.stats().dbUp;
      }
    }
    await ingest.close({ timeoutMs: 60_000 });
    assert.ok(sawDown, "the outage was seen by the writer");
    const stats = ingest.stats();
    assert.equal(stats.storedEvents, 20_000);
    assert.equal(stats.droppedEvents, 0);
    assert.equal(stats.spoolBytes, 0);
    await assertExactlyOnceInOrder(store, new Map(sessions.map((id) => [id, 10_000])));
    await store.close();
    await proxy.close();
  });
});

Deno.test("PostgreSQL: a process killed with SIGKILL leaves a spool whose events the next start stores", async () => {
  await withPostgres("ingest_sigkill", async (url, dataDir) => {
    const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
    proxy.cut(600_000); // down while the first process runs
    const sessionId = uuidv7();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./ingest_child.ts", import.meta.url).pathname,
        proxy.url(url),
        dataDir,
        sessionId,
        "5000",
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    assert.equal(out.trim(), "durable 5000");
    child.kill("SIGKILL");
    assert.equal((await child.status).signal, "SIGKILL");
    await reader.cancel();
    assert.ok((await spoolFiles(dataDir)).length > 0);

    const store = await openStore({ url, dataDir });
    const ingest = await Ingest.open({ store, dataDir });
    await ingest.close({ timeoutMs: 60_000 });
    await assertExactlyOnceInOrder(store, new Map([[sessionId, 5000]]));
    assert.equal((await store.db.select().from(amiSessions)).length, 1);
    await store.close();
    await proxy.close();
  });
});

for (const path of ["parsed", "wire"] as const) {
  Deno.test(`PostgreSQL: with the spool full, events are held, then the newest dropped and counted per server (${path})`, async () => {
    await withPostgres(`ingest_cap_${path}`, async (url, dataDir) => {
      const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
      proxy.cut(600_000);
      const store = await openStore({ url: proxy.url(url), dataDir });
      const options: IngestOptions = {
        store,
        dataDir,
        spoolCapBytes: 64 * 1024,
        spoolSegmentBytes: 8 * 1024,
        queueBytes: 64 * 1024,
      };
      const ingest = await Ingest.open(options);
      const sessionId = ingestSession(ingest, "pbx1", 2000, path);
      const full = ingest.stats();
      assert.equal(full.spoolCapReached, true);
      assert.ok(full.droppedEvents > 0 && full.droppedEvents < 2000);
      assert.equal(full.servers.pbx1.dropped, full.droppedEvents);
      assert.equal(full.servers.pbx1.received, 2000);
      const kept = 2000 - full.droppedEvents;

      proxy.restore();
      await ingest.close({ timeoutMs: 60_000 });
      const after = ingest.stats();
      assert.equal(after.storedEvents, kept);
      assert.equal(after.spoolCapReached, false);
      // The oldest were kept: the stored history is contiguous, the gap is at its end.
      await assertExactlyOnceInOrder(store, new Map([[sessionId, kept]]));
      await store.close();
      await proxy.close();
    });
  });
}

Deno.test("PostgreSQL: with the database down, 100 kB events stay within the queue's byte bound, spill to the spool, and are all stored later", async () => {
  await withPostgres("ingest_queue_bytes", async (url, dataDir) => {
    const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
    proxy.cut(600_000);
    const store = await openStore({ url: proxy.url(url), dataDir });
    const queueBytes = 4 * 1024 * 1024;
    const allStored = Promise.withResolvers<void>();
    let stored = 0;
    const ingest = await Ingest.open({
      store,
      dataDir,
      queueBytes,
      onCommitted: (events) => {
        stored += events.length;
        if (stored === 500) allStored.resolve();
      },
    });
    const sessionId = uuidv7();
    ingest.sessionStarted({ id: sessionId, server: "pbx1", connectedAt: new Date() });
    const big = "x".repeat(100_000);
    let peak = 0;
    for (let seq = 1; seq <= 500; seq++) {
      const msg = eventAt(seq);
      ingest.event("pbx1", sessionId, { ...msg, headers: [...msg.headers, ["Payload", big]] });
      peak = Math.max(peak, ingest.stats().queueBytes);
      // As from a socket: a read's worth of events, then the event loop runs.
      if (seq % 20 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    const full = ingest.stats();
    assert.equal(full.queueLimitBytes, queueBytes);
    assert.ok(peak <= queueBytes, `${peak} bytes in memory, bound ${queueBytes}`);
    assert.ok(full.queueBytes > queueBytes / 2, "the queue is used up to its bound");
    assert.equal(full.queueSpilled, true);
    assert.ok(full.queueEvictions > 0);
    assert.equal(full.droppedEvents, 0);
    assert.ok(full.spoolBytes > 500 * 100_000);

    proxy.restore();
    // Wait for the writer to catch up (close() itself would stop at the first failed write).
    await allStored.promise;
    const after = ingest.stats();
    assert.equal(after.storedEvents, 500);
    assert.equal(after.queueSpilled, false);
    await ingest.close({ timeoutMs: 60_000 });
    await assertExactlyOnceInOrder(store, new Map([[sessionId, 500]]));
    await store.close();
    await proxy.close();
  });
});

Deno.test("PostgreSQL: events from the wire too large for a shared chunk of rows are stored whole, in order, between small ones", async () => {
  await withPostgres("ingest_wire_large", async (url, dataDir) => {
    const store = await openStore({ url, dataDir });
    const ingest = await Ingest.open({ store, dataDir });
    const sessionId = uuidv7();
    ingest.sessionStarted({ id: sessionId, server: "pbx1", connectedAt: new Date() });
    const encoder = new TextEncoder();
    // 300 kB needs more than a 1 MiB chunk at the wire path's worst case (4 bytes a byte).
    const sizes = [10, 300_000, 10, 10, 300_000, 300_000, 10];
    sizes.forEach((size, i) => {
      const text = formatAmiMessage([["Event", "UserEvent"], ["Payload", "é".repeat(size / 2)]]);
      const bytes = encoder.encode(text);
      assert.ok(ingest.eventBytes("pbx1", sessionId, bytes, 0, bytes.length, i + 1, Date.now()));
    });
    await ingest.close({ timeoutMs: 60_000 });
    const rows = await query<{ seq: number; n: number }>(
      store,
      sql`select seq::int as seq, length(fields->>'Payload')::int as n from ami_events order by id`,
    );
    assert.deepEqual([...rows], sizes.map((size, i) => ({ seq: i + 1, n: size / 2 })));
    await store.close();
  });
});

Deno.test("PostgreSQL: damaged spool lines, refused rows and the queue's bound are exported in /metrics", async () => {
  await withPostgres("ingest_metrics", async (url, dataDir) => {
    const store = await openStore({ url, dataDir });
    // A spool left by a crash: a good event, a line torn mid-write, a refused timestamp.
    const sessionId = uuidv7();
    const down = await openStore({ url: "postgres://postgres@127.0.0.1:1/none", dataDir });
    const writing = await Ingest.open({ store: down, dataDir });
    writing.event("pbx1", sessionId, eventAt(1));
    writing.event("pbx1", sessionId, { ...eventAt(2), receivedAt: 1e20 });
    await writing.close({ timeoutMs: 100 });
    await down.close();
    const [segment] = await spoolFiles(dataDir);
    await Deno.writeTextFile(`${dataDir}/spool/${segment}`, "0badc0de e1\tpbx1\ttorn", {
      append: true,
    });

    const metrics = new DaemonMetrics();
    const ingest = await Ingest.open({ store, dataDir, queueBytes: 1_000_000 });
    metrics.watchIngest(() => ingest.stats());
    await ingest.close({ timeoutMs: 60_000 });
    const text = await metrics.render();
    assert.match(text, /^dami_spool_corrupt_records_total 1$/m);
    assert.match(text, /^dami_events_rejected_total\{server="pbx1"\} 1$/m);
    assert.match(text, /^dami_events_stored_total\{server="pbx1"\} 1$/m);
    assert.match(text, /^dami_ingest_queue_limit_bytes 1000000$/m);
    assert.match(text, /^dami_ingest_queue_bytes 0$/m);
    assert.match(text, /^dami_ingest_queue_spilled 0$/m);
    assert.match(text, /^dami_log_lines_dropped_total \d+$/m);
    assert.match(text, /^dami_log_lines_suppressed_total \d+$/m);
    await store.close();
  });
});

Deno.test("PostgreSQL: migrations that fail for good once the database answers stop the writer at once, never retried as an outage", async () => {
  await withPostgres("ingest_migration", async (url, dataDir) => {
    // An object in the way of the first migration: retrying cannot fix that.
    const setup = await openStore({ url, dataDir, migrate: false });
    await setup.db.execute(sql`CREATE TABLE ami_sessions (x int)`);
    await setup.close();
    const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
    proxy.cut(600_000); // unreachable at start: the migrations wait for the first write
    const store = await openStore({ url: proxy.url(url), dataDir });
    const fatal = Promise.withResolvers<Error>();
    const ingest = await Ingest.open({ store, dataDir, onFatal: fatal.resolve });
    ingestSession(ingest, "pbx1", 100);
    await ingest.flush();
    proxy.restore();
    const error = await fatal.promise;
    assert.ok(error instanceof MigrationError, String(error));
    assert.match(error.message, /^cannot migrate .*: 42P07 /);
    const stats = ingest.stats();
    assert.equal(stats.dbUp, false);
    assert.match(stats.lastError ?? "", /cannot migrate/);
    assert.equal(isTransientError(error), false);
    await ingest.close({ timeoutMs: 60_000 });
    assert.equal(ingest.stats().storedEvents, 0);
    assert.ok(ingest.stats().spoolBytes > 0, "every record stays in the spool");
    await store.close();
    await proxy.close();
  });
});

// --- PGlite --------------------------------------------------------------------------

Deno.test("PGlite: the same pipeline behaves the same on the embedded store", async (t) => {
  const dataDir = await Deno.makeTempDir();
  const store = await openStore({ dataDir });
  try {
    await t.step(
      "every fixture event is stored with fields equal to its parsed headers",
      () => fixturesRoundTrip(store, dataDir),
    );
    await t.step(
      "a NUL byte is stored as the text \\u0000 and the row flagged escaped",
      () => nulIsEscaped(store, dataDir),
    );
    await t.step(
      "rows the database refuses go to ami_events_rejected",
      () => refusedRowsAreSetAside(store, dataDir),
    );
    await t.step(
      "sessions and action runs go through the pipeline as upserts",
      () => sessionsAndRunsAreUpserted(store, dataDir),
    );
    await t.step("replaying the same spool twice stores every event exactly once", async () => {
      await store.db.execute(sql`TRUNCATE ami_events, ami_sessions`);
      await spoolReplayedTwice(store, dataDir);
    });
  } finally {
    await store.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("events given after close() are counted as dropped, never silently lost", async () => {
  const dataDir = await Deno.makeTempDir();
  const store = await openStore({ url: "postgres://postgres@127.0.0.1:1/none", dataDir });
  const ingest = await Ingest.open({ store, dataDir });
  await ingest.close({ timeoutMs: 100 });
  ingest.event("pbx1", uuidv7(), eventAt(1));
  assert.equal(ingest.stats().droppedEvents, 1);
  assert.equal(ingest.stats().servers.pbx1.dropped, 1);
  await store.close();
  await Deno.remove(dataDir, { recursive: true });
});
