/**
 * The per-server supervisor against the fake Asterisk: backoff, login failures,
 * PBX restarts, keepalive and half-open connections, filters and event mask on every
 * connection, not_connected runs. Bounds of behaviour are asserted, never speed.
 */
import assert from "node:assert/strict";
import { type ActionConfig, parseConfig, type ServerConfig } from "../daemon/config.ts";
import { RECONNECT_RETRY, retryDelay } from "../daemon/retry.ts";
import {
  type ActionRun,
  type SessionEnd,
  type SessionRecorder,
  type SessionStart,
  Supervisor,
  type SupervisorEvent,
} from "../daemon/supervisor.ts";
import { type AmiMessage, headerValue } from "../dami/message.ts";
import { startFakeAmi } from "./fake_ami_server.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";

/** Keeps what the supervisor records, in order. */
class RecordingRecorder implements SessionRecorder {
  started: SessionStart[] = [];
  ended: SessionEnd[] = [];
  events: { sessionId: string; message: AmiMessage }[] = [];
  runs: ActionRun[] = [];
  sessionStarted(session: SessionStart) {
    this.started.push(session);
  }
  event(_server: string, sessionId: string, message: AmiMessage) {
    this.events.push({ sessionId, message });
  }
  sessionEnded(session: SessionEnd) {
    this.ended.push(session);
  }
  actionRun(run: ActionRun) {
    this.runs.push(run);
  }
  eventNames(sessionId: string): string[] {
    return this.events.filter((e) => e.sessionId === sessionId).map((e) =>
      headerValue(e.message, "Event") ?? ""
    );
  }
}

function config(server: Record<string, unknown>, actions: unknown[] = []) {
  return parseConfig(
    JSON.stringify({
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        username: "dami",
        secret: "dami-secret",
        ...server,
      }],
      actions,
    }),
    "test.jsonc",
    { env: {} },
  );
}

function serverConfig(server: Record<string, unknown>): ServerConfig {
  return config(server).servers[0];
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A port on which nothing listens. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("reconnect delays double from initialMs up to the cap, with full jitter", () => {
  const half = Array.from({ length: 10 }, (_, i) => retryDelay(RECONNECT_RETRY, i, () => 0.5));
  assert.deepEqual(half, [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000]);
  const top = Array.from({ length: 8 }, (_, i) => retryDelay(RECONNECT_RETRY, i, () => 0.999));
  assert.deepEqual(top, [499, 999, 1998, 3996, 7992, 15984, 29970, 29970]);
  assert.equal(retryDelay(RECONNECT_RETRY, 3, () => 0), 0);
  assert.equal(
    retryDelay(RECONNECT_RETRY, 1000, () => 0.999),
    29970,
    "huge attempts stay capped",
  );
});

Deno.test("a server that refuses connections is retried with the backoff sequence, capped", async () => {
  const events: SupervisorEvent[] = [];
  const supervisor = new Supervisor({
    server: serverConfig({
      port: closedPort(),
      reconnect: { initialMs: 20, maxMs: 80, stableMs: 60000 },
    }),
    recorder: new RecordingRecorder(),
    random: () => 0.5,
    onEvent: (e) => events.push(e),
  });
  supervisor.start();
  await waitFor("6 backoffs", () => events.filter((e) => e.type === "backoff").length >= 6);
  await supervisor.stop();
  const delays = events.flatMap((e) => e.type === "backoff" ? [e.delayMs] : []).slice(0, 6);
  assert.deepEqual(delays, [10, 20, 40, 40, 40, 40]);
  assert.ok(events.some((e) => e.type === "connect_failed"));
  assert.equal(supervisor.status.state, "stopped");
});

Deno.test("a refused login is logged once per attempt and waits the cap: no storm", async () => {
  await using server = await startFakeAmi({ secret: "the-real-secret", authFailDelayMs: 0 });
  const events: SupervisorEvent[] = [];
  const recorder = new RecordingRecorder();
  const supervisor = new Supervisor({
    server: serverConfig({
      port: server.port,
      reconnect: { initialMs: 5, maxMs: 400, stableMs: 60000 },
    }),
    recorder,
    random: () => 0.5,
    onEvent: (e) => events.push(e),
  });
  supervisor.start();
  await waitFor(
    "3 refused logins",
    () => events.filter((e) => e.type === "login_failed").length >= 3,
  );
  await supervisor.stop();
  // With network-failure backoff from 5 ms the delays would be 2, 5, 10 ms...: after a
  // refusal the supervisor waits the 400 ms cap every time, jitter or not.
  const failures = events.filter((e) => e.type === "login_failed");
  assert.equal(failures.length, server.connections);
  const backoffs = events.flatMap((e) => e.type === "backoff" ? [e.delayMs] : []);
  assert.ok(backoffs.length >= 2, `${backoffs.length} backoffs`);
  assert.match((failures[0] as { message: string }).message, /Authentication failed/);
  assert.ok(!JSON.stringify(events).includes("dami-secret"), "the secret never appears");
  assert.deepEqual(
    events.flatMap((e) => e.type === "backoff" ? [e.delayMs] : []).filter((d) => d !== 400),
    [],
  );
  assert.equal(recorder.started.length, 0, "no session row for a refused login");
});

Deno.test("MD5 login, event mask and every filter are applied on each connection", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const recorder = new RecordingRecorder();
  const supervisor = new Supervisor({
    server: serverConfig({
      port: server.port,
      auth: "md5",
      eventMask: "call,agent",
      filters: ["!Event: VarSet", "!Event: RTCP*"],
      reconnect: { initialMs: 10, maxMs: 50, stableMs: 60000 },
    }),
    recorder,
  });
  supervisor.start();
  await waitFor(
    "connected",
    () => supervisor.connected && server.sessions[0]?.filters.length === 2,
  );
  server.sessions[0].abort();
  await waitFor("second session", () => server.sessions[1]?.filters.length === 2);
  await supervisor.stop();
  for (const session of server.sessions) {
    const login = session.actions.find((a) => a.name === "Login")!;
    assert.equal(login.get("AuthType"), "MD5");
    assert.equal(login.get("Secret"), undefined, "MD5 never sends the secret");
    assert.equal(session.eventMask, "call,agent");
    assert.deepEqual(session.filters, ["!Event: VarSet", "!Event: RTCP*"]);
  }
  assert.equal(recorder.started.length, 2);
  assert.match(recorder.ended[0].reason, /^eof: /);
  assert.match(recorder.ended[1].reason, /^stopped: /);
});

Deno.test("a PBX restart mid-call ends the session with its reason and a new one starts", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const recorder = new RecordingRecorder();
  const onConnect: ActionConfig[] = config({}, [
    { name: "channels", action: "CoreShowChannels", onConnect: true },
  ]).actions;
  const supervisor = new Supervisor({
    server: serverConfig({ port: server.port, reconnect: { initialMs: 10, maxMs: 100 } }),
    recorder,
    onConnect,
  });
  supervisor.start();
  await waitFor("on-connect run", () => recorder.runs.length === 1);
  const first = recorder.started[0].id;
  const session = await server.session(0);
  await session.send(
    "Event: Newchannel\r\nPrivilege: call,all\r\nChannel: SIP/6001-00000001\r\nUniqueid: 1.1\r\nLinkedid: 1.1\r\n\r\n" +
      "Event: DialBegin\r\nPrivilege: call,all\r\nChannel: SIP/6001-00000001\r\nUniqueid: 1.1\r\nDestUniqueid: 1.2\r\n\r\n",
  );
  await waitFor("call events", () => recorder.eventNames(first).includes("DialBegin"));
  await server.restart({ downMs: 300 });
  await waitFor(
    "second session",
    () => recorder.started.length === 2 && recorder.runs.length === 2,
  );
  await supervisor.stop();

  assert.equal(recorder.ended[0].id, first);
  assert.match(
    recorder.ended[0].reason,
    /^shutdown: the PBX announced Shutdown \(Cleanly, restarting\)/,
  );
  assert.deepEqual(recorder.eventNames(first).slice(-3), ["Newchannel", "DialBegin", "Shutdown"]);
  assert.equal(recorder.ended[0].eventCount, recorder.eventNames(first).length);
  const second = recorder.started[1].id;
  assert.notEqual(second, first);
  assert.ok(recorder.started[1].connectedAt >= recorder.ended[0].disconnectedAt);
  assert.equal(recorder.started[1].banner, "Asterisk Call Manager/9.0.0");
  assert.deepEqual(recorder.runs.map((r) => [r.name, r.status, r.sessionId]), [
    ["channels", "ok", first],
    ["channels", "ok", second],
  ]);
  // Events are numbered per session from 1, contiguous.
  for (const id of [first, second]) {
    const seqs = recorder.events.filter((e) => e.sessionId === id).map((e) => e.message.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
  }
});

Deno.test("after maxMissed unanswered Pings in a row the connection is declared dead and replaced", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const recorder = new RecordingRecorder();
  const events: SupervisorEvent[] = [];
  const keepalive = { schedule: "* * * * * *", timeoutMs: 300, maxMissed: 2 };
  const supervisor = new Supervisor({
    server: serverConfig({ port: server.port, keepalive, reconnect: { initialMs: 10, maxMs: 50 } }),
    recorder,
    onEvent: (e) => events.push(e),
  });
  supervisor.start();
  await waitFor("connected", () => supervisor.connected);
  await waitFor("a Pong", () => (server.sessions[0]?.actions.some((a) => a.name === "Ping")));
  server.setPingMode("silent");
  await waitFor("disconnect", () => recorder.ended.length === 1);
  server.setPingMode("pong");
  await waitFor("reconnected", () => recorder.started.length === 2 && supervisor.connected);
  await supervisor.stop();

  // Declared dead after exactly maxMissed unanswered Pings (so within
  // interval x maxMissed + timeoutMs), not before and not later.
  assert.match(recorder.ended[0].reason, /^keepalive: 2 Pings unanswered within 300 ms/);
  assert.deepEqual(
    events.filter((e) => e.type === "keepalive_miss").map((e) => (e as { missed: number }).missed),
    [1, 2],
  );
});

Deno.test("a half-open connection (peer silent, no FIN) is detected and replaced", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const recorder = new RecordingRecorder();
  const events: SupervisorEvent[] = [];
  const keepalive = { schedule: "* * * * * *", timeoutMs: 400, maxMissed: 3 };
  const supervisor = new Supervisor({
    server: serverConfig({ port: server.port, keepalive, reconnect: { initialMs: 10, maxMs: 50 } }),
    recorder,
    onEvent: (e) => events.push(e),
  });
  supervisor.start();
  await waitFor("connected", () => supervisor.connected);
  const session = await server.session(0);
  // The peer vanishes: it neither reads, answers nor closes.
  session.answering = false;
  session.pauseReading();
  await waitFor("disconnect", () => recorder.ended.length === 1);
  await waitFor("reconnected", () => recorder.started.length === 2 && supervisor.connected);
  await supervisor.stop();
  assert.match(recorder.ended[0].reason, /^keepalive: 3 Pings unanswered/);
  assert.deepEqual(
    events.filter((e) => e.type === "keepalive_miss").map((e) => (e as { missed: number }).missed),
    [1, 2, 3],
  );
  // The supervisor closed its end of the dead connection: once the peer reads again, it
  // finds the end of the stream.
  assert.equal(session.isClosed, false);
  session.resumeReading();
  await session.closed;
  assert.equal(session.isClosed, true);
});

Deno.test("an action while disconnected is recorded not_connected at once, nothing is sent later", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const port = server.port;
  server.stopListening();
  const recorder = new RecordingRecorder();
  const [peers] = config({}, [{ name: "peers", action: "SIPPeers", schedule: "* * * * * *" }])
    .actions;
  const events: SupervisorEvent[] = [];
  const supervisor = new Supervisor({
    server: serverConfig({ port, reconnect: { initialMs: 50, maxMs: 100 } }),
    recorder,
    onEvent: (e) => events.push(e),
  });
  supervisor.start();
  const run = await supervisor.runAction(peers);
  assert.equal(run.status, "not_connected");
  assert.equal(run.finishedAt?.getTime(), run.startedAt.getTime());
  assert.equal(run.actionId, null);
  assert.match(run.message ?? "", /server pbx1 is not connected/);
  assert.deepEqual(recorder.runs, [run]);
  await waitFor("a failed reconnect", () => events.some((e) => e.type === "connect_failed"));
  server.startListening();
  await waitFor("connected", () => supervisor.connected);
  // A later action goes out and is answered: anything replayed at reconnection would
  // have been sent before it.
  const [ping] = config({}, [{ name: "ping", action: "Ping", schedule: "* * * * * *" }]).actions;
  assert.equal((await supervisor.runAction(ping)).status, "ok");
  await supervisor.stop();
  assert.equal(
    server.sessions.flatMap((s) => s.actions).filter((a) => a.name === "SIPPeers").length,
    0,
    "the missed run is not replayed after reconnecting",
  );
});

Deno.test("an action run records status, item count, response and its ActionID", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  server.handle("Hang", () => undefined);
  const recorder = new RecordingRecorder();
  const actions = config({}, [
    { name: "peers", action: "SIPPeers", onConnect: true },
    { name: "bad", action: "Nope", onConnect: true },
    { name: "hang", action: "Hang", onConnect: true, timeoutMs: 200 },
  ]).actions;
  const supervisor = new Supervisor({
    server: serverConfig({ port: server.port }),
    recorder,
    onConnect: actions,
  });
  supervisor.start();
  await waitFor("three runs", () => recorder.runs.length === 3);
  await supervisor.stop();
  const [peers, bad, hang] = recorder.runs;
  assert.equal(peers.status, "ok");
  assert.equal(peers.itemCount, 3);
  assert.equal(peers.response?.EventList, "start");
  assert.equal(peers.actionId, peers.id);
  const items = recorder.events.filter((e) =>
    headerValue(e.message, "ActionID") === peers.actionId
  );
  assert.deepEqual(
    items.map((e) => headerValue(e.message, "Event")),
    ["PeerEntry", "PeerEntry", "PeerEntry", "PeerlistComplete"],
  );
  assert.equal(bad.status, "error");
  assert.match(bad.message ?? "", /Invalid\/unknown command/);
  assert.equal(bad.response?.Response, "Error");
  assert.equal(hang.status, "timeout");
  assert.equal(hang.itemCount, null);
});

Deno.test("stop sends Logoff and records the session as stopped", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const recorder = new RecordingRecorder();
  const supervisor = new Supervisor({ server: serverConfig({ port: server.port }), recorder });
  supervisor.start();
  await waitFor("connected", () => supervisor.connected);
  await supervisor.stop();
  assert.ok(server.sessions[0].actions.some((a) => a.name === "Logoff"));
  assert.equal(recorder.ended.length, 1);
  assert.match(recorder.ended[0].reason, /^stopped: the daemon is shutting down/);
  assert.equal(server.connections, 1, "no reconnect after stop");
});

Deno.test("a malformed event is recorded with its raw bytes, counted and logged, and the session goes on", async () => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  const recorder = new RecordingRecorder();
  const metrics = new DaemonMetrics();
  const supervisor = new Supervisor({
    server: serverConfig({ port: server.port }),
    recorder,
    metrics,
  });
  supervisor.start();
  try {
    const session = await server.session(0);
    await waitFor("login", () => session.loggedIn);
    const bad = new Uint8Array([
      ...new TextEncoder().encode(
        "Event: UserEvent\r\nUserEvent: x\r\nnot a header line\r\nData: ",
      ),
      0xff,
      0xfe,
      ...new TextEncoder().encode("\r\n\r\nEvent: UserEvent\r\nUserEvent: after\r\n\r\n"),
    ]);
    await session.send(bad);
    await waitFor(
      "both events",
      () =>
        recorder.events.filter((e) => headerValue(e.message, "Event") === "UserEvent").length === 2,
    );
    const [malformed, after] = recorder.events.filter((e) =>
      headerValue(e.message, "Event") === "UserEvent"
    ).map((e) => e.message);
    assert.equal(malformed.malformedLines, 1);
    assert.deepEqual(malformed.rawBytes, bad.subarray(0, bad.indexOf(0xfe) + 5));
    assert.equal(headerValue(after, "UserEvent"), "after");
    assert.equal(after.seq, malformed.seq + 1);
    const text = await metrics.registry.metrics();
    assert.match(text, /dami_malformed_messages_total\{server="pbx1"\} 1\b/);
  } finally {
    await supervisor.stop();
  }
});
