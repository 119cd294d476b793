/**
 * The DAMI client against each recorded conversation replayed by the fake server, with
 * the recorded TCP reads, random re-chunking, or 1-byte writes (edge cases 1, 2 and 8
 * end to end): it sends the recorded actions byte for byte, sees exactly the messages
 * the parser sees in one read, and each action settles as Asterisk answered it.
 */
import assert from "node:assert/strict";
import {
  type ActionAnswer,
  type ActionData,
  type AmiMessage,
  DAMI,
  type DAMIError,
  headerValue,
} from "../mod.ts";
import { AmiParser } from "../dami/parser.ts";
import { type ReplayOptions, startFakeAmi } from "./fake_ami_server.ts";
import { FIXTURE_NAMES, type FixtureName, loadFixture } from "./fixtures.ts";

interface RecordedAction {
  action: string;
  data: ActionData;
  actionId: string | undefined;
}

/** The fixture's client writes as (action, data) in their original header order. */
function recordedActions(name: FixtureName): RecordedAction[] {
  return loadFixture(name).outChunks.map((bytes) => {
    const lines = new TextDecoder().decode(bytes).split("\r\n").filter((l) => l !== "");
    const pairs = lines.map((line) => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon), line.slice(colon + 2)] as const;
    });
    const data: Record<string, string | string[]> = {};
    let actionId: string | undefined;
    for (const [key, value] of pairs.slice(1)) {
      if (key === "ActionID") actionId = value;
      const prev = data[key];
      data[key] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
    }
    if (actionId !== undefined) data.ActionID = actionId;
    return { action: pairs[0][1], data, actionId };
  });
}

function comparable(messages: AmiMessage[]) {
  return messages.map((m) => ({ kind: m.kind, headers: m.headers, seq: m.seq }));
}

type Outcome = { answer: ActionAnswer } | { error: DAMIError };

const MODES: Array<ReplayOptions["chunking"]> = ["real", "random", "bytes"];

for (const name of FIXTURE_NAMES) {
  for (const chunking of MODES) {
    Deno.test(`DAMI replaying ${name} with ${chunking} reads sees what the parser sees and settles every action`, async () => {
      const fixture = loadFixture(name);
      await using server = await startFakeAmi({
        replay: { fixture: name, chunking, seed: 42, maxChunk: 50 },
      });
      const dami = new DAMI({ hostname: server.hostname, port: server.port, logger: false });
      const seen: AmiMessage[] = [];
      dami.onMessage((m) => void seen.push(m));
      await dami.connect();
      const actions = recordedActions(name);
      const outcomes: Promise<Outcome>[] = actions.map(({ action, data }) =>
        dami.toMessages(action, data).then(
          (answer) => ({ answer }),
          (error: DAMIError) => ({ error }),
        )
      );
      const closed = await dami.closed;
      const settled = await Promise.all(outcomes);

      const expected = new AmiParser().push(fixture.inBytes);
      assert.deepEqual(comparable(seen), comparable(expected));
      assert.equal(dami.banner, "Asterisk Call Manager/9.0.0");
      assert.equal(closed.reason, "eof");
      assert.equal(closed.discardedBytes, 0);
      assert.equal(dami.pendingActions, 0);

      // What DAMI wrote is what the recorded client wrote, wherever it gave an ActionID.
      const session = await server.session(0);
      for (const [i, recorded] of actions.entries()) {
        if (recorded.actionId !== undefined) {
          assert.deepEqual(session.actions[i].raw, fixture.outChunks[i], `write ${i}`);
        }
      }

      for (const [i, { action, actionId }] of actions.entries()) {
        const outcome = settled[i];
        const response = expected.find((m) =>
          m.kind === "response" && actionId !== undefined && headerValue(m, "ActionID") === actionId
        );
        if (response === undefined) {
          // Edge 8: the recorded answer had no ActionID; it took the unsolicited path.
          assert.ok("error" in outcome && outcome.error.code === "closed", `${action} ${i}`);
        } else if (headerValue(response, "Response") === "Error") {
          assert.ok("error" in outcome, `${action} ${actionId}`);
          assert.equal(outcome.error.code, "action");
          assert.equal(
            outcome.error.message,
            `${action} failed: ${headerValue(response, "Message")}`,
          );
        } else {
          assert.ok(
            "answer" in outcome,
            `${action} ${actionId}: ${"error" in outcome && outcome.error}`,
          );
          assert.deepEqual(outcome.answer.response.headers, response.headers);
          const items = expected.filter((m) =>
            m.kind === "event" && headerValue(m, "ActionID") === actionId &&
            headerValue(m, "EventList") !== "Complete"
          );
          assert.deepEqual(
            comparable(outcome.answer.items),
            comparable(items),
            `${actionId} items`,
          );
        }
      }
    });
  }
}

Deno.test("replay rewrites the recorded ActionIDs to the ones the client generated", async () => {
  await using server = await startFakeAmi({
    replay: { fixture: "md5-login", chunking: "random", seed: 3 },
  });
  const dami = new DAMI({ hostname: server.hostname, port: server.port, logger: false });
  await dami.connectAndLogin({ username: "dami", secret: "dami-secret", authType: "md5" });
  const session = await server.session(0);
  assert.equal(session.actions[1].get("Key"), "6c9bba098513d6f48cab59af8502a8c3");
  assert.equal(await dami.ping(), true);
  assert.equal((await dami.closed).reason, "eof");
});
