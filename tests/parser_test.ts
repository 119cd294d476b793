/**
 * AmiParser on real Asterisk 20.20.1 bytes: framing and header edge cases 1-7, 14, 15,
 * 22 and 23 of AMI-NOTES.md, and the size cap.
 */
import assert from "node:assert/strict";
import { AmiParser } from "../dami/parser.ts";
import { DAMIMessageTooLargeError, DAMIProtocolError } from "../dami/errors.ts";
import { type AmiMessage, headerValue, headerValues } from "../dami/message.ts";
import { byteChunks, concatBytes, type FixtureName, loadFixture } from "./fixtures.ts";

const encoder = new TextEncoder();

function parseChunks(chunks: readonly Uint8Array[], parser = new AmiParser()): AmiMessage[] {
  return chunks.flatMap((chunk) => parser.push(chunk));
}

function parseText(text: string, parser = new AmiParser({ expectBanner: false })): AmiMessage[] {
  return parser.push(encoder.encode(text));
}

function comparable(messages: AmiMessage[]) {
  return messages.map((m) => ({
    kind: m.kind,
    headers: m.headers,
    seq: m.seq,
    rawBytes: m.rawBytes,
    malformedLines: m.malformedLines,
  }));
}

function byEvent(messages: AmiMessage[], name: string): AmiMessage[] {
  return messages.filter((m) => headerValue(m, "Event") === name);
}

function byActionId(messages: AmiMessage[], id: string): AmiMessage[] {
  return messages.filter((m) => headerValue(m, "ActionID") === id);
}

Deno.test("edge 1: a stream fed one byte at a time parses exactly like one chunk, banner split mid-line included", () => {
  for (
    const name of ["login-ping-logoff", "lists-and-errors", "originate-local"] as FixtureName[]
  ) {
    const fixture = loadFixture(name);
    const whole = new AmiParser();
    const expected = whole.push(fixture.inBytes);
    const bytewise = new AmiParser();
    const actual: AmiMessage[] = [];
    for (const piece of byteChunks(fixture.inBytes)) actual.push(...bytewise.push(piece));
    assert.equal(bytewise.banner, "Asterisk Call Manager/9.0.0", name);
    assert.deepEqual(comparable(actual), comparable(expected), name);
    assert.equal(bytewise.bufferedBytes, 0, name);
  }
});

Deno.test("edge 2: banner, login reply, FullyBooted and SuccessfulAuth in one read all come out of that read", () => {
  const fixture = loadFixture("login-ping-logoff");
  const parser = new AmiParser();
  const messages = parser.push(fixture.inChunks[0]);
  assert.equal(parser.banner, "Asterisk Call Manager/9.0.0");
  assert.deepEqual(messages.map((m) => [m.kind, m.seq]), [["response", 0], ["event", 1], [
    "event",
    2,
  ]]);
  assert.equal(headerValue(messages[0], "Message"), "Authentication accepted");
  assert.equal(headerValue(messages[1], "Event"), "FullyBooted");
  assert.equal(headerValue(messages[1], "ActionID"), undefined);
  assert.equal(headerValue(messages[2], "Event"), "SuccessfulAuth");
  assert.equal(headerValue(messages[2], "RemoteAddress"), "IPV4/TCP/127.0.0.1/38586");
});

Deno.test("edge 2: a banner alone in its read (login-bad-secret) is kept and the later reply parses", () => {
  const fixture = loadFixture("login-bad-secret");
  const parser = new AmiParser();
  assert.deepEqual(parser.push(fixture.inChunks[0]), []);
  assert.equal(parser.banner, "Asterisk Call Manager/9.0.0");
  const [reply] = parser.push(fixture.inChunks[1]);
  assert.deepEqual(reply.headers, [["Response", "Error"], ["ActionID", "login-bad"], [
    "Message",
    "Authentication failed",
  ]]);
});

Deno.test("edge 3: a UTF-8 character split between two reads decodes intact", () => {
  const fixture = loadFixture("originate-local");
  const bytes = fixture.inBytes;
  const u = encoder.encode("Ü");
  let at = -1;
  for (let i = 0; i < bytes.length - 1; i++) {
    if (bytes[i] === u[0] && bytes[i + 1] === u[1]) {
      at = i + 1;
      break;
    }
  }
  assert.ok(at > 0);
  const messages = parseChunks([bytes.subarray(0, at), bytes.subarray(at)]);
  const names = messages.flatMap((m) => headerValues(m, "CallerIDName"));
  assert.ok(names.includes("Alice Ünïcode"));
  assert.ok(!names.some((n) => n.includes("\uFFFD")));
  assert.ok(messages.every((m) => m.rawBytes === undefined));
});

Deno.test("edge 3: a message with invalid UTF-8 keeps its exact bytes in rawBytes and its neighbours are untouched", () => {
  const before = encoder.encode("Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n");
  const bad = concatBytes([
    encoder.encode("Event: Newchannel\r\nCallerIDName: Ren"),
    new Uint8Array([0xe9, 0xff, 0xc3]), // Latin-1 é, a byte never valid, a lead byte cut short
    encoder.encode("e\r\nUniqueid: 1795663605.15\r\n\r\n"),
  ]);
  const after = encoder.encode("Event: Hangup\r\nCause: 16\r\n\r\n");
  const stream = concatBytes([before, bad, after]);
  for (const chunks of [[stream], byteChunks(stream)]) {
    const messages = parseChunks(chunks, new AmiParser({ expectBanner: false }));
    assert.equal(messages.length, 3);
    assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3]);
    assert.equal(messages[0].rawBytes, undefined);
    assert.equal(messages[2].rawBytes, undefined);
    assert.deepEqual(messages[1].rawBytes, bad);
    assert.equal(headerValue(messages[1], "Uniqueid"), "1795663605.15");
    assert.match(headerValue(messages[1], "CallerIDName")!, /^Ren\uFFFD+e$/);
    assert.deepEqual(messages[2].headers, [["Event", "Hangup"], ["Cause", "16"]]);
  }
});

Deno.test("edge 4: bare LF, LF CR LF and extra blank lines end messages without phantom ones", () => {
  const text = "\r\n\nResponse: Success\nActionID: a\n\n" +
    "Event: Newstate\r\nChannelState: 5\n\r\n\r\n\r\n\n" +
    "Event: Hangup\r\nCause: 16\r\n\r\n\n\r\n";
  for (const chunks of [[encoder.encode(text)], byteChunks(encoder.encode(text))]) {
    const messages = parseChunks(chunks, new AmiParser({ expectBanner: false }));
    assert.deepEqual(messages.map((m) => m.headers), [
      [["Response", "Success"], ["ActionID", "a"]],
      [["Event", "Newstate"], ["ChannelState", "5"]],
      [["Event", "Hangup"], ["Cause", "16"]],
    ]);
    assert.ok(messages.every((m) => m.malformedLines === undefined));
  }
});

Deno.test("edge 4: the extra blank line Asterisk sends before a response (lists-and-errors) adds no message", () => {
  const fixture = loadFixture("lists-and-errors");
  const blank = fixture.inChunks.findIndex((c) => new TextDecoder().decode(c) === "\r\n");
  assert.ok(blank > 0);
  const parser = new AmiParser();
  parseChunks(fixture.inChunks.slice(0, blank), parser);
  assert.deepEqual(parser.push(fixture.inChunks[blank]), []);
  const messages = parseChunks(fixture.inChunks.slice(blank + 1), parser);
  assert.deepEqual(messages[0].headers.slice(0, 2), [["Response", "Success"], ["ActionID", "csc"]]);
});

Deno.test("edge 5: a header splits on its first colon only, keeps trailing spaces and empty values", () => {
  const fixture = loadFixture("lists-and-errors");
  const messages = parseChunks(fixture.inChunks);
  const dbGet = byEvent(messages, "DBGetResponse")[0];
  assert.equal(headerValue(dbGet, "Val"), "v1 with spaces: and colon");
  const badFormat = byEvent(messages, "RequestBadFormat")[0];
  assert.equal(headerValue(badFormat, "RequestType"), "Action: Nope");
  const peer = byEvent(messages, "PeerEntry")[0];
  assert.equal(headerValue(peer, "Description"), "");
  const commands = parseChunks(loadFixture("commands").inChunks);
  const peers = byActionId(commands, "c2")[0];
  assert.ok(headerValues(peers, "Output")[0].endsWith("Description                      "));
  const synthetic = parseText(
    "Event: X\r\nKey:value\r\nTwo:  spaces \r\nEmpty:\r\nURL: http://a:1/b\r\n\r\n",
  );
  assert.deepEqual(synthetic[0].headers, [
    ["Event", "X"],
    ["Key", "value"],
    ["Two", " spaces "],
    ["Empty", ""],
    ["URL", "http://a:1/b"],
  ]);
});

Deno.test("edge 5: a line without a colon is kept with an empty key and counted as malformed", () => {
  const [message] = parseText("Event: X\r\nnot a header\r\nA: 1\r\n\r\n");
  assert.deepEqual(message.headers, [["Event", "X"], ["", "not a header"], ["A", "1"]]);
  assert.equal(message.malformedLines, 1);
  const [next] = parseText("Event: Y\r\n\r\n");
  assert.equal(next.malformedLines, undefined);
});

Deno.test("edge 6: repeated Output, ChanVariable, DestChanVariable and ChanVariable(chan) headers keep order and values", () => {
  const commands = parseChunks(loadFixture("commands").inChunks);
  const dialplan = byActionId(commands, "c5")[0];
  const output = headerValues(dialplan, "Output");
  assert.equal(output.length, 14);
  assert.equal(output[0], "[ Context 'internal' created by 'pbx_config' ]");
  assert.equal(output[12], "");
  assert.equal(output[13], "-= 4 extensions (11 priorities) in 1 context. =-");
  // manager.conf channelvars: one line per variable (manager_channels.c:627-636, 7554).
  const [dial] = parseText(
    "Event: DialBegin\r\nChannel: PJSIP/100-00000001\r\nChanVariable: A=1\r\nChanVariable: B=x=y\r\n" +
      "DestChannel: PJSIP/200-00000002\r\nDestChanVariable: A=2\r\nDestChanVariable: B=\r\n" +
      "ChanVariable(PJSIP/100-0000001): x=y\r\nChanVariable(PJSIP/100-0000001): z=w\r\n\r\n",
  );
  assert.deepEqual(headerValues(dial, "ChanVariable"), ["A=1", "B=x=y"]);
  assert.deepEqual(headerValues(dial, "DestChanVariable"), ["A=2", "B="]);
  assert.deepEqual(headerValues(dial, "ChanVariable(PJSIP/100-0000001)"), ["x=y", "z=w"]);
  assert.deepEqual(dial.headers.map(([k]) => k), [
    "Event",
    "Channel",
    "ChanVariable",
    "ChanVariable",
    "DestChannel",
    "DestChanVariable",
    "DestChanVariable",
    "ChanVariable(PJSIP/100-0000001)",
    "ChanVariable(PJSIP/100-0000001)",
  ]);
});

Deno.test("edge 7: header lookup ignores case while the original case is stored", () => {
  const messages = parseChunks(loadFixture("lists-and-errors").inChunks);
  const peer = byEvent(messages, "PeerEntry")[0];
  assert.equal(headerValue(peer, "ipaddress"), "127.0.0.1");
  assert.equal(headerValue(peer, "CHANNELTYPE"), "SIP");
  assert.ok(peer.headers.some(([k]) => k === "IPaddress"));
  assert.ok(peer.headers.some(([k]) => k === "Channeltype"));
  assert.equal(headerValue(peer, "event"), "PeerEntry");
  assert.equal(headerValue(peer, "NoSuchHeader"), undefined);
});

Deno.test("edge 14: Command answers keep every Output line, the empty ones too, for Success and Error", () => {
  const messages = parseChunks(loadFixture("commands").inChunks);
  const outputs = Object.fromEntries(
    ["c1", "c2", "c3", "c4", "c5", "c6"].map((id) => {
      const m = byActionId(messages, id)[0];
      return [id, [headerValue(m, "Response"), headerValues(m, "Output").length]];
    }),
  );
  assert.deepEqual(outputs, {
    c1: ["Success", 1],
    c2: ["Success", 5],
    c3: ["Success", 1],
    c4: ["Error", 1],
    c5: ["Success", 14],
    c6: ["Error", 0],
  });
  assert.deepEqual(headerValues(byActionId(messages, "c3")[0], "Output"), [""]);
  assert.equal(
    headerValues(byActionId(messages, "c1")[0], "Output")[0],
    "Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux on 2026-11-26 03:20:45 UTC",
  );
  assert.match(headerValue(byActionId(messages, "c4")[0], "Output")!, /^No such command 'no such/);
  assert.equal(headerValue(byActionId(messages, "c6")[0], "Message"), "No command provided");
});

const FOLLOWS = "Response: Follows\r\nPrivilege: Command\r\nActionID: cmd13\r\n" +
  "Name/username             Host                                    Dyn Forcerport ACL Port     Status\n" +
  "6001/6001                 10.0.0.5:5060                            D  No         A  5060     OK (12 ms)\n" +
  "\n" +
  "Key: looks like a header but is CLI text\n" +
  "1 sip peers [Monitored: 1 online, 0 offline Unmonitored: 0 online, 0 offline]\n" +
  "--END COMMAND--\r\n\r\n";

Deno.test("edge 15: an Asterisk 13 Response: Follows body with colons and blank lines becomes Output lines until --END COMMAND--", () => {
  const bytes = encoder.encode(FOLLOWS + "Event: Hangup\r\nCause: 16\r\n\r\n");
  for (const chunks of [[bytes], byteChunks(bytes)]) {
    const messages = parseChunks(chunks, new AmiParser({ expectBanner: false }));
    assert.equal(messages.length, 2);
    const [response, event] = messages;
    assert.equal(response.kind, "response");
    assert.equal(headerValue(response, "ActionID"), "cmd13");
    assert.equal(headerValue(response, "Privilege"), "Command");
    assert.deepEqual(headerValues(response, "Output"), [
      "Name/username             Host                                    Dyn Forcerport ACL Port     Status",
      "6001/6001                 10.0.0.5:5060                            D  No         A  5060     OK (12 ms)",
      "",
      "Key: looks like a header but is CLI text",
      "1 sip peers [Monitored: 1 online, 0 offline Unmonitored: 0 online, 0 offline]",
    ]);
    assert.equal(headerValue(response, "Key"), undefined);
    assert.deepEqual(event.headers, [["Event", "Hangup"], ["Cause", "16"]]);
    assert.equal(event.seq, 1);
  }
});

Deno.test("edge 15: output that does not end in a newline before --END COMMAND-- keeps its last line", () => {
  const [response] = parseText(
    "Response: Follows\r\nPrivilege: Command\r\nActionID: v\r\nAsterisk 13.38.3 built by root--END COMMAND--\r\n\r\n",
  );
  assert.deepEqual(headerValues(response, "Output"), ["Asterisk 13.38.3 built by root"]);
});

Deno.test("edge 22: a message cut short by the end of the stream is never returned", () => {
  const fixture = loadFixture("pbx-restart");
  const truncated = fixture.inBytes.subarray(0, fixture.inBytes.length - 20);
  const parser = new AmiParser();
  const messages = parseChunks(byteChunks(truncated), parser);
  assert.equal(messages.length, 4);
  assert.ok(!messages.some((m) => headerValue(m, "Event") === "Shutdown"));
  assert.ok(parser.bufferedBytes > 0);
});

Deno.test("edge 23: a Pong carries Ping and Timestamp and no Message, with or without ActionID", () => {
  const messages = parseChunks(loadFixture("login-ping-logoff").inChunks);
  const pongs = messages.filter((m) => headerValue(m, "Ping") === "Pong");
  assert.equal(pongs.length, 2);
  assert.deepEqual(pongs[0].headers.map(([k]) => k), ["Response", "ActionID", "Ping", "Timestamp"]);
  assert.deepEqual(pongs[1].headers.map(([k]) => k), ["Response", "Ping", "Timestamp"]);
  assert.equal(headerValue(pongs[0], "Timestamp"), "1795663535.026366");
  const goodbye = messages.at(-1)!;
  assert.deepEqual(goodbye.headers, [["Response", "Goodbye"], ["ActionID", "bye-1"], [
    "Message",
    "Thanks for all the fish.",
  ]]);
});

Deno.test("events are numbered from 1 contiguously per parser while responses carry 0", () => {
  const messages = parseChunks(loadFixture("queue-call").inChunks);
  const events = messages.filter((m) => m.kind === "event");
  assert.deepEqual(events.map((m) => m.seq), events.map((_, i) => i + 1));
  assert.ok(messages.filter((m) => m.kind === "response").every((m) => m.seq === 0));
  const next = new AmiParser();
  assert.equal(parseChunks(loadFixture("pbx-restart").inChunks, next)[1].seq, 1);
});

Deno.test("a message whose first header is neither Event nor Response is kind other", () => {
  const messages = parseText("Foo: bar\r\n\r\nevent: lower\r\n\r\nRESPONSE: Success\r\n\r\n");
  assert.deepEqual(messages.map((m) => m.kind), ["other", "event", "response"]);
  assert.deepEqual(messages.map((m) => m.seq), [0, 1, 0]);
});

Deno.test("receivedAt is the parser clock's time of the read that completed the message", () => {
  let now = 1000;
  const parser = new AmiParser({ expectBanner: false, now: () => now });
  assert.deepEqual(parser.push(encoder.encode("Event: A\r\n")), []);
  now = 2000;
  const [a] = parser.push(encoder.encode("\r\n"));
  assert.equal(a.receivedAt, 2000);
});

Deno.test("a message growing past maxMessageBytes without ending throws DAMIProtocolError and frees its buffer", () => {
  const parser = new AmiParser({ expectBanner: false, maxMessageBytes: 1024 });
  const line = encoder.encode("Output: " + "x".repeat(200) + "\r\n");
  assert.throws(() => {
    for (let i = 0; i < 10; i++) parser.push(line);
  }, (error: unknown) => error instanceof DAMIProtocolError && error.code === "protocol");
  assert.equal(parser.bufferedBytes, 0);
  const endless = new AmiParser({ expectBanner: false, maxMessageBytes: 4096 });
  assert.throws(() => endless.push(new Uint8Array(8192).fill(65)), DAMIProtocolError);
});

Deno.test("a large message under the cap split in many reads is returned whole", () => {
  const body = Array.from({ length: 2000 }, (_, i) => `Output: line ${i}\r\n`).join("");
  const bytes = encoder.encode(`Response: Success\r\nActionID: big\r\n${body}\r\n`);
  const messages = parseChunks(
    [bytes.subarray(0, 10), bytes.subarray(10, 30000), bytes.subarray(30000)],
    new AmiParser({ expectBanner: false }),
  );
  assert.equal(messages.length, 1);
  assert.equal(headerValues(messages[0], "Output").length, 2000);
  assert.equal(headerValues(messages[0], "Output")[1999], "line 1999");
});

Deno.test("issue 8: a first header other than Response with the value Follows is an ordinary header", () => {
  // Any 8-character key used to switch to Asterisk 13 command output: everything after
  // was swallowed as Output until a `--END COMMAND--` that never came.
  const messages = parseText(
    "Presence: Follows\r\nStatus: away\r\n\r\nEvent: Hangup\r\nCause: 16\r\n\r\n" +
      "Event: DialEnd\r\nResponse: Follows\r\n\r\nEvent: Newstate\r\n\r\n",
  );
  assert.deepEqual(messages.map((m) => m.headers), [
    [["Presence", "Follows"], ["Status", "away"]],
    [["Event", "Hangup"], ["Cause", "16"]],
    [["Event", "DialEnd"], ["Response", "Follows"]],
    [["Event", "Newstate"]],
  ]);
  assert.deepEqual(messages.map((m) => m.kind), ["other", "event", "event", "event"]);
});

Deno.test("issue 8: a Response: Follows body without --END COMMAND-- hits maxMessageBytes and throws", () => {
  const parser = new AmiParser({ expectBanner: false, maxMessageBytes: 4096 });
  const out: AmiMessage[] = [];
  // Blank lines inside the body: the byte buffer is emptied at each one, so only the
  // message's own byte count can hold the cap.
  const line = encoder.encode("body line with a blank line after it\n\n");
  let pushed = 0;
  assert.throws(
    () => {
      parser.push(
        encoder.encode("Event: Before\r\n\r\nResponse: Follows\r\nPrivilege: Command\r\n"),
        out,
      );
      for (let i = 0; i < 100_000; i++) {
        parser.push(line, out);
        pushed += line.length;
      }
    },
    (error: unknown) =>
      error instanceof DAMIMessageTooLargeError && error.code === "protocol" &&
      error.limitBytes === 4096 && error.discardedBytes > 4096,
  );
  assert.ok(pushed <= 4096, `the cap held: threw after ${pushed} body bytes`);
  assert.deepEqual(out.map((m) => m.headers), [[["Event", "Before"]]]);
  assert.equal(parser.bufferedBytes, 0);
});

Deno.test("issue 8: the messages completed before an oversized one in the same read are handed out", () => {
  const parser = new AmiParser({ expectBanner: false, maxMessageBytes: 1024 });
  const out: AmiMessage[] = [];
  const bytes = encoder.encode(
    "Event: A\r\n\r\nEvent: B\r\n\r\nEvent: Flood\r\n" + "X: " + "y".repeat(2000) + "\r\n",
  );
  assert.throws(() => parser.push(bytes, out), DAMIMessageTooLargeError);
  assert.deepEqual(out.map((m) => headerValue(m, "Event")), ["A", "B"]);
});
