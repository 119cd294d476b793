/**
 * Property: however a fixture's server bytes are cut into reads (seeded random pieces,
 * 1-byte pieces, the recorded reads), AmiParser yields the same messages as one read.
 * A failure names the fixture and the seed, so it can be replayed.
 */
import assert from "node:assert/strict";
import { AmiParser } from "../dami/parser.ts";
import type { AmiMessage } from "../dami/message.ts";
import {
  byteChunks,
  concatBytes,
  FIXTURE_NAMES,
  loadFixture,
  rechunk,
  seededRandom,
} from "./fixtures.ts";

const SEEDS_PER_FIXTURE = 200;

function comparable(messages: AmiMessage[]) {
  return messages.map((m) => ({
    kind: m.kind,
    headers: m.headers,
    seq: m.seq,
    rawBytes: m.rawBytes,
    malformedLines: m.malformedLines,
  }));
}

function parse(chunks: readonly Uint8Array[]): { messages: AmiMessage[]; banner?: string } {
  const parser = new AmiParser();
  const messages = chunks.flatMap((chunk) => parser.push(chunk));
  assert.equal(parser.bufferedBytes, 0);
  return { messages, banner: parser.banner };
}

for (const name of FIXTURE_NAMES) {
  Deno.test(`any re-chunking of fixture ${name} yields the messages of a single read`, () => {
    const bytes = loadFixture(name).inBytes;
    const expected = parse([bytes]);
    const reference = comparable(expected.messages);
    assert.ok(reference.length > 0);
    const check = (chunks: readonly Uint8Array[], label: string) => {
      const actual = parse(chunks);
      assert.equal(actual.banner, expected.banner, label);
      assert.deepEqual(comparable(actual.messages), reference, label);
    };
    check(loadFixture(name).inChunks, "recorded reads");
    check(byteChunks(bytes), "1-byte reads");
    for (let seed = 1; seed <= SEEDS_PER_FIXTURE; seed++) {
      const random = seededRandom(seed);
      // Small pieces cut inside lines and CRLFs; large ones span many messages.
      const maxChunk = [2, 7, 64, 1500, 20000][seed % 5];
      check(rechunk(bytes, random, { maxChunk }), `seed ${seed}, maxChunk ${maxChunk}`);
    }
  });
}

Deno.test("any re-chunking of a stream with invalid UTF-8, bare LFs and a 13.x Follows body yields the single-read messages", () => {
  const encoder = new TextEncoder();
  const bytes = concatBytes([
    encoder.encode("Asterisk Call Manager/9.0.0\r\n"),
    encoder.encode("Event: Newchannel\r\nCallerIDName: Ren"),
    new Uint8Array([0xe9]),
    encoder.encode("\r\nUniqueid: 1.1\r\n\r\n\r\n"),
    encoder.encode("Response: Success\nActionID: a\n\n"),
    encoder.encode("Event: Newstate\r\nCallerIDName: Ünïcode 名前\n\r\n"),
    encoder.encode(
      "Response: Follows\r\nPrivilege: Command\r\nActionID: c\r\nA: b\n\nline\n--END COMMAND--\r\n\r\n",
    ),
    encoder.encode("Event: Hangup\r\nbroken line\r\nCause: 16\r\n\r\n"),
  ]);
  const reference = comparable(parse([bytes]).messages);
  assert.equal(reference.length, 5);
  assert.ok(reference[0].rawBytes !== undefined);
  for (let seed = 1; seed <= 500; seed++) {
    const chunks = rechunk(bytes, seededRandom(seed), { maxChunk: 1 + (seed % 40) });
    assert.deepEqual(comparable(parse(chunks).messages), reference, `seed ${seed}`);
  }
});
