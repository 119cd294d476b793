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
  encodeRecord,
  eventRecord,
  eventRowText,
  slowRow,
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
