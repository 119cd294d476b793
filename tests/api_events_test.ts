/**
 * `GET /api/events` over real HTTP on real PostgreSQL (and PGlite): resume exactness
 * with many random disconnects while events keep being committed, the hand-over when a
 * lower id commits after a higher one, filters, the slow-reader cut-off, reset past the
 * log, heartbeats, and `curl -N` as a user types it.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { seededRandom } from "./fixtures.ts";
import { type ReadSide, startReadSide, TOKEN } from "./api_harness.ts";
import { fixtureEvents, insertMessages, insertSession, loadFixtureEvents } from "./load_events.ts";
import { parseSse, SseReader } from "./sse_client.ts";
import { encodeMessages, eventMessage } from "../daemon/api/event_tail.ts";

/** Loads a fixture as a new session of `server` and wakes the tail. */
async function load(side: ReadSide, name: Parameters<typeof fixtureEvents>[0], server = "pbx1") {
  await loadFixtureEvents(side.store.db, name, { server });
  side.handle.wake();
}

/** Waits until the tail holds rows back behind a hole (the open writer's id). */
async function holeSeen(side: ReadSide): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!side.api.tail.waitingOnHole) {
    assert.ok(Date.now() < deadline, "the stream never held back rows above the open id");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Reads `ami` messages until `until` says stop; returns their ids. */
async function readIds(
  reader: SseReader,
  until: (ids: number[]) => boolean,
): Promise<number[]> {
  const ids: number[] = [];
  while (!until(ids)) {
    const message = await reader.next();
    if (message === undefined) break;
    if (message.event === "ami") ids.push(Number(message.id));
  }
  return ids;
}

for (const kind of ["postgres", "pglite"] as const) {
  Deno.test(`${kind}: a client that disconnects at random points and resumes sees every id once, in order`, async () => {
    const side = await startReadSide({
      kind,
      before: async (store) => {
        await loadFixtureEvents(store.db, "sip-calls");
        await loadFixtureEvents(store.db, "queue-call");
      },
    });
    try {
      const random = seededRandom(kind === "postgres" ? 11 : 12);
      // More sessions are committed while the client replays and follows.
      const more = ["originate-local", "lists-and-errors", "sip-calls", "queue-call"] as const;
      const writer = (async () => {
        for (const name of more) {
          await load(side, name, "pbx2");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      let writing = true;
      writer.finally(() => writing = false);
      const seen: number[] = [];
      let reconnects = 0;
      for (;;) {
        const last = seen.length === 0 ? "0" : String(seen[seen.length - 1]);
        const response = await side.get("/api/events", { "last-event-id": last });
        assert.equal(response.status, 200);
        const reader = new SseReader(response);
        const want = 1 + Math.floor(random() * 25);
        const target = writing ? undefined : (await side.ids()).at(-1);
        const got = await readIds(
          reader,
          (ids) => ids.length >= want || (target !== undefined && ids.at(-1) === target),
        );
        await reader.cancel();
        seen.push(...got);
        reconnects++;
        if (!writing && seen.at(-1) === (await side.ids()).at(-1)) break;
      }
      await writer;
      assert.ok(reconnects > 30, `only ${reconnects} reconnects`);
      assert.deepEqual(seen, await side.ids());
    } finally {
      await side.close();
    }
  });
}

Deno.test("a lower id committed after a higher one is delivered first, and a rolled-back id is skipped", async () => {
  const side = await startReadSide({
    before: (store) => loadFixtureEvents(store.db, "login-ping-logoff").then(() => {}),
  });
  const a = postgres(side.url!, { max: 1, onnotice: () => {} });
  const b = postgres(side.url!, { max: 1, onnotice: () => {} });
  try {
    const session = crypto.randomUUID();
    let seq = 0;
    const insert = (sql: postgres.Sql | postgres.ReservedSql) =>
      sql`insert into ami_events (server, session_id, seq, received_at, event, fields)
          values ('pbx9', ${session}, ${++seq}, now(), 'UserEvent', '{"Event":"UserEvent"}')
          returning id::int as id`.then((rows) => rows[0].id as number);
    const response = await side.get("/api/events"); // live from now
    const reader = new SseReader(response);
    assert.equal((await reader.next())?.comments.length, 0); // retry: line

    // A takes the lower id and stays open while B commits the higher one.
    const ta = await a.reserve();
    await ta`begin`;
    const low = await insert(ta);
    const high = await insert(b);
    assert.ok(low < high);
    side.handle.wake();
    await holeSeen(side);
    await ta`commit`;
    ta.release();
    side.handle.wake();
    assert.deepEqual(await readIds(reader, (ids) => ids.length === 2), [low, high]);

    // A rolls back: its id never appears, and the stream goes on past the hole.
    const tr = await a.reserve();
    await tr`begin`;
    const lost = await insert(tr);
    const next = await insert(b);
    side.handle.wake();
    await holeSeen(side);
    await tr`rollback`;
    tr.release();
    side.handle.wake();
    assert.deepEqual(await readIds(reader, (ids) => ids.length === 1), [next]);
    assert.ok(lost < next);
    await reader.cancel();
    assert.deepEqual(await side.ids("server = 'pbx9'"), [low, high, next]);
  } finally {
    await a.end();
    await b.end();
    await side.close();
  }
});

Deno.test("filters by server, event names and call, in replay and live alike", async () => {
  const side = await startReadSide({
    before: async (store) => {
      await loadFixtureEvents(store.db, "sip-calls", { server: "pbx1" });
      await loadFixtureEvents(store.db, "queue-call", { server: "pbx2" });
    },
  });
  try {
    const cases: [string, string][] = [
      ["server=pbx2", "server = 'pbx2'"],
      ["event=hangup,Newchannel", "event in ('Hangup', 'Newchannel')"],
      ["call=1795663698.47", "(linkedid = '1795663698.47' or uniqueid = '1795663698.47')"],
      ["server=pbx1&event=Hangup", "server = 'pbx1' and event = 'Hangup'"],
    ];
    for (const [query, where] of cases) {
      const replayed = await side.ids(`id <= ${side.api.tail.horizon} and ${where}`);
      assert.ok(replayed.length > 0, query);
      const response = await side.get(`/api/events?since=0&${query}`);
      const reader = new SseReader(response);
      // The same sessions committed again after the client connected: served live.
      await load(side, "sip-calls", "pbx1");
      await load(side, "queue-call", "pbx2");
      const all = await side.ids(where);
      const got = await readIds(reader, (ids) => ids.length === all.length);
      await reader.cancel();
      assert.deepEqual(got, all, query);
      assert.ok(all.length > replayed.length, query);
    }
  } finally {
    await side.close();
  }
});

Deno.test("/api/* needs the bearer token; a refusal leaks nothing; /healthz stays open", async () => {
  const side = await startReadSide({
    before: (store) => loadFixtureEvents(store.db, "login-ping-logoff").then(() => {}),
  });
  try {
    const bodies: string[] = [];
    for (
      const headers of [{}, { authorization: "Bearer wrong-token-0123456789abcdef" }, {
        authorization: `Basic ${btoa(`dami:${TOKEN}`)}`,
      }, { authorization: `Bearer ${TOKEN}x` }] as Record<string, string>[]
    ) {
      for (const path of ["/api/events?since=0", "/api/live", "/api/queries", "/api/nope"]) {
        const response = await fetch(`${side.base}${path}`, { headers });
        assert.equal(response.status, 401, `${path} ${JSON.stringify(headers)}`);
        assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="dami"');
        const body = await response.text();
        assert.ok(!body.includes(TOKEN.slice(0, 8)), body);
        bodies.push(body);
      }
    }
    assert.equal(new Set(bodies).size, 1, "every refusal has the same body");
    assert.equal((await fetch(`${side.base}/healthz`)).status, 200);
    const ok = await side.get("/api/queries");
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
  } finally {
    await side.close();
  }
});

Deno.test("a client that reads too slowly is disconnected, then resumes with nothing lost", async () => {
  const side = await startReadSide({
    api: { sse: { maxBufferedBytes: 64 * 1024 }, tail: { pollMs: 50, ringBytes: 1024 * 1024 } },
  });
  try {
    const start = side.api.tail.horizon;
    const controller = new AbortController();
    const response = await side.get("/api/events", {}, controller.signal);
    assert.equal(side.api.streams, 1);
    // Fat events committed while the client does not read: the kernel's socket buffers
    // fill, then the stream's own 64 KiB; when the 1 MiB ring has moved past it, the
    // daemon cuts it.
    const session = crypto.randomUUID();
    await insertSession(side.store.db, {
      id: session,
      server: "pbx1",
      connectedAtMs: Date.now(),
      disconnectedAtMs: null,
    });
    const fat = "x".repeat(8000);
    let seq = 0;
    while (side.api.streams > 0) {
      await insertMessages(
        side.store.db,
        "pbx1",
        session,
        Array.from({ length: 200 }, () => ({
          message: {
            kind: "event" as const,
            headers: [["Event", "UserEvent"], ["Padding", fat]] as [string, string][],
            seq: ++seq,
            receivedAt: Date.now(),
          },
          receivedAtMs: Date.now(),
        })),
      );
      side.handle.wake();
      assert.ok(seq < 20_000, "the slow client was never disconnected");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // What reached the client before the cut, then a resume from its last complete id.
    const reader = new SseReader(response);
    const first: number[] = [];
    let cut = false;
    try {
      for (let m = await reader.next(); m !== undefined; m = await reader.next()) {
        if (m.event === "ami") first.push(Number(m.id));
      }
    } catch {
      // The connection was cut mid-message: the messages before it are whole.
      cut = true;
    }
    assert.ok(cut, "the stream ended with an error, not a clean end");
    controller.abort();
    const all = await side.ids(`id > ${start}`);
    assert.ok(first.length < all.length, "the cut happened before the end");
    const resumed = await side.get("/api/events", {
      "last-event-id": String(first.at(-1) ?? start),
    });
    const rest = new SseReader(resumed);
    const second = await readIds(rest, (ids) => ids.at(-1) === all.at(-1));
    await rest.cancel();
    assert.deepEqual([...first, ...second], all);
  } finally {
    await side.close();
  }
});

Deno.test("a since older than the retained log gets event: reset with the oldest id, then the log", async () => {
  const side = await startReadSide({
    before: (store) => loadFixtureEvents(store.db, "sip-calls").then(() => {}),
  });
  try {
    const ids = await side.ids();
    const cut = ids[10];
    await side.store.db.execute(
      (await import("drizzle-orm")).sql`delete from ami_events where id < ${cut}`,
    );
    const kept = await side.ids();
    const reader = new SseReader(await side.get("/api/events?since=3"));
    await reader.next(); // retry:
    const reset = await reader.next();
    assert.equal(reset?.event, "reset");
    assert.deepEqual(JSON.parse(reset!.data), { oldest_id: cut, requested: 3 });
    assert.deepEqual(await readIds(reader, (got) => got.length === kept.length), kept);
    await reader.cancel();
    // A since newer than anything held: the database was replaced.
    const future = new SseReader(await side.get("/api/events?since=99999999"));
    await future.next();
    assert.equal((await future.next())?.event, "reset");
    await future.cancel();
    // since=0 means everything held, without a reset.
    const all = new SseReader(await side.get("/api/events?since=0"));
    await all.next();
    assert.equal((await all.next())?.event, "ami");
    await all.cancel();
  } finally {
    await side.close();
  }
});

Deno.test("an idle stream gets a keep-alive comment; bad parameters are a 400 naming them", async () => {
  const side = await startReadSide({ api: { sse: { heartbeatMs: 30 } } });
  try {
    const reader = new SseReader(await side.get("/api/events"));
    await reader.next(); // retry:
    assert.deepEqual((await reader.next())?.comments, ["keepalive"]);
    await reader.cancel();
    for (
      const [query, param] of [
        ["since=abc", "since"],
        ["from=yesterdayish", "from"],
        ["sever=pbx1", "sever"],
        ["from=2026-11-01&tz=Mars/Olympus", "tz"],
      ]
    ) {
      const response = await side.get(`/api/events?${query}`);
      assert.equal(response.status, 400, query);
      assert.equal((await response.json()).param, param, query);
    }
    const bad = await side.get("/api/events", { "last-event-id": "12; drop" });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).param, "Last-Event-ID");
  } finally {
    await side.close();
  }
});

Deno.test("?from=<time> starts at the first event received at or after it", async () => {
  const side = await startReadSide({
    before: (store) => loadFixtureEvents(store.db, "sip-calls").then(() => {}),
  });
  try {
    const events = fixtureEvents("sip-calls");
    const at = new Date(events[50].receivedAtMs).toISOString();
    const expected = await side.ids(`received_at >= '${at}'`);
    const reader = new SseReader(await side.get(`/api/events?from=${at}`));
    assert.deepEqual(await readIds(reader, (ids) => ids.length === expected.length), expected);
    await reader.cancel();
  } finally {
    await side.close();
  }
});

Deno.test("curl -N with the bearer token streams the log as a user types it", async () => {
  const side = await startReadSide({
    before: (store) => loadFixtureEvents(store.db, "sip-calls").then(() => {}),
  });
  try {
    const expected = await side.ids();
    const curl = new Deno.Command("curl", {
      args: ["-N", "-s", "-H", `Authorization: Bearer ${TOKEN}`, `${side.base}/api/events?since=0`],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let text = "";
    const decoder = new TextDecoder();
    const reader = curl.stdout.getReader();
    let ids: number[] = [];
    while (ids.length < expected.length) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      ids = parseSse(text).messages.filter((m) => m.event === "ami").map((m) => Number(m.id));
    }
    curl.kill();
    await reader.cancel();
    await curl.status;
    assert.deepEqual(ids, expected);
    const first = JSON.parse(parseSse(text).messages.find((m) => m.event === "ami")!.data);
    assert.deepEqual(Object.keys(first), [
      "id",
      "server",
      "session_id",
      "seq",
      "received_at",
      "event",
      "fields",
    ]);
    assert.match(first.received_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$/);
  } finally {
    await side.close();
  }
});

Deno.test("closing the server ends every stream: a reading client sees a clean end", async () => {
  const side = await startReadSide();
  const reading = new SseReader(await side.get("/api/events?since=0"));
  await reading.next(); // retry:
  const closed = side.close();
  assert.equal(await reading.next(), undefined);
  await closed;
});

Deno.test("a tail batch's messages are encoded once, and each event's slice is its message", () => {
  const events = [1, 99, 100_000, 12_345_678_901].map((id, i) => ({
    id,
    server: "pbx1",
    session_id: "s",
    event: "VarSet",
    uniqueid: null,
    linkedid: null,
    // Multi-byte characters shift every later message's byte offset.
    data: JSON.stringify({ id, fields: { Value: ["é", "日本", "😀", "plain"][i] } }),
  }));
  const { bytes, offsets } = encodeMessages(events);
  const decoder = new TextDecoder();
  assert.equal(offsets.length, events.length + 1);
  assert.equal(offsets[events.length], bytes.byteLength);
  events.forEach((event, i) => {
    assert.equal(
      decoder.decode(bytes.subarray(offsets[i], offsets[i + 1])),
      eventMessage(event),
    );
  });
  assert.deepEqual(encodeMessages([]), { bytes: new Uint8Array(0), offsets: new Uint32Array(1) });
});

Deno.test("the tail keeps its ring only while a stream client follows; a client that comes later misses nothing", async () => {
  const side = await startReadSide();
  try {
    const advancedPast = async (id: number) => {
      while (side.api.tail.horizon < id) await side.api.tail.advanced();
    };
    // No client: batches reach the listeners (the live state) but the ring stays empty.
    await load(side, "sip-calls");
    await advancedPast(Math.max(...await side.ids()));
    assert.equal(side.api.tail.ringBytes, 0);
    // A client that started before those events reads them from the store, then live.
    const response = await side.get("/api/events?since=0");
    const reader = new SseReader(response);
    const first = await side.ids();
    assert.deepEqual(await readIds(reader, (ids) => ids.length >= first.length), first);
    await load(side, "queue-call");
    const all = await side.ids();
    await advancedPast(all[all.length - 1]);
    assert.ok(side.api.tail.ringBytes > 0, "the ring keeps batches while the client follows");
    assert.deepEqual(
      await readIds(reader, (ids) => ids.length >= all.length - first.length),
      all.slice(first.length),
    );
    await reader.cancel();
    // Gone: the next batch empties the ring.
    for (const deadline = Date.now() + 10_000; side.api.tail.ringBytes > 0;) {
      assert.ok(Date.now() < deadline, "the ring was never let go");
      await load(side, "originate-local");
      await side.api.tail.advanced();
    }
  } finally {
    await side.close();
  }
});
