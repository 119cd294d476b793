/**
 * Every recorded Asterisk 20.20.1 conversation replays through AmiParser, read by read,
 * with the exact message counts of the fixtures README and spot-checked field values.
 */
import assert from "node:assert/strict";
import { AmiParser } from "../dami/parser.ts";
import { type AmiMessage, headerValue, headerValues } from "../dami/message.ts";
import { DAMI } from "../mod.ts";
import { startFakeAmi } from "./fake_ami_server.ts";
import { FIXTURE_NAMES, type FixtureName, loadFixture } from "./fixtures.ts";

interface Counts {
  inChunks: number;
  bytesIn: number;
  actionsSent: number;
  responses: number;
  events: number;
}

/** The table of /work/shared/fixtures/README.md. */
const EXPECTED: Record<FixtureName, Counts> = {
  "login-ping-logoff": { inChunks: 5, bytesIn: 773, actionsSent: 4, responses: 4, events: 2 },
  "login-bad-secret": { inChunks: 2, bytesIn: 101, actionsSent: 1, responses: 1, events: 0 },
  "md5-login": { inChunks: 4, bytesIn: 692, actionsSent: 3, responses: 3, events: 2 },
  "action-before-login": { inChunks: 4, bytesIn: 765, actionsSent: 4, responses: 4, events: 2 },
  "commands": { inChunks: 18, bytesIn: 3080, actionsSent: 7, responses: 7, events: 2 },
  "lists-and-errors": { inChunks: 27, bytesIn: 15059, actionsSent: 21, responses: 21, events: 26 },
  "originate-local": { inChunks: 22, bytesIn: 39713, actionsSent: 4, responses: 4, events: 96 },
  "sip-calls": { inChunks: 8, bytesIn: 61261, actionsSent: 2, responses: 2, events: 141 },
  "pbx-restart": { inChunks: 3, bytesIn: 741, actionsSent: 2, responses: 2, events: 3 },
  "queue-call": { inChunks: 24, bytesIn: 50915, actionsSent: 4, responses: 4, events: 113 },
};

function replay(name: FixtureName): { parser: AmiParser; messages: AmiMessage[] } {
  const parser = new AmiParser();
  const messages = loadFixture(name).inChunks.flatMap((chunk) => parser.push(chunk));
  return { parser, messages };
}

function one(messages: AmiMessage[], predicate: (m: AmiMessage) => boolean): AmiMessage {
  const found = messages.filter(predicate);
  assert.equal(found.length, 1, "expected exactly one matching message");
  return found[0];
}

const withId = (id: string) => (m: AmiMessage) =>
  m.kind === "response" && headerValue(m, "ActionID") === id;
const event = (name: string) => (m: AmiMessage) => headerValue(m, "Event") === name;

for (const name of FIXTURE_NAMES) {
  Deno.test(`fixture ${name} replays read by read into exactly the recorded messages`, () => {
    const fixture = loadFixture(name);
    const { parser, messages } = replay(name);
    const expected = EXPECTED[name];
    assert.deepEqual({
      inChunks: fixture.inChunks.length,
      bytesIn: fixture.inBytes.length,
      actionsSent: fixture.outChunks.length,
      responses: messages.filter((m) => m.kind === "response").length,
      events: messages.filter((m) => m.kind === "event").length,
    }, expected);
    assert.equal(messages.length, expected.responses + expected.events);
    assert.equal(parser.banner, "Asterisk Call Manager/9.0.0");
    assert.equal(parser.bufferedBytes, 0, "nothing left over");
    assert.equal(parser.eventCount, expected.events);
    assert.ok(messages.every((m) => m.rawBytes === undefined && m.malformedLines === undefined));
  });
}

Deno.test("fixtures: every list answer has as many items as its Complete event's ListItems", () => {
  let lists = 0;
  for (const name of FIXTURE_NAMES) {
    const { messages } = replay(name);
    for (const start of messages) {
      if (start.kind !== "response" || headerValue(start, "EventList")?.toLowerCase() !== "start") {
        continue;
      }
      const id = headerValue(start, "ActionID")!;
      const items = messages.filter((m) => m.kind === "event" && headerValue(m, "ActionID") === id);
      const complete = items.pop()!;
      assert.equal(headerValue(complete, "EventList"), "Complete", `${name} ${id}`);
      assert.equal(Number(headerValue(complete, "ListItems")), items.length, `${name} ${id}`);
      lists++;
    }
  }
  assert.equal(lists, 13);
});

Deno.test("fixture login-ping-logoff: login accepted, two Pongs, Goodbye", () => {
  const { messages } = replay("login-ping-logoff");
  assert.equal(headerValue(one(messages, withId("login-1")), "Message"), "Authentication accepted");
  const booted = one(messages, event("FullyBooted"));
  assert.deepEqual(booted.headers, [
    ["Event", "FullyBooted"],
    ["Privilege", "system,all"],
    ["Uptime", "30"],
    ["LastReload", "30"],
    ["Status", "Fully Booted"],
  ]);
  assert.equal(headerValue(one(messages, event("SuccessfulAuth")), "AccountID"), "dami");
  assert.equal(headerValue(one(messages, withId("ping-1")), "Ping"), "Pong");
  assert.equal(
    headerValue(one(messages, withId("bye-1")), "Message"),
    "Thanks for all the fish.",
  );
  assert.equal(loadFixture("login-ping-logoff").entries.at(-1)!.dir, "close");
});

Deno.test("fixture login-bad-secret: Authentication failed about a second later, then close", () => {
  const fixture = loadFixture("login-bad-secret");
  const { messages } = replay("login-bad-secret");
  assert.deepEqual(messages[0].headers, [
    ["Response", "Error"],
    ["ActionID", "login-bad"],
    ["Message", "Authentication failed"],
  ]);
  const [, banner, reply, close] = fixture.entries;
  assert.ok(reply.t - banner.t >= 1000);
  assert.equal(close.dir, "close");
});

Deno.test("fixture md5-login: DAMI's MD5 login sends the Key that real Asterisk accepted", async () => {
  const fixture = loadFixture("md5-login");
  const { messages } = replay("md5-login");
  // What the recording says: the challenge Asterisk gave, the Key the client answered
  // with, and that Asterisk accepted it.
  const challenge = headerValue(one(messages, withId("md5-1-c")), "Challenge")!;
  const [recordedLogin] = new AmiParser().push(
    concat(new TextEncoder().encode("Asterisk Call Manager/9.0.0\r\n"), fixture.outChunks[1]),
  );
  assert.equal(headerValue(recordedLogin, "Action"), "Login");
  const recordedKey = headerValue(recordedLogin, "Key")!;
  assert.match(recordedKey, /^[0-9a-f]{32}$/);
  assert.equal(headerValue(one(messages, withId("md5-1")), "Message"), "Authentication accepted");

  // DAMI, handed the same challenge, must send that same Key and never the secret.
  await using server = await startFakeAmi({ authFailDelayMs: 0, challenge });
  const dami = new DAMI({ hostname: "127.0.0.1", port: server.port, logger: false });
  try {
    await dami.connectAndLogin({ username: "dami", secret: "dami-secret", authType: "md5" });
  } finally {
    dami.close();
  }
  const login = server.sessions[0].actions.find((a) => a.name === "Login")!;
  assert.equal(login.get("AuthType")?.toLowerCase(), "md5");
  assert.equal(login.get("Key"), recordedKey);
  assert.equal(login.get("Secret"), undefined);
  assert.ok(!new TextDecoder().decode(login.raw).includes("dami-secret"));
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

Deno.test("fixture action-before-login: Permission denied before Login, Pong after", () => {
  const { messages } = replay("action-before-login");
  for (const id of ["early", "early2"]) {
    assert.deepEqual(one(messages, withId(id)).headers, [
      ["Response", "Error"],
      ["ActionID", id],
      ["Message", "Permission denied"],
    ]);
  }
  assert.equal(headerValue(one(messages, withId("after")), "Ping"), "Pong");
});

Deno.test("fixture commands: Output lines of each command, in order", () => {
  const { messages } = replay("commands");
  assert.deepEqual(headerValues(one(messages, withId("c2")), "Output").map((l) => l.trimEnd()), [
    "Name/username             Host                                    Dyn Forcerport Comedia    ACL Port     Status      Description",
    "6001                      127.0.0.1                                   Auto (No)  No             5070     UNREACHABLE",
    "6002                      (Unspecified)                            D  Auto (No)  No             0        Unmonitored",
    "trunk                     127.0.0.1                                   Auto (No)  No             5071     Unmonitored",
    "3 sip peers [Monitored: 0 online, 1 offline Unmonitored: 1 online, 1 offline]",
  ]);
  const dialplan = headerValues(one(messages, withId("c5")), "Output");
  assert.equal(
    dialplan[6],
    "                    2. Dial(Local/100@internal,20)                [extensions.conf:28]",
  );
  assert.equal(headerValue(one(messages, withId("c4")), "Response"), "Error");
});

Deno.test("fixture lists-and-errors: list items, errors and single answers carry the recorded values", () => {
  const { messages } = replay("lists-and-errors");
  const peers = messages.filter(event("PeerEntry"));
  assert.deepEqual(peers.map((p) => headerValue(p, "ObjectName")), ["6001", "6002", "trunk"]);
  assert.deepEqual(peers.map((p) => headerValue(p, "Status")), [
    "UNREACHABLE",
    "Unmonitored",
    "Unmonitored",
  ]);
  assert.equal(headerValue(one(messages, withId("ssp2")), "Message"), "Peer nobody not found.");
  assert.equal(
    headerValue(one(messages, withId("bad")), "Message"),
    "Invalid/unknown command: Nope. Use Action: ListCommands to show available commands.",
  );
  const csc = one(messages, event("CoreShowChannelsComplete"));
  assert.equal(headerValue(csc, "ListItems"), "0");
  assert.equal(headerValue(one(messages, withId("cs")), "AsteriskVersion"), "20.20.1");
  assert.equal(headerValue(one(messages, withId("cs")), "AMIversion"), "9.0.0");
  assert.equal(headerValue(one(messages, withId("gv")), "Value"), "/etc/asterisk");
  assert.equal(headerValue(one(messages, withId("ev")), "Events"), "Off");
  assert.equal(headerValue(one(messages, withId("ev2")), "Events"), "On");
  assert.equal(headerValue(one(messages, event("QueueSummaryComplete")), "ListItems"), "1");
  assert.equal(messages.filter(event("DeviceStateChange")).length, 6);
  const commands = one(messages, withId("lc"));
  assert.equal(
    headerValue(commands, "AbsoluteTimeout"),
    "Set absolute timeout.  (Priv: system,call,all)",
  );
  assert.ok(commands.headers.length > 100);
});

Deno.test("fixture originate-local: async answers, OriginateResponse success and failure, Ünïcode caller name", () => {
  const { messages } = replay("originate-local");
  for (const id of ["orig-1", "orig-2", "orig-sync"]) {
    assert.equal(
      headerValue(one(messages, withId(id)), "Message"),
      "Originate successfully queued",
    );
  }
  const originateResponses = messages.filter(event("OriginateResponse"));
  assert.deepEqual(
    originateResponses.map((m) => [
      headerValue(m, "ActionID"),
      headerValue(m, "Response"),
      headerValue(m, "Reason"),
    ]),
    [["orig-1", "Success", "4"], ["orig-2", "Failure", "0"]],
  );
  assert.equal(headerValue(originateResponses[0], "CallerIDName"), "Alice Ünïcode");
  assert.equal(headerValue(originateResponses[0], "Uniqueid"), "1795663605.15");
  assert.equal(messages.filter(event("Cdr")).length, 4);
  assert.equal(messages.filter(event("CEL")).length, 29);
  const bridge = messages.filter(event("LocalBridge"))[0];
  assert.equal(headerValue(bridge, "LocalOneCallerIDName"), "Alice Ünïcode");
  assert.equal(headerValue(bridge, "LocalTwoChannel"), "Local/100@internal-00000003;2");
});

Deno.test("fixture sip-calls: answered, busy and congested calls, then SIPPeers", () => {
  const { messages } = replay("sip-calls");
  assert.deepEqual(
    messages.filter(event("Hangup")).map((m) => [
      headerValue(m, "Channel"),
      headerValue(m, "Cause"),
      headerValue(m, "Cause-txt"),
    ]),
    [
      ["SIP/trunk-00000010", "16", "Normal Clearing"],
      ["SIP/6001-00000011", "16", "Normal Clearing"],
      ["SIP/trunk-00000012", "17", "User busy"],
      ["SIP/trunk-00000013", "34", "Circuit/channel congestion"],
    ],
  );
  assert.equal(headerValue(one(messages, event("DialEnd")), "DialStatus"), "ANSWER");
  assert.equal(headerValue(one(messages, event("Cdr")), "Disposition"), "ANSWERED");
  assert.equal(messages.filter(event("VarSet")).length, 69);
  assert.equal(headerValue(one(messages, event("PeerlistComplete")), "ActionID"), "sp-after");
});

Deno.test("fixture pbx-restart: Shutdown Cleanly with Restart True, then close", () => {
  const { messages } = replay("pbx-restart");
  assert.deepEqual(one(messages, event("Shutdown")).headers, [
    ["Event", "Shutdown"],
    ["Privilege", "system,all"],
    ["Timestamp", "1795664223.665514"],
    ["Shutdown", "Cleanly"],
    ["Restart", "True"],
  ]);
  assert.equal(loadFixture("pbx-restart").entries.at(-1)!.dir, "close");
});

Deno.test("fixture queue-call: the queue call's events and the lists taken during it", () => {
  const { messages } = replay("queue-call");
  const join = one(messages, event("QueueCallerJoin"));
  assert.equal(headerValue(join, "Queue"), "support");
  assert.equal(headerValue(join, "Position"), "1");
  const connect = one(messages, event("AgentConnect"));
  assert.equal(headerValue(connect, "Interface"), "SIP/6001");
  const complete = one(messages, event("AgentComplete"));
  assert.deepEqual(
    [headerValue(complete, "TalkTime"), headerValue(complete, "Reason")],
    ["4", "caller"],
  );
  assert.equal(headerValue(complete, "EventList"), undefined);
  assert.equal(headerValue(one(messages, event("QueueCallerLeave")), "Count"), "0");
  const channels = messages.filter(event("CoreShowChannel"));
  assert.deepEqual(channels.map((c) => headerValue(c, "Channel")), [
    "SIP/6001-00000015",
    "SIP/trunk-00000014",
  ]);
  assert.equal(headerValue(one(messages, event("StatusComplete")), "Items"), "2");
});
