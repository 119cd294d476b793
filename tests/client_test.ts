/**
 * The DAMI client against the fake Asterisk 20 server: login, correlation, lists,
 * Originate, Command, listeners, closing, and edge cases 8-16 and 19-24 of AMI-NOTES.md.
 */
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import {
  type AmiMessage,
  DAMI,
  DAMIActionError,
  DAMIClosedError,
  DAMIConnectError,
  type DAMIData,
  DAMIError,
  DAMIEventsDroppedError,
  DAMIInvalidInputError,
  type DAMILoginOptions,
  DAMIMessageTooLargeError,
  type DAMIOptions,
  DAMIStateError,
  headerValue,
} from "../mod.ts";
import { type FakeAmi, formatAmiMessage, startFakeAmi } from "./fake_ami_server.ts";
import { eventTexts } from "./fixtures.ts";

const SECRET = "dami-secret";

function client(server: FakeAmi, options: Partial<DAMIOptions> = {}): DAMI {
  return new DAMI({ hostname: server.hostname, port: server.port, logger: false, ...options });
}

async function loggedIn(
  server: FakeAmi,
  options: Partial<DAMIOptions> = {},
  login: Partial<DAMILoginOptions> = {},
): Promise<DAMI> {
  const dami = client(server, options);
  await dami.connectAndLogin({ username: "dami", secret: SECRET, ...login });
  return dami;
}

async function shutdown(dami: DAMI): Promise<void> {
  dami.close();
  await dami.closed;
}

function isCode(code: DAMIError["code"]) {
  return (error: unknown) => {
    assert.ok(error instanceof DAMIError, `expected a DAMIError, got ${error}`);
    assert.equal(error.code, code, (error as Error).message);
    return true;
  };
}

/** Resolves once `predicate` holds for the messages seen so far. */
function collect(dami: DAMI) {
  const messages: AmiMessage[] = [];
  const waiters: Array<{ predicate: () => boolean; resolve: () => void }> = [];
  dami.onMessage((message) => {
    messages.push(message);
    for (const w of [...waiters]) {
      if (w.predicate()) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  return {
    messages,
    until(predicate: () => boolean): Promise<void> {
      if (predicate()) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ predicate, resolve }));
    },
  };
}

Deno.test("connectAndLogin exposes the banner and resolves with the login response", async () => {
  await using server = await startFakeAmi();
  const dami = client(server);
  const response = await dami.connectAndLogin({ username: "dami", secret: SECRET });
  assert.equal(dami.banner, "Asterisk Call Manager/9.0.0");
  assert.equal(response.Response, "Success");
  assert.equal(response.Message, "Authentication accepted");
  assert.equal(dami.connected, true);
  assert.ok(dami.conn !== undefined);
  await shutdown(dami);
  assert.equal(dami.connected, false);
  assert.deepEqual(await dami.closed, {
    reason: "local",
    message: "closed by the client",
    discardedBytes: 0,
  });
});

Deno.test("login sends Events when asked and the server applies that mask", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server, {}, { events: "call,agent" });
  const session = await server.session(0);
  assert.equal(session.actions[0].get("Events"), "call,agent");
  assert.equal(session.eventMask, "call,agent");
  await shutdown(dami);
});

Deno.test("edge 20: a refused login rejects with code login, closes, and is not retried", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const dami = client(server);
  await assert.rejects(
    dami.connectAndLogin({ username: "dami", secret: "wrong-secret-value" }),
    (error: unknown) => {
      isCode("login")(error);
      assert.match((error as Error).message, /Authentication failed/);
      assert.doesNotMatch((error as Error).message, /wrong-secret-value/);
      return true;
    },
  );
  const closed = await dami.closed;
  assert.equal(closed.reason, "local");
  assert.equal(dami.pendingActions, 0);
  await (await server.session(0)).closed;
  // A ping round trip on another connection gives any retry time to show up.
  const other = await loggedIn(server);
  assert.equal(await other.ping(), true);
  assert.equal(server.connections, 2);
  await shutdown(other);
});

Deno.test("edge 20: Login Already In Use rejects with code login and Asterisk's message", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0, allowMultipleLogin: false });
  const first = await loggedIn(server);
  const second = client(server);
  await assert.rejects(
    second.connectAndLogin({ username: "dami", secret: SECRET }),
    (error: unknown) => isCode("login")(error) && /Login Already In Use/.test(String(error)),
  );
  assert.equal(await first.ping(), true);
  assert.equal(server.connections, 2);
  await shutdown(first);
});

Deno.test("edge 21: MD5 login sends Key = md5(challenge + secret) as recorded, never the secret", async () => {
  await using server = await startFakeAmi({ challenge: "482454724" });
  const dami = await loggedIn(server, {}, { authType: "md5" });
  const session = await server.session(0);
  const [challenge, login] = session.actions;
  assert.equal(challenge.name, "Challenge");
  assert.equal(challenge.get("AuthType"), "MD5");
  assert.equal(login.get("AuthType"), "MD5");
  assert.equal(login.get("Key"), "6c9bba098513d6f48cab59af8502a8c3");
  assert.equal(login.get("Secret"), undefined);
  assert.ok(!new TextDecoder().decode(login.raw).includes(SECRET));
  assert.equal(session.loggedIn, true);
  await shutdown(dami);
});

Deno.test("edge 21: MD5 login with a wrong secret rejects with code login", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  await assert.rejects(
    loggedIn(server, {}, { authType: "md5", secret: "not-it" }),
    isCode("login"),
  );
});

Deno.test("actions before login get Permission denied as an action error", async () => {
  await using server = await startFakeAmi();
  const dami = client(server);
  await dami.connect();
  await assert.rejects(dami.to("CoreSettings"), (error: unknown) => {
    assert.ok(error instanceof DAMIActionError);
    assert.equal(error.code, "action");
    assert.equal(error.action, "CoreSettings");
    assert.match(error.message, /Permission denied/);
    assert.equal(headerValue(error.response, "Message"), "Permission denied");
    return true;
  });
  await shutdown(dami);
});

Deno.test("edge 8: a response with no ActionID or an unknown one settles no pending action", async () => {
  await using server = await startFakeAmi();
  server.handle("Ping", () =>
    "Response: Success\r\nPing: Pong\r\n\r\n" +
    "Response: Success\r\nActionID: somebody-else\r\nPing: Pong\r\n\r\n");
  const dami = await loggedIn(server);
  const seen = collect(dami);
  await assert.rejects(dami.to("Ping", {}, undefined, { timeoutMs: 200 }), isCode("timeout"));
  assert.equal(seen.messages.filter((m) => m.kind === "response").length, 2);
  assert.equal(dami.pendingActions, 0);
  await shutdown(dami);
});

Deno.test("to(action, data, options) takes the options without a callback; the callback form still works", async () => {
  await using server = await startFakeAmi();
  server.handle("Status", () => undefined);
  const dami = await loggedIn(server);
  await assert.rejects(dami.to("Status", {}, { timeoutMs: 50 }), (error: unknown) => {
    isCode("timeout")(error);
    assert.match(String(error), /within 50 ms/);
    return true;
  });
  const received: DAMIData[][] = [];
  const answer = await dami.to("SIPPeers", {}, (result) => void received.push(result), {
    timeoutMs: 5000,
  });
  assert.equal(received.length, 1);
  assert.equal(received[0], answer);
  assert.equal(answer.at(-1)!.Event, "PeerlistComplete");
  await assert.rejects(
    dami.to("Status", {}, undefined, { timeoutMs: 50 }),
    isCode("timeout"),
  );
  await shutdown(dami);
});

Deno.test("edge 9: a list answer resolves once with the response, every item and the Complete event", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const peers = await dami.to("SIPPeers", {});
  assert.deepEqual(peers.map((d) => d.Event ?? d.Response), [
    "Success",
    "PeerEntry",
    "PeerEntry",
    "PeerEntry",
    "PeerlistComplete",
  ]);
  assert.equal(peers[0].EventList, "start");
  assert.deepEqual(peers.slice(1, 4).map((p) => p.ObjectName), [6001, 6002, "trunk"]);
  assert.equal(peers[1].IPport, 5070);
  assert.equal(peers[4].ListItems, 3);
  assert.equal(dami.pendingActions, 0);
  await shutdown(dami);
});

Deno.test("edge 9: a list opened with EventList: Start (res_fax casing) is aggregated too", async () => {
  await using server = await startFakeAmi();
  server.handle(
    "FAXSessions",
    (action) =>
      action.respond("Success", { EventList: "Start", Message: "FAXSessions will follow" }) +
      action.event("FAXSessionsEntry", { Channel: "SIP/6001-00000001", SessionNumber: 1 }) +
      action.event("FAXSessionsComplete", { EventList: "Complete", Total: 1 }),
  );
  const dami = await loggedIn(server);
  const answer = await dami.toMessages("FAXSessions");
  assert.equal(answer.items.length, 1);
  assert.equal(headerValue(answer.items[0], "Event"), "FAXSessionsEntry");
  assert.equal(headerValue(answer.complete!, "Event"), "FAXSessionsComplete");
  await shutdown(dami);
});

Deno.test("edge 9: a ListItems count that differs from the items received is reported, items kept", async () => {
  await using server = await startFakeAmi();
  server.handle("QueueSummary", (action) =>
    action.respond("Success", { EventList: "start" }) +
    action.event("QueueSummary", { Queue: "support" }) +
    action.event("QueueSummaryComplete", { EventList: "Complete", ListItems: 2 }));
  const warnings: string[] = [];
  const logger = {
    debug() {},
    info() {},
    warn: (message: string) => void warnings.push(message),
    error() {},
  };
  const dami = await loggedIn(server, { logger });
  const result = await dami.to("QueueSummary");
  assert.equal(result.length, 3);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /ListItems says 2, received 1/);
  await shutdown(dami);
});

Deno.test("edge 10: AgentComplete and DBGetResponse events do not end a list", async () => {
  await using server = await startFakeAmi();
  server.handle("QueueStatus", (action, session) => {
    session.send(action.respond("Success", { EventList: "start" }));
    session.send(formatAmiMessage({ Event: "AgentComplete", Queue: "support", TalkTime: 4 }));
    return action.event("AgentComplete", { Queue: "support", Note: "an item named *Complete" }) +
      action.event("QueueMember", { Queue: "support", Name: "SIP/6001" }) +
      action.event("QueueStatusComplete", { EventList: "Complete", ListItems: 2 });
  });
  const dami = await loggedIn(server);
  const agentCompletes: DAMIData[] = [];
  dami.on("AgentComplete", (data) => agentCompletes.push(data));
  await dami.listen();
  const queue = await dami.to("QueueStatus");
  assert.deepEqual(queue.map((d) => d.Event ?? d.Response), [
    "Success",
    "AgentComplete",
    "QueueMember",
    "QueueStatusComplete",
  ]);
  assert.equal(agentCompletes.length, 1);
  assert.equal(agentCompletes[0].TalkTime, 4);
  const db = await dami.to("DBGet", { Family: "dami", Key: "k1" });
  assert.deepEqual(db.map((d) => d.Event ?? d.Response), [
    "Success",
    "DBGetResponse",
    "DBGetComplete",
  ]);
  assert.equal(db[1].Val, "v1 with spaces: and colon");
  await shutdown(dami);
});

Deno.test("edge 11: a list with ListItems 0 resolves to the response and the Complete event", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const channels = await dami.toMessages("CoreShowChannels");
  assert.equal(channels.items.length, 0);
  assert.equal(headerValue(channels.complete!, "ListItems"), "0");
  assert.deepEqual((await dami.to("CoreShowChannels")).map((d) => d.Event ?? d.Response), [
    "Success",
    "CoreShowChannelsComplete",
  ]);
  await shutdown(dami);
});

Deno.test("edge 12: a list action answered Response: Error rejects at once with Asterisk's message", async () => {
  await using server = await startFakeAmi();
  server.handle("QueueStatus", (action) => action.respond("Error", { Message: "No such queue" }));
  const dami = await loggedIn(server, { actionTimeoutMs: 60_000 });
  const order: string[] = [];
  const list = dami.to("QueueStatus", { Queue: "nope" }).catch((error) => {
    order.push("list");
    throw error;
  });
  const ping = dami.ping().then((ok) => void order.push(`ping ${ok}`));
  await assert.rejects(list, (error: unknown) => {
    assert.ok(error instanceof DAMIActionError);
    assert.equal(error.message, "QueueStatus failed: No such queue");
    return true;
  });
  await ping;
  assert.deepEqual(order, ["list", "ping true"]);
  assert.equal(dami.pendingActions, 0);
  await shutdown(dami);
});

Deno.test("edge 13: an async Originate resolves with its response and the OriginateResponse", async () => {
  await using server = await startFakeAmi({ originateDelayMs: 20 });
  const dami = await loggedIn(server);
  const seen = collect(dami);
  const answer = await dami.to("Originate", {
    Channel: "Local/100@internal",
    Application: "Wait",
    Data: 3,
    Async: true,
    CallerID: '"Alice Ünïcode" <5551234>',
    Variable: { FOO: "bar", BAZ: "qux" },
  });
  assert.equal(answer.length, 2);
  assert.equal(answer[0].Message, "Originate successfully queued");
  assert.equal(answer[1].Event, "OriginateResponse");
  assert.equal(answer[1].Response, "Success");
  assert.equal(answer[1].ActionID, answer[0].ActionID);
  const sent = (await server.session(0)).actions.at(-1)!;
  assert.deepEqual(sent.getAll("Variable"), ["FOO=bar", "BAZ=qux"]);
  assert.equal(sent.get("CallerID"), '"Alice Ünïcode" <5551234>');
  assert.ok(seen.messages.some((m) => headerValue(m, "Event") === "OriginateResponse"));
  await shutdown(dami);
});

Deno.test("edge 13: a synchronous Originate resolves with its response alone", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const answer = await dami.to("Originate", {
    Channel: "Local/100@internal",
    Context: "internal",
    Exten: 201,
    Priority: 1,
    Timeout: 5000,
  });
  assert.equal(answer.length, 1);
  assert.equal(answer[0].Response, "Success");
  await shutdown(dami);
});

Deno.test("edge 13: an async Originate that fails resolves with OriginateResponse Failure", async () => {
  await using server = await startFakeAmi();
  server.handle("Originate", (action, session) => {
    setTimeout(() =>
      session.send(action.event("OriginateResponse", {
        Response: "Failure",
        Channel: "Local/999@internal",
        Reason: 0,
        Uniqueid: "<unknown>",
      })), 5);
    return action.respond("Success", { Message: "Originate successfully queued" });
  });
  const dami = await loggedIn(server);
  const answer = await dami.to("Originate", { Channel: "Local/999@internal", Async: "yes" });
  assert.equal(answer[1].Response, "Failure");
  assert.equal(answer[1].Reason, 0);
  await shutdown(dami);
});

Deno.test("edge 14: Command Output is always an array: 1 line, N lines with empty ones kept, 0 lines", async () => {
  await using server = await startFakeAmi();
  server.handle(
    "Command",
    (action) =>
      action.get("Command") === "silent"
        ? action.respond("Success", { Message: "Command output follows" })
        : undefined,
  );
  const dami = await loggedIn(server);
  const [silent] = await dami.to("Command", { Command: "silent" });
  assert.deepEqual(silent.Output, []);
  server.handle("Command", undefined);
  const [version] = await dami.to("Command", { Command: "core show version" });
  assert.deepEqual(version.Output, [
    "Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux on 2026-11-26 03:20:45 UTC",
  ]);
  const [empty] = await dami.to("Command", { Command: "core show channels concise" });
  assert.deepEqual(empty.Output, [""]);
  const [dialplan] = await dami.to("Command", { Command: "dialplan show internal" });
  const lines = dialplan.Output as string[];
  assert.equal(lines.length, 14);
  assert.equal(lines[12], "");
  assert.ok(lines.every((l) => typeof l === "string"));
  await assert.rejects(
    dami.to("Command", { Command: "no such command here" }),
    (error: unknown) =>
      error instanceof DAMIActionError &&
      /^Command failed: Command output follows/.test(error.message),
  );
  await shutdown(dami);
});

Deno.test("edge 15: an Asterisk 13 Follows answer gives Output lines through to()", async () => {
  await using server = await startFakeAmi({
    commandStyle: "follows",
    commands: {
      "core show uptime": ["System uptime: 1 hour, 2 minutes", "", "Last reload: 5 minutes"],
    },
  });
  const dami = await loggedIn(server);
  const [answer] = await dami.to("Command", { Command: "core show uptime" });
  assert.equal(answer.Response, "Follows");
  assert.deepEqual(answer.Output, [
    "System uptime: 1 hour, 2 minutes",
    "",
    "Last reload: 5 minutes",
  ]);
  await shutdown(dami);
});

Deno.test("edge 16: an Events action that gets no reply times out and frees its pending entry", async () => {
  await using server = await startFakeAmi();
  server.handle("Events", () => undefined); // broken_events_action: no reply at all
  const dami = await loggedIn(server);
  await assert.rejects(
    dami.to("Events", { EventMask: "off" }, undefined, { timeoutMs: 100 }),
    (error: unknown) =>
      isCode("timeout")(error) &&
      /Events \(ActionID .+\) got no complete answer/.test(String(error)),
  );
  assert.equal(dami.pendingActions, 0);
  assert.equal(await dami.ping(), true);
  await shutdown(dami);
});

Deno.test("edge 19: an over-long line or too many headers is refused locally and the server reads nothing", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const session = await server.session(0);
  const actionsBefore = session.actions.length;
  const bytesBefore = session.bytesReceived;
  await assert.rejects(
    dami.to("Setvar", { Variable: "X", Value: "v".repeat(1100) }),
    isCode("invalid"),
  );
  const many: Record<string, string> = {};
  for (let i = 0; i < 130; i++) many[`H${i}`] = "1";
  await assert.rejects(dami.to("UserEvent", many), isCode("invalid"));
  await assert.rejects(
    dami.to("UserEvent", { Variable: Array(128).fill("a=b") }),
    isCode("invalid"),
  );
  assert.equal(dami.pendingActions, 0);
  assert.equal(await dami.ping(), true);
  assert.deepEqual(session.actions.slice(actionsBefore).map((a) => a.name), ["Ping"]);
  assert.equal(session.bytesReceived - bytesBefore, session.actions.at(-1)!.raw.length);
  await shutdown(dami);
});

Deno.test("a value with CR or LF is refused with code invalid and nothing is sent", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const session = await server.session(0);
  const bytesBefore = session.bytesReceived;
  for (
    const data of [
      { Channel: "SIP/100\r\nAction: Hangup" },
      { Channel: "SIP/100\nx" },
      { "Bad\r\nKey": "1" },
      { Variable: { "A\nB": "1" } },
      { Variable: ["ok=1", "bad=\r"] },
    ]
  ) {
    await assert.rejects(
      dami.to("Originate", data),
      (error: unknown) => error instanceof DAMIInvalidInputError && isCode("invalid")(error),
    );
  }
  assert.equal(await dami.ping(), true);
  assert.equal(session.bytesReceived - bytesBefore, session.actions.at(-1)!.raw.length);
  assert.equal(session.actions.at(-1)!.name, "Ping");
  await shutdown(dami);
});

Deno.test("the secret never appears in an error: refused, timed out, invalid, closed", async () => {
  const secret = "s3cr3t-Value-42";
  const messages: string[] = [];
  const capture = (error: unknown) => {
    messages.push(String(error), (error as Error).stack ?? "", JSON.stringify(error));
    return true;
  };
  {
    await using server = await startFakeAmi({ authFailDelayMs: 0 });
    await assert.rejects(loggedIn(server, {}, { secret }), capture);
    await assert.rejects(loggedIn(server, {}, { secret, authType: "md5" }), capture);
    await assert.rejects(loggedIn(server, {}, { secret: `${secret}\r\nAction: x` }), capture);
    server.handle("Login", () => undefined);
    await assert.rejects(loggedIn(server, { actionTimeoutMs: 50 }, { secret }), capture);
    server.handle("Login", (_, session) => void session.abort());
    await assert.rejects(loggedIn(server, {}, { secret }), capture);
  }
  assert.equal(messages.length, 15);
  for (const message of messages) assert.ok(!message.includes(secret), message);
});

Deno.test("edge 22: EOF in the middle of an event rejects pending actions with closed and never delivers the cut event", async () => {
  await using server = await startFakeAmi();
  server.handle("Status", () => undefined);
  const dami = await loggedIn(server);
  const seen = collect(dami);
  const events: DAMIData[] = [];
  dami.on("*", (data) => events.push(data));
  await dami.listen();
  const pending = dami.to("Status");
  const session = await server.session(0);
  await session.nextAction("Status");
  const partial = "Event: Hangup\r\nChannel: SIP/6001-00000011\r\nCause: 1";
  await session.send("Event: Newstate\r\nChannelState: 6\r\n\r\n");
  await session.cut(partial);
  await assert.rejects(pending, (error: unknown) => {
    assert.ok(error instanceof DAMIClosedError);
    assert.equal(error.code, "closed");
    return true;
  });
  const closed = await dami.closed;
  assert.equal(closed.reason, "eof");
  assert.equal(closed.discardedBytes, new TextEncoder().encode(partial).length);
  assert.ok(!seen.messages.some((m) => headerValue(m, "Event") === "Hangup"));
  assert.deepEqual(events.map((e) => e.Event), ["FullyBooted", "SuccessfulAuth", "Newstate"]);
  assert.equal(dami.pendingActions, 0);
  assert.equal(await dami.ping(), false);
  await assert.rejects(dami.to("Ping"), isCode("closed"));
});

Deno.test("edge 22: Logoff gets Goodbye, the server closes, and still-pending actions reject with closed", async () => {
  await using server = await startFakeAmi();
  server.handle("QueueStatus", () => undefined);
  const dami = await loggedIn(server);
  const pending = dami.to("QueueStatus");
  await (await server.session(0)).nextAction("QueueStatus");
  await dami.logoff();
  await assert.rejects(pending, isCode("closed"));
  assert.equal((await dami.closed).reason, "logoff");
  assert.equal((await server.session(0)).actions.at(-1)!.name, "Logoff");
  assert.equal(dami.connected, false);
});

Deno.test("edge 23: a server that stops answering Ping makes ping() resolve false; the entry is freed", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  assert.equal(await dami.ping(), true);
  server.setPingMode("silent");
  assert.equal(await dami.ping({ timeoutMs: 100 }), false);
  assert.equal(dami.pendingActions, 0);
  assert.equal(dami.connected, true);
  server.setPingMode("pong");
  assert.equal(await dami.ping(), true);
  await shutdown(dami);
});

Deno.test("edge 23: ping() resolves false, not rejects, when the connection is gone", async () => {
  await using server = await startFakeAmi({ pingMode: "close" });
  const dami = await loggedIn(server);
  assert.equal(await dami.ping({ timeoutMs: 5000 }), false);
  assert.equal((await dami.closed).reason, "eof");
  assert.equal(await dami.ping(), false);
});

Deno.test("edge 24 (library part): the reader keeps reading while nobody listens yet and while listeners are slow", async () => {
  // The daemon's half (a stalled database) is tested with the daemon; here: Asterisk's
  // writetimeout never fires because the client always drains the socket.
  const count = 20_000;
  const pool = eventTexts("sip-calls");
  const stream = Array.from({ length: count }, (_, i) => pool[i % pool.length]).join("");
  await using server = await startFakeAmi({ writeTimeoutMs: 2000 });
  const dami = await loggedIn(server, { maxBufferedEvents: count + 10 });
  const seen = collect(dami);
  const session = await server.session(0);
  await session.send(stream);
  await seen.until(() => seen.messages.length >= count);
  assert.equal(session.writeTimedOut, false);
  const delivered: DAMIData[] = [];
  dami.on("*", (data) => void delivered.push(data));
  await dami.listen();
  assert.equal(delivered.length, count + 2);
  assert.deepEqual(delivered.slice(0, 2).map((d) => d.Event), ["FullyBooted", "SuccessfulAuth"]);
  // A listener that does slow asynchronous work does not hold the reader: its work
  // waits on a gate the test opens only after every event was read.
  let inFlight = 0;
  const gate = Promise.withResolvers<void>();
  const work: Promise<void>[] = [];
  dami.on("*", () => {
    inFlight++;
    work.push(gate.promise.then(() => void inFlight--));
  });
  const before = seen.messages.length;
  await session.send(stream);
  await seen.until(() => seen.messages.length >= before + count);
  assert.equal(session.writeTimedOut, false);
  assert.equal(inFlight, count, "everything was read while listeners were still busy");
  assert.equal(delivered.length, 2 * count + 2);
  gate.resolve();
  await Promise.all(work);
  assert.equal(inFlight, 0);
  await shutdown(dami);
});

Deno.test("events that arrive before listen() are held and delivered in order by listen()", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const seen = collect(dami);
  const session = await server.session(0);
  const pushed = eventTexts("queue-call").slice(0, 50);
  await session.send(pushed.join(""));
  await seen.until(() => seen.messages.length >= 50);
  const delivered: DAMIData[] = [];
  dami.on("*", (data) => void delivered.push(data));
  assert.equal(delivered.length, 0);
  await dami.listen();
  assert.equal(delivered.length, 52);
  assert.deepEqual(delivered.slice(0, 2).map((d) => d.Event), ["FullyBooted", "SuccessfulAuth"]);
  assert.deepEqual(
    delivered.slice(2).map((d) => d.Event),
    pushed.map((t) => t.slice("Event: ".length, t.indexOf("\r\n"))),
  );
  await session.send("Event: Hangup\r\nCause: 16\r\n\r\n");
  await seen.until(() => seen.messages.length >= 51);
  assert.equal(delivered.at(-1)!.Event, "Hangup");
  await shutdown(dami);
});

Deno.test("past maxBufferedEvents before listen(), listen() delivers the held ones and rejects with a clear error", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server, { maxBufferedEvents: 10 });
  const seen = collect(dami);
  const session = await server.session(0);
  await session.send(eventTexts("sip-calls").slice(0, 40).join(""));
  await seen.until(() => seen.messages.length >= 40);
  const delivered: DAMIData[] = [];
  dami.on("*", (data) => void delivered.push(data));
  await assert.rejects(dami.listen(), (error: unknown) => {
    isCode("dropped")(error);
    assert.ok(error instanceof DAMIEventsDroppedError && error.dropped === 32);
    assert.match(String(error), /32 events arrived before listen\(\).*maxBufferedEvents/);
    return true;
  });
  assert.equal(delivered.length, 10);
  assert.equal(delivered[0].Event, "FullyBooted");
  await dami.listen();
  await shutdown(dami);
});

Deno.test("listeners: on is case-insensitive, off removes, once fires once, * gets every event", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const seen = collect(dami);
  const calls: string[] = [];
  const hangup = (d: DAMIData) => void calls.push(`hangup ${d.Cause}`);
  dami.on("hangup", hangup);
  dami.once("Newstate", (d) => void calls.push(`once ${d.ChannelState}`));
  dami.on("*", (d) => void calls.push(`* ${d.Event}`));
  dami.on("Hangup", () => {
    throw new Error("a throwing listener does not stop the others");
  });
  await dami.listen();
  const session = await server.session(0);
  await session.send(
    "Event: Newstate\r\nChannelState: 5\r\n\r\nEvent: Hangup\r\nCause: 16\r\n\r\n" +
      "Event: Newstate\r\nChannelState: 6\r\n\r\n",
  );
  await seen.until(() => seen.messages.length >= 3);
  dami.off("Hangup", hangup);
  await session.send("Event: Hangup\r\nCause: 17\r\n\r\n");
  await seen.until(() => seen.messages.length >= 4);
  assert.deepEqual(calls, [
    "* FullyBooted",
    "* SuccessfulAuth",
    "once 5",
    "* Newstate",
    "hangup 16",
    "* Hangup",
    "* Newstate",
    "* Hangup",
  ]);
  await shutdown(dami);
});

Deno.test("listeners registered before connecting receive events once listening", async () => {
  await using server = await startFakeAmi();
  const dami = client(server);
  const booted: DAMIData[] = [];
  dami.on("FullyBooted", (d) => void booted.push(d));
  await dami.connectAndLogin({ username: "dami", secret: SECRET });
  await dami.listen();
  assert.equal(booted.length, 1);
  assert.equal(booted[0].Status, "Fully Booted");
  await shutdown(dami);
});

Deno.test("to() calls its callback with the same answer it resolves to", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  let fromCallback: DAMIData[] | undefined;
  const result = await dami.to("CoreStatus", {}, (answer) => (fromCallback = answer));
  assert.equal(fromCallback, result);
  assert.equal(result[0].CoreCurrentCalls, 0);
  assert.equal(result[0].CoreStartupDate, "2026-11-26");
  await shutdown(dami);
});

Deno.test("a user ActionID is sent as given and comes back in the answer", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const answer = await dami.toMessages("Ping", { ActionID: "my-ping-7" });
  assert.equal(answer.actionId, "my-ping-7");
  assert.equal(headerValue(answer.response, "ActionID"), "my-ping-7");
  const sent = (await server.session(0)).actions.at(-1)!;
  assert.deepEqual(sent.headers, [["Action", "Ping"], ["ActionID", "my-ping-7"]]);
  await shutdown(dami);
});

Deno.test("numbers convert only when lossless in received events", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const seen = collect(dami);
  let data: DAMIData | undefined;
  dami.on("Newchannel", (d) => (data = d));
  await dami.listen();
  await (await server.session(0)).send(
    "Event: Newchannel\r\nCallerIDNum: 0123\r\nExten: +15551234\r\nPriority: 1\r\n" +
      "Uniqueid: 1795663605.15\r\nBig: 9007199254740993\r\nVariable: A\r\nVariable: 2\r\n\r\n",
  );
  await seen.until(() => seen.messages.length >= 1);
  assert.deepEqual(data, {
    Event: "Newchannel",
    CallerIDNum: "0123",
    Exten: "+15551234",
    Priority: 1,
    Uniqueid: "1795663605.15",
    Big: "9007199254740993",
    Variable: ["A", 2],
  });
  await shutdown(dami);
});

Deno.test("close() rejects pending actions with closed and later actions are refused without writing", async () => {
  await using server = await startFakeAmi();
  server.handle("Status", () => undefined);
  const dami = await loggedIn(server);
  const pending = dami.to("Status");
  const session = await server.session(0);
  await session.nextAction("Status");
  dami.close();
  await assert.rejects(pending, isCode("closed"));
  await assert.rejects(dami.to("Ping"), isCode("closed"));
  assert.equal((await dami.closed).reason, "local");
  await session.closed;
  assert.equal(session.actions.at(-1)!.name, "Status");
});

Deno.test("a message past maxMessageBytes closes the connection with reason protocol", async () => {
  await using server = await startFakeAmi();
  server.handle("Status", () => undefined);
  const dami = await loggedIn(server, { maxMessageBytes: 4096 });
  const pending = dami.to("Status");
  const session = await server.session(0);
  await session.nextAction("Status");
  await session.send(
    "Event: Flood\r\n" + "Output: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(200),
  );
  await assert.rejects(pending, isCode("closed"));
  const closed = await dami.closed;
  assert.equal(closed.reason, "protocol");
  assert.match(closed.message, /exceeded 4096 bytes/);
  assert.ok(closed.error instanceof DAMIMessageTooLargeError);
  assert.equal(closed.error.limitBytes, 4096);
  assert.ok(closed.discardedBytes > 4096);
  await session.closed;
});

Deno.test("issue 8: a Presence: Follows event is an ordinary event and the ones after it are delivered", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const seen = collect(dami);
  const session = await server.session(0);
  await session.send(
    "Event: PresenceStatus\r\nPresence: Follows\r\n\r\n" +
      "Presence: Follows\r\nStatus: away\r\n\r\nEvent: Hangup\r\nCause: 16\r\n\r\n",
  );
  await seen.until(() => seen.messages.some((m) => headerValue(m, "Event") === "Hangup"));
  assert.deepEqual(seen.messages.slice(-3).map((m) => m.headers[0]), [
    ["Event", "PresenceStatus"],
    ["Presence", "Follows"],
    ["Event", "Hangup"],
  ]);
  assert.equal(await dami.ping(), true);
  await shutdown(dami);
});

Deno.test("issue 8: a Response: Follows body that never ends closes the connection at maxMessageBytes, after the messages before it", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server, { maxMessageBytes: 8192 });
  const seen = collect(dami);
  const session = await server.session(0);
  // Blank lines inside the body: only the message's own byte count can stop it.
  await session.send(
    "Event: Before\r\n\r\nResponse: Follows\r\nPrivilege: Command\r\n" +
      "a CLI line, then a blank line\n\n".repeat(1000),
  );
  const closed = await dami.closed;
  assert.equal(closed.reason, "protocol");
  assert.ok(closed.error instanceof DAMIMessageTooLargeError);
  assert.ok(closed.discardedBytes > 8192);
  assert.deepEqual(seen.messages.map((m) => headerValue(m, "Event")).slice(-1), ["Before"]);
  await session.closed;
});

Deno.test("connecting to a port nobody listens on rejects with DAMIConnectError, code connect", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const dami = new DAMI({ hostname: "127.0.0.1", port, logger: false });
  await assert.rejects(
    dami.connectAndLogin({ username: "dami", secret: SECRET }),
    (error: unknown) =>
      isCode("connect")(error) && error instanceof DAMIConnectError && !error.timedOut &&
      String(error).includes(`127.0.0.1:${port}`),
  );
});

Deno.test("a connect that outlasts connectTimeoutMs rejects with DAMIConnectError timedOut, not an action timeout", async () => {
  // A TLS handshake with a peer that accepts and never answers never completes.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const accepted = listener.accept();
  const dami = new DAMI({ hostname: "127.0.0.1", port, tls: true, connectTimeoutMs: 100 });
  await assert.rejects(dami.connect(), (error: unknown) => {
    isCode("connect")(error);
    assert.ok(error instanceof DAMIConnectError && error.timedOut);
    assert.match(String(error), /took longer than 100 ms/);
    return true;
  });
  assert.equal(dami.connected, false);
  const peer = await accepted;
  // The abandoned handshake ends when the peer closes; DAMI closes what it gets, if anything.
  const ended = peer.read(new Uint8Array(1024)).catch(() => null);
  peer.close();
  await ended;
  listener.close();
});

Deno.test("issue 8: close() during a pending connect() wins: connect rejects with closed and no socket stays open", async () => {
  await using server = await startFakeAmi();
  for (let i = 0; i < 20; i++) {
    const dami = client(server);
    const connecting = dami.connect();
    dami.close();
    await assert.rejects(connecting, (error: unknown) => {
      isCode("closed")(error);
      assert.match(String(error), /abandoned: close\(\) was called/);
      return true;
    });
    assert.equal(dami.connected, false);
    assert.equal(dami.conn, undefined);
  }
  // Every connection the server did accept is closed by the client (none leaks); the
  // test's resource sanitizer would also fail on a socket left open.
  await Promise.all(server.sessions.map((session) => session.closed));
});

Deno.test("issue 8: a second connect() while one is pending rejects with a state error and only one socket is opened", async () => {
  await using server = await startFakeAmi();
  const dami = client(server);
  const first = dami.connect();
  await assert.rejects(dami.connect(), (error: unknown) => {
    isCode("state")(error);
    assert.ok(error instanceof DAMIStateError);
    assert.match(String(error), /already in progress/);
    return true;
  });
  await first;
  await assert.rejects(dami.connect(), (error: unknown) => {
    assert.ok(error instanceof DAMIStateError);
    assert.match(String(error), /already connected/);
    return true;
  });
  await dami.connectAndLogin({ username: "dami", secret: SECRET }).then(
    () => assert.fail("connectAndLogin while connected must reject"),
    isCode("state"),
  );
  assert.equal(dami.connected, true);
  await shutdown(dami);
  assert.equal(server.connections, 1);
});

Deno.test("the same DAMI can connect again after its connection ended", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  await server.restart({ downMs: 10 });
  assert.equal((await dami.closed).reason, "eof");
  await dami.connectAndLogin({ username: "dami", secret: SECRET });
  assert.equal(dami.connected, true);
  assert.equal(await dami.ping(), true);
  assert.equal(server.connections, 2);
  await shutdown(dami);
});

Deno.test("every write chunked into 1-byte pieces still yields the same answers", async () => {
  await using server = await startFakeAmi({ chunking: { mode: "bytes" } });
  const dami = await loggedIn(server);
  const peers = await dami.to("SIPPeers");
  assert.equal(peers.length, 5);
  server.setChunking({ mode: "random", seed: 7, maxChunk: 5 });
  const [dialplan] = await dami.to("Command", { Command: "dialplan show internal" });
  assert.equal((dialplan.Output as string[]).length, 14);
  await shutdown(dami);
});

Deno.test("a server that stops reading does not stop the client from receiving", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server, { actionTimeoutMs: 60_000 });
  const seen = collect(dami);
  const session = await server.session(0);
  session.pauseReading();
  // Far more than the socket buffers hold: the client's writes stall.
  const big = "x".repeat(1000);
  const stalled = Array.from(
    { length: 8000 },
    () => dami.to("UserEvent", { UserEvent: "fill", Data: big }).catch(() => "settled"),
  );
  await session.send("Event: Hangup\r\nCause: 16\r\n\r\n");
  await seen.until(() => seen.messages.some((m) => headerValue(m, "Event") === "Hangup"));
  assert.ok(dami.pendingActions > 0);
  dami.close();
  assert.ok((await Promise.all(stalled)).every((r) => r === "settled"));
  assert.equal(dami.pendingActions, 0);
});

Deno.test("off() removes a listener added with once() before it fires", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const seen = collect(dami);
  const calls: string[] = [];
  const listener = (d: DAMIData) => void calls.push(String(d.Event));
  dami.once("Hangup", listener);
  dami.off("Hangup", listener);
  await dami.listen();
  await (await server.session(0)).send("Event: Hangup\r\nCause: 16\r\n\r\n");
  await seen.until(() => seen.messages.length >= 1);
  assert.deepEqual(calls, []);
  await shutdown(dami);
});

Deno.test("a connection opened right after close() is not ended by the previous one's reader", async () => {
  await using server = await startFakeAmi();
  const dami = client(server);
  for (let i = 0; i < 20; i++) {
    await dami.connectAndLogin({ username: "dami", secret: SECRET });
    dami.close();
  }
  await dami.connectAndLogin({ username: "dami", secret: SECRET });
  // Every earlier connection has ended on both sides: their readers are done.
  await Promise.all(server.sessions.slice(0, 20).map((session) => session.closed));
  assert.equal(dami.connected, true);
  assert.equal(await dami.ping(), true);
  await shutdown(dami);
});

Deno.test("after close() no further message of the same read reaches listeners", async () => {
  await using server = await startFakeAmi();
  const dami = await loggedIn(server);
  const calls: string[] = [];
  dami.on("*", (d) => {
    calls.push(String(d.Event));
    if (d.Event === "Newstate") dami.close();
  });
  await dami.listen();
  await (await server.session(0)).send(
    "Event: Newstate\r\nChannelState: 5\r\n\r\nEvent: Hangup\r\nCause: 16\r\n\r\n",
  );
  await dami.closed;
  assert.deepEqual(calls, ["FullyBooted", "SuccessfulAuth", "Newstate"]);
});

Deno.test("the reader lets other tasks run after each socket read, however much data is waiting", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  // A small read buffer: the burst below takes about 80 reads.
  const dami = await loggedIn(server, { readBufferBytes: 1024 });
  const session = await server.session(0);
  const events = 200;
  let received = 0;
  const all = Promise.withResolvers<void>();
  dami.onMessage((m) => {
    if (m.kind === "event" && ++received === events) all.resolve();
  });
  // Tasks queued while the burst is read: each records how far the reader had got.
  const turns: number[] = [];
  const turn = () => {
    turns.push(received);
    if (received < events) setImmediate(turn);
  };
  let burst = "";
  for (let i = 0; i < events; i++) {
    burst += `Event: Newexten\r\nChannel: PJSIP/6001-00000001\r\nUniqueid: 1.${i}\r\n` +
      `AppData: ${"x".repeat(300)}\r\n\r\n`;
  }
  await session.send(burst);
  setImmediate(turn);
  await all.promise;
  const during = new Set(turns.filter((n) => n > 0 && n < events));
  assert.ok(during.size >= 10, `tasks ran at ${JSON.stringify(turns)}`);
  await shutdown(dami);
});
