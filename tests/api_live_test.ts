/**
 * The live state (`/api/live`, `/api/live/stream`) against recorded Asterisk sessions:
 * a queue call (caller waiting, agent answers, hang-up), an abandon, a PBX restart, and a
 * daemon restart that rebuilds the same state from the log.
 */
import assert from "node:assert/strict";
import type { AmiMessage } from "../dami/message.ts";
import { type ReadSide, startReadSide } from "./api_harness.ts";
import { fixtureEvents, insertMessages, insertSession, type TimedMessage } from "./load_events.ts";
import { SseReader } from "./sse_client.ts";

const CALLER = "1795663698.47";
const AGENT_LEG = "1795663698.48";

interface LiveBody {
  as_of: number;
  servers: Record<string, {
    channels: { uniqueid: string; state: string; duration_s: number }[];
    calls: { linkedid: string; parties: { uniqueid: string }[] }[];
    queues: {
      name: string;
      callers: { uniqueid: string; position: number; wait_s: number; joined_at: string }[];
      members: { interface: string; in_call: boolean; state: string; paused: boolean }[];
    }[];
    endpoints: { name: string; state: string }[];
  }>;
}

async function live(side: ReadSide): Promise<LiveBody> {
  const response = await side.get("/api/live");
  assert.equal(response.status, 200);
  return await response.json();
}

/** Inserts `messages` into session `session` of pbx1, wakes the tail, waits for as_of. */
async function feed(side: ReadSide, session: string, messages: readonly TimedMessage[]) {
  await insertMessages(side.store.db, "pbx1", session, messages);
  side.handle.wake();
  const last = (await side.ids()).at(-1)!;
  const deadline = Date.now() + 10_000;
  while ((await live(side)).as_of < last) {
    assert.ok(Date.now() < deadline, "the live state never caught up");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function newSession(side: ReadSide, atMs: number): Promise<string> {
  const id = crypto.randomUUID();
  await insertSession(side.store.db, {
    id,
    server: "pbx1",
    connectedAtMs: atMs,
    disconnectedAtMs: null,
  });
  return id;
}

/** A copy of a recorded message with other headers and a later seq. */
function variant(
  m: TimedMessage,
  seq: number,
  set: Record<string, string>,
  extra: [string, string][] = [],
): TimedMessage {
  const headers = [
    ...m.message.headers.map(([k, v]) => [k, set[k] ?? v] as [string, string]),
    ...extra,
  ];
  return { ...m, message: { ...m.message, headers, seq } as AmiMessage };
}

function withoutClock(body: LiveBody): unknown {
  return JSON.parse(JSON.stringify(body, (k, v) => k === "duration_s" || k === "wait_s" ? 0 : v));
}

for (const kind of ["postgres", "pglite"] as const) {
  Deno.test(`${kind}: live state follows a recorded queue call: waiting, answered by the agent, hung up; then an abandon`, async () => {
    const side = await startReadSide({ kind });
    try {
      const events = fixtureEvents("queue-call");
      const session = await newSession(side, events[0].receivedAtMs - 1000);
      const stream = new SseReader(await side.get("/api/live/stream"));
      await stream.next(); // retry:
      const snapshot = await stream.next();
      assert.equal(snapshot?.event, "snapshot");
      assert.deepEqual(JSON.parse(snapshot!.data).servers, {});

      // Up to QueueCallerJoin: the caller waits in support.
      await feed(side, session, events.slice(0, 22));
      let state = (await live(side)).servers.pbx1;
      const support = state.queues.find((q) => q.name === "support")!;
      assert.deepEqual(support.callers.map((c) => [c.uniqueid, c.position]), [[CALLER, 1]]);
      assert.equal(support.callers[0].joined_at, new Date(events[21].receivedAtMs).toISOString());
      assert.ok(support.callers[0].wait_s >= 0);
      assert.deepEqual(state.channels.map((c) => [c.uniqueid, c.state]), [[CALLER, "Up"]]);

      // The stream told the same, as changes.
      const seen: { kind: string; key: string; value: unknown }[] = [];
      while (
        !seen.some((c) =>
          c.kind === "queue" &&
          (c.value as LiveBody["servers"][string]["queues"][number])?.callers?.length === 1
        )
      ) {
        const message = await stream.next();
        assert.equal(message?.event, "change");
        seen.push(...JSON.parse(message!.data).changes);
      }

      // Through AgentConnect and the bridge: the caller left the queue, the agent is in
      // a call, and the call has both parties.
      await feed(side, session, events.slice(22, 47));
      state = (await live(side)).servers.pbx1;
      const during = state.queues.find((q) => q.name === "support")!;
      assert.deepEqual(during.callers, []);
      assert.deepEqual(
        during.members.map((m) => [m.interface, m.in_call]),
        [["SIP/6001", true]],
      );
      assert.deepEqual(
        state.calls.map((c) => [c.linkedid, c.parties.map((p) => p.uniqueid).sort()]),
        [[CALLER, [CALLER, AGENT_LEG]]],
      );

      // QueueStatus and CoreShowChannels during the call agree; then the hang-up.
      await feed(side, session, events.slice(47));
      state = (await live(side)).servers.pbx1;
      assert.deepEqual(state.channels, []);
      assert.deepEqual(state.calls, []);
      assert.deepEqual(
        state.queues.find((q) => q.name === "support")!.members.map((
          m,
        ) => [m.interface, m.in_call]),
        [["SIP/6001", false]],
      );

      // An abandon: the same caller joins again and hangs up while waiting.
      const join = events[21];
      await feed(side, session, [variant(join, 1001, { Uniqueid: "1795663720.60" })]);
      assert.equal((await live(side)).servers.pbx1.queues[0].callers.length, 1);
      await feed(side, session, [
        variant(join, 1002, {
          Event: "QueueCallerAbandon",
          Uniqueid: "1795663720.60",
        }, [["OriginalPosition", "1"], ["HoldTime", "4"]]),
      ]);
      assert.deepEqual((await live(side)).servers.pbx1.queues[0].callers, []);
      await stream.cancel();

      // A daemon restart rebuilds the same state from the log.
      const following = await live(side);
      const rebuilt = await startReadSide({ reuse: side });
      try {
        assert.deepEqual(withoutClock(await live(rebuilt)), withoutClock(following));
      } finally {
        await rebuilt.close();
      }
    } finally {
      await side.close();
    }
  });
}

Deno.test("a PBX restart (Shutdown, or a new session) clears that server's live state", async () => {
  const side = await startReadSide();
  try {
    const call = fixtureEvents("queue-call");
    const restart = fixtureEvents("pbx-restart");
    const first = await newSession(side, call[0].receivedAtMs - 1000);
    await feed(side, first, call.slice(0, 47));
    assert.equal((await live(side)).servers.pbx1.calls.length, 1);
    const stream = new SseReader(await side.get("/api/live/stream"));
    await stream.next();
    await stream.next(); // snapshot
    // Asterisk says Shutdown (core restart now) in the same session.
    const shutdown = restart.find((m) =>
      m.message.headers.some(([k, v]) => k === "Event" && v === "Shutdown")
    )!;
    await feed(side, first, [variant(shutdown, 500, {})]);
    let state = (await live(side)).servers.pbx1;
    assert.deepEqual([state.channels, state.calls, state.queues], [[], [], []]);
    const change = await stream.next();
    const body = JSON.parse(change!.data);
    assert.ok(body.changes.some((c: { kind: string }) => c.kind === "server"));
    assert.deepEqual([body.server, body.state.channels, body.state.calls], ["pbx1", [], []]);
    await stream.cancel();

    // A new session without a Shutdown (the daemon lost the connection): cleared too.
    await feed(side, first, call.slice(0, 47).map((m, i) => variant(m, 600 + i, {})));
    assert.equal((await live(side)).servers.pbx1.channels.length, 2);
    const second = await newSession(side, Date.now());
    await feed(side, second, restart.slice(0, 1));
    state = (await live(side)).servers.pbx1;
    assert.deepEqual([state.channels, state.calls], [[], []]);
  } finally {
    await side.close();
  }
});
