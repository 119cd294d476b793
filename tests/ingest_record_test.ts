/**
 * The event row is written byte by byte (`fastRow` in `daemon/ingest_record.ts`); the
 * string path (`slowRow`) is the reference. Both must give the same bytes for every
 * message, recorded or hostile.
 */
import assert from "node:assert/strict";
import { AmiParser } from "../dami/parser.ts";
import type { AmiMessage } from "../dami/message.ts";
import {
  decodeRecord,
  decodeRecordBytes,
  encodeRecord,
  eventRecord,
  eventRecordFromWire,
  eventRowText,
  RowArena,
  slowRow,
  wireRowHead,
} from "../daemon/ingest_record.ts";
import { CALL_FIXTURE_NAMES, FIXTURE_NAMES, loadFixture, seededRandom } from "./fixtures.ts";

const encoder = new TextEncoder();
const SESSION = "01930000-0000-7000-8000-000000000001";

function expected(server: string, session: string, msg: AmiMessage): Uint8Array {
  return encoder.encode(slowRow(server, session, msg) + "\n");
}

function message(headers: [string, string][], extra: Partial<AmiMessage> = {}): AmiMessage {
  return { kind: "event", headers, seq: 42, receivedAt: Date.UTC(2026, 10, 30), ...extra };
}

Deno.test("every message of every recorded fixture: the byte row equals the string row", () => {
  let compared = 0;
  for (const name of [...FIXTURE_NAMES, ...CALL_FIXTURE_NAMES]) {
    const parser = new AmiParser({ expectBanner: true });
    for (const msg of parser.push(loadFixture(name).inBytes)) {
      const record = eventRecord("pbx1", SESSION, msg);
      assert.deepEqual(record.bytes, expected("pbx1", SESSION, msg), `${name}: ${msg.seq}`);
      compared++;
    }
  }
  assert.ok(compared > 1000, `only ${compared} messages`);
});

Deno.test("hostile text: escapes, control characters, quotes, non-ASCII, lone surrogates, U+0000, repeated keys", () => {
  const pieces = [
    "a",
    "Plain value",
    '"',
    "\\",
    "\t",
    "\n",
    "\r",
    "\b",
    "\f",
    "\u0001",
    "\u001f",
    "\u007f",
    "\u0000",
    "é",
    "ü",
    "€",
    "中",
    "😀",
    "\ud800",
    "\udfff",
    "\ud83d",
    "\ude00x",
    "\\N",
    "\\t",
    "{",
    "}",
    ":",
    ",",
    " ",
    "__proto__",
    "Event",
    "event",
    "UniqueID",
    "uniqueid",
    "Linkedid",
    "ActionID",
    "CHANNEL",
    "Lin\u212aedid", // KELVIN SIGN: lowercases to "k", yet not an ASCII match
  ];
  const random = seededRandom(11);
  const text = (max: number) => {
    let s = "";
    const n = Math.floor(random() * max);
    for (let i = 0; i < n; i++) s += pieces[Math.floor(random() * pieces.length)];
    return s;
  };
  for (let round = 0; round < 3_000; round++) {
    const headers: [string, string][] = [];
    const n = 1 + Math.floor(random() * 8);
    const many = random() < 0.02 ? 150 : 0; // more headers than the byte path's key table
    for (let i = 0; i < n + many; i++) headers.push([text(3), text(5)]);
    const server = random() < 0.1 ? text(3) : "pbx1";
    const session = random() < 0.05 ? text(2) : SESSION;
    const msg = message(headers, {
      rawBytes: random() < 0.1 ? encoder.encode(text(4)) : undefined,
      receivedAt: random() < 0.02 ? NaN : Date.UTC(2026, 10, 30) + round,
    });
    const record = eventRecord(server, session, msg);
    const want = new TextDecoder().decode(expected(server, session, msg));
    assert.equal(
      new TextDecoder().decode(record.bytes),
      want,
      `seed 11, round ${round}: ${JSON.stringify(headers)}`,
    );
    assert.deepEqual(record.bytes, expected(server, session, msg));
  }
});

Deno.test("a row is the same after a trip through the spool line format", () => {
  const msg = message([["Event", "Hangup"], ["Channel", 'PJSIP/6001 "x"\t\\'], [
    "Uniqueid",
    "1.1",
  ]]);
  const record = eventRecord("pbx1", SESSION, msg);
  const back = decodeRecord(encodeRecord(record));
  assert.equal(back.type, "event");
  assert.deepEqual(back, record);
  assert.equal(eventRowText(record), slowRow("pbx1", SESSION, msg));
});

Deno.test("rows encoded one after another are contiguous in memory; a huge one has its own chunk", () => {
  const a = eventRecord("pbx1", SESSION, message([["Event", "A"]]));
  const b = eventRecord("pbx1", SESSION, message([["Event", "B"]]));
  if (a.bytes.buffer === b.bytes.buffer) {
    assert.equal(a.bytes.byteOffset + a.bytes.length, b.bytes.byteOffset);
  }
  const huge = message([["Event", "Big"], ["Data", "x".repeat(3e6)]]);
  const big = eventRecord("pbx1", SESSION, huge);
  assert.deepEqual(big.bytes, expected("pbx1", SESSION, huge));
  assert.equal(
    big.bytes.buffer.byteLength,
    big.bytes.length,
    "the huge row is copied out at its size",
  );
  const c = eventRecord("pbx1", SESSION, message([["Event", "C"]]));
  assert.notEqual(c.bytes.buffer, big.bytes.buffer);
  // Earlier rows are never overwritten by later ones.
  assert.equal(eventRowText(a).split("\t")[4], "A");
  assert.equal(eventRowText(b).split("\t")[4], "B");
});

/** The row the parser's path makes of one message's wire bytes, or undefined if it is no event. */
function parsedRow(server: string, session: string, wire: Uint8Array, seq: number, at: number) {
  const parser = new AmiParser({ expectBanner: false, now: () => at });
  const [msg, ...rest] = parser.push(wire);
  if (msg?.kind !== "event" || rest.length > 0) return undefined;
  return expected(server, session, { ...msg, seq });
}

Deno.test("from the wire: every recorded event taken without parsing gives the parser's row", () => {
  const head = wireRowHead("pbx1", SESSION)!;
  let taken = 0;
  let declined = 0;
  for (const name of [...FIXTURE_NAMES, ...CALL_FIXTURE_NAMES]) {
    const parser = new AmiParser({
      expectBanner: true,
      eventBytes: (bytes, start, end, seq, receivedAt) => {
        const wire = bytes.slice(start, end);
        const record = eventRecordFromWire("pbx1", head, bytes, start, end, seq, receivedAt);
        if (record === undefined) {
          declined++;
          return false;
        }
        assert.deepEqual(record.bytes, parsedRow("pbx1", SESSION, wire, seq, receivedAt), name);
        taken++;
        return true;
      },
    });
    for (const chunk of loadFixture(name).inChunks) parser.push(chunk);
  }
  assert.ok(taken > 1000, `taken ${taken}, declined ${declined}`);
  assert.ok(taken > 10 * declined, `taken ${taken}, declined ${declined}`);
});

Deno.test("from the wire: hostile bytes are either declined or give the parser's row", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const pieces: Uint8Array[] = [
    "a",
    "Value",
    '"',
    "\\",
    "\t",
    "\r",
    "\u0001",
    "\u007f",
    "é",
    "Ü",
    "€",
    "😀",
    "\ufeff",
    ":",
    ": ",
    " ",
    "",
    "\\N",
    "ActionID",
    "actionid",
    "UNIQUEID",
    "Linkedid",
    "channel",
    "Event",
    "Lin\u212aedid",
    "\u0000",
  ].map(enc);
  // Not UTF-8: a stray continuation, overlong forms, a surrogate, past U+10FFFF, cut short.
  const invalid = [
    [0x80],
    [0xff],
    [0xc0, 0x80],
    [0xc1, 0xbf],
    [0xe0, 0x9f, 0x80],
    [
      0xed,
      0xa0,
      0x80,
    ],
    [0xf0, 0x8f, 0x80, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0xf5, 0x80, 0x80, 0x80],
    [0xe2, 0x82],
    [
      0xf0,
      0x9f,
      0x98,
    ],
  ].map((b) => new Uint8Array(b));
  const random = seededRandom(23);
  const pick = () =>
    random() < 0.03
      ? invalid[Math.floor(random() * invalid.length)]
      : pieces[Math.floor(random() * pieces.length)];
  const text = (max: number) => {
    const parts = Array.from({ length: Math.floor(random() * max) }, pick);
    return concat(parts);
  };
  const head = wireRowHead("pbx1", SESSION)!;
  let taken = 0;
  let withUtf8 = 0;
  for (let round = 0; round < 8_000; round++) {
    const eol = enc(random() < 0.2 ? "\n" : "\r\n");
    const parts = [enc("Event: "), text(3), eol];
    const n = Math.floor(random() * 8);
    for (let i = 0; i < n; i++) {
      if (random() < 0.05) parts.push(text(4), eol);
      else parts.push(text(2), enc(random() < 0.8 ? ": " : ":"), text(4), eol);
    }
    parts.push(eol);
    const bytes = concat(parts);
    const at = Date.UTC(2026, 10, 30) + round;
    const want = parsedRow("pbx1", SESSION, bytes, round + 1, at);
    const record = eventRecordFromWire("pbx1", head, bytes, 0, bytes.length, round + 1, at);
    // A blank line drawn inside makes two messages: the parser never offers those bytes.
    if (record === undefined || want === undefined) continue;
    taken++;
    if (bytes.some((b) => b >= 0x80)) withUtf8++;
    assert.equal(
      new TextDecoder().decode(record.bytes),
      new TextDecoder().decode(want),
      `seed 23, round ${round}: ${JSON.stringify([...bytes])}`,
    );
    assert.deepEqual(record.bytes, want);
  }
  assert.ok(taken > 500, `only ${taken} taken`);
  assert.ok(withUtf8 > 100, `only ${withUtf8} taken with UTF-8`);
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("the parser's event sink: seqs stay contiguous, declined events are parsed, responses never offered", () => {
  for (const name of FIXTURE_NAMES) {
    const plain = new AmiParser({ expectBanner: true }).push(loadFixture(name).inBytes);
    const seen: { seq: number; text: string }[] = [];
    const random = seededRandom(5);
    const parser = new AmiParser({
      expectBanner: true,
      eventBytes: (bytes, start, end, seq) => {
        const text = new TextDecoder().decode(bytes.subarray(start, end));
        assert.ok(text.startsWith("Event:"), text);
        if (random() < 0.3) return false;
        seen.push({ seq, text });
        return true;
      },
    });
    const out: AmiMessage[] = [];
    // In pieces, as socket reads come.
    const bytes = loadFixture(name).inBytes;
    for (let at = 0; at < bytes.length;) {
      const size = 1 + Math.floor(random() * 3000);
      parser.push(bytes.subarray(at, at + size), out);
      at += size;
    }
    assert.equal(parser.eventCount, plain.filter((m) => m.kind === "event").length, name);
    // Every message is either returned or was taken, in order, with the same seq.
    const taken = new Map(seen.map((s) => [s.seq, s]));
    const returned = out.map((m) => `${m.kind}:${m.seq}`);
    const expectedReturned = plain
      .filter((m) => !(m.kind === "event" && taken.has(m.seq)))
      .map((m) => `${m.kind}:${m.seq}`);
    assert.deepEqual(returned, expectedReturned, name);
    for (const m of plain) {
      const t = m.kind === "event" ? taken.get(m.seq) : undefined;
      if (t) assert.equal(t.text.split(/\r?\n/)[0], `Event: ${m.headers[0][1]}`, name);
    }
  }
});

Deno.test("the parser's event sink: an Asterisk 13 command body with blank lines is parsed whole, events around it offered", () => {
  const wire = new TextEncoder().encode(
    "Event: A\r\nX: 1\r\n\r\n" +
      "Response: Follows\r\nPrivilege: Command\r\nActionID: 7\r\nline 1\r\n\r\nEvent: Not one\r\n\r\n" +
      "--END COMMAND--\r\n\r\nEvent: B\r\nX: 2\r\n\r\n",
  );
  const plain = new AmiParser({ expectBanner: false, now: () => 1 }).push(wire);
  const offered: number[] = [];
  const out = new AmiParser({
    expectBanner: false,
    now: () => 1,
    eventBytes: (_bytes, _start, _end, seq) => {
      offered.push(seq);
      return true;
    },
  }).push(wire);
  // After the body began, the rest of that read is parsed as without a sink.
  assert.deepEqual(offered, [1]);
  assert.deepEqual(out, plain.slice(1));
  assert.ok(out[0].headers.some(([k, v]) => k === "Output" && v === "Event: Not one"));
});

Deno.test("a spool line read back as bytes gives the record the text path gives, and the same errors", () => {
  const encoder = new TextEncoder();
  const lines: string[] = [];
  for (const name of FIXTURE_NAMES) {
    for (const msg of new AmiParser({ expectBanner: true }).push(loadFixture(name).inBytes)) {
      lines.push(encodeRecord(eventRecord("pbx\t1 é", SESSION, msg)));
    }
  }
  // Servers and receive times that repeat, change and come back (decoding remembers the last).
  for (let i = 0; i < 60; i++) {
    const server = ["pbx1", "pbx2", "pbx\\1", "pbx1"][i % 4];
    const receivedAt = Date.UTC(2026, 10, 30) + [0, 0, 7, 0, 1234, 1234][i % 6];
    lines.push(
      encodeRecord(eventRecord(server, SESSION, message([["Event", "C"]], { receivedAt }))),
    );
  }
  lines.push(encodeRecord(eventRecord("pb\u0000x", SESSION, message([["Event", "A\u0000"]]))));
  lines.push(
    encodeRecord(
      eventRecord("pbx1", SESSION, message([["Event", "B"]], { rawBytes: encoder.encode("\xff") })),
    ),
  );
  lines.push(
    encodeRecord({
      type: "session_start",
      session: { id: SESSION, server: "pbx1", connectedAt: new Date(5) },
    }),
  );
  for (const line of lines) {
    assert.deepEqual(
      decodeRecordBytes(encoder.encode(line)),
      decodeRecord(line),
      line.slice(0, 60),
    );
  }
  const row = lines[0].slice(3);
  for (
    const bad of [
      `e9\t${row}`,
      `e1${row}`,
      `\t${row}`,
      `toString\t${row}`,
      "e1\t",
      "e1\t\\N\tx",
      "中文中文中文中文中文\tx",
      "{not json",
    ]
  ) {
    let expectedError = "";
    try {
      decodeRecord(bad);
    } catch (error) {
      expectedError = String(error);
    }
    assert.notEqual(expectedError, "", bad);
    assert.throws(
      () => decodeRecordBytes(encoder.encode(bad)),
      (error) => String(error) === expectedError,
    );
  }
});

Deno.test("a recycling arena reuses a chunk only once every row of it is released", () => {
  const arena = new RowArena({ recycle: true });
  const rows: Uint8Array[] = [];
  // ~3 chunks of rows.
  for (let i = 0; i < 7_000; i++) {
    rows.push(
      eventRecord("pbx1", SESSION, message([["Event", `E${i}`], ["Data", "x".repeat(400)]]), arena)
        .bytes,
    );
  }
  const first = rows[0].buffer;
  const inFirst = rows.filter((r) => r.buffer === first);
  const copies = rows.map((r) => r.slice());
  // All but one row of the first chunk released: nothing to reuse yet.
  for (const r of inFirst.slice(1)) arena.release(r);
  assert.equal(arena.freeChunks, 0);
  for (let i = 0; i < 3_000; i++) eventRecord("pbx1", SESSION, message([["Event", "N"]]), arena);
  rows.forEach((r, i) => assert.deepEqual(r, copies[i], `row ${i} changed`));
  // The last one: the chunk is free, and the next chunk begun is that one.
  arena.release(inFirst[0]);
  assert.equal(arena.freeChunks, 1);
  let reused = false;
  for (let i = 0; i < 10_000 && !reused; i++) {
    const row =
      eventRecord("pbx1", SESSION, message([["Event", "M"], ["Data", "y".repeat(400)]]), arena)
        .bytes;
    reused = row.buffer === first;
  }
  assert.ok(reused, "the free chunk was reused");
  // Rows of other chunks, never released, are intact.
  rows.forEach((r, i) => {
    if (r.buffer !== first) assert.deepEqual(r, copies[i], `row ${i} changed`);
  });
});

Deno.test("an arena that does not recycle never reuses a chunk", () => {
  const arena = new RowArena();
  const a = eventRecord("pbx1", SESSION, message([["Event", "A"]]), arena).bytes;
  const copy = a.slice();
  arena.release(a);
  for (let i = 0; i < 5_000; i++) {
    eventRecord("pbx1", SESSION, message([["Event", "B"], ["D", "z".repeat(500)]]), arena);
  }
  assert.equal(arena.freeChunks, 0);
  assert.deepEqual(a, copy);
});

Deno.test("from the wire: each kind of malformed UTF-8 is declined, each well-formed sequence taken", () => {
  const head = wireRowHead("pbx1", SESSION)!;
  const wire = (value: number[]) =>
    new Uint8Array([
      ...new TextEncoder().encode("Event: X\r\nName: a"),
      ...value,
      0x0d,
      0x0a,
      0x0d,
      0x0a,
    ]);
  const take = (value: number[]) => {
    const bytes = wire(value);
    return eventRecordFromWire("pbx1", head, bytes, 0, bytes.length, 1, 0);
  };
  const malformed = [
    [0x80],
    [0xbf],
    [0xff],
    [0xc0, 0x80],
    [0xc1, 0xbf],
    [0xe0, 0x9f, 0xbf],
    [0xed, 0xa0, 0x80],
    [0xed, 0xbf, 0xbf],
    [0xf0, 0x8f, 0xbf, 0xbf],
    [0xf4, 0x90, 0x80, 0x80],
    [0xf5, 0x80, 0x80, 0x80],
    [0xe2, 0x82],
    [0xf0, 0x9f, 0x98],
    [0xc3, 0x41],
  ];
  for (const value of malformed) assert.equal(take(value), undefined, JSON.stringify(value));
  const wellFormed = [
    [0xc2, 0x80],
    [0xdf, 0xbf],
    [0xe0, 0xa0, 0x80],
    [0xed, 0x9f, 0xbf],
    [0xee, 0x80, 0x80],
    [0xef, 0xbb, 0xbf],
    [0xf0, 0x90, 0x80, 0x80],
    [0xf4, 0x8f, 0xbf, 0xbf],
  ];
  for (const value of wellFormed) {
    const record = take(value);
    assert.ok(record !== undefined, JSON.stringify(value));
    assert.deepEqual(record.bytes, parsedRow("pbx1", SESSION, wire(value), 1, 0));
  }
});
