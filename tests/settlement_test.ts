/**
 * Every pending action settles exactly once (edge cases 17 and 18 of AMI-NOTES.md): 50,000
 * actions with mixed outcomes (a million in `deno task bench settle`) leave the pending
 * table empty; ids are unique.
 */
import assert from "node:assert/strict";
import { DAMIError } from "../mod.ts";
import { login, scriptedServer, settleActions } from "./settle_actions.ts";

Deno.test("edge 17: 50,000 actions answered, refused, timed out or cut by a disconnect leave no pending action", async () => {
  // `deno task bench settle` runs the same scenario with 1,000,000 actions.
  const total = Number(Deno.env.get("DAMI_EDGE17_TOTAL") ?? 50_000);
  const { outcomes, round, connections, pendingActions } = await settleActions(total);
  const settled = outcomes.ok + outcomes.action + outcomes.timeout + outcomes.closed;
  assert.equal(settled, total);
  assert.equal(outcomes.other, 0);
  assert.ok(outcomes.closed >= round / 2 - 1, `closed ${outcomes.closed}`);
  assert.ok(outcomes.ok > 0 && outcomes.action > 0 && outcomes.timeout > 0);
  assert.equal(pendingActions, 0);
  assert.equal(connections, 2);
});

Deno.test("edge 18: 10,000 actions sent in one burst get unique ActionIDs and all their answers", async () => {
  await using server = await scriptedServer();
  const dami = await login(server);
  const answers = await Promise.all(
    Array.from({ length: 10_000 }, () => dami.toMessages("Ping")),
  );
  const ids = new Set(answers.map((a) => a.actionId));
  assert.equal(ids.size, 10_000);
  const session = await server.session(0);
  const sentIds = new Set(session.actions.filter((a) => a.name === "Ping").map((a) => a.actionId));
  assert.deepEqual(sentIds, ids);
  assert.equal(dami.pendingActions, 0);
  const other = await login(server);
  const otherAnswer = await other.toMessages("Ping");
  assert.ok(!ids.has(otherAnswer.actionId), "ids are unique across clients too");
  dami.close();
  other.close();
});

Deno.test("edge 18: a generated ActionID skips one a caller chose that is still pending", async () => {
  await using server = await scriptedServer();
  const dami = await login(server);
  const { actionId } = await dami.toMessages("Ping");
  const prefix = actionId.slice(0, actionId.lastIndexOf("-") + 1);
  const next = Number.parseInt(actionId.slice(prefix.length), 36) + 1;
  const taken = prefix + next.toString(36);
  const hushed = dami.toMessages("Hush", { ActionID: taken }, { timeoutMs: 300 });
  const pinged = await dami.toMessages("Ping");
  assert.notEqual(pinged.actionId, taken);
  await assert.rejects(
    hushed,
    (error: unknown) => error instanceof DAMIError && error.code === "timeout",
  );
  assert.equal(dami.pendingActions, 0);
  dami.close();
});

Deno.test("edge 18: a user ActionID already pending is refused with code invalid and not sent", async () => {
  await using server = await scriptedServer();
  const dami = await login(server);
  const session = await server.session(0);
  const first = dami.toMessages("Hush", { ActionID: "dup" }, { timeoutMs: 200 });
  await assert.rejects(
    dami.toMessages("Ping", { ActionID: "dup" }),
    (error: unknown) =>
      error instanceof DAMIError && error.code === "invalid" &&
      /"dup" is already in use/.test(error.message),
  );
  await assert.rejects(
    first,
    (error: unknown) => error instanceof DAMIError && error.code === "timeout",
  );
  const again = await dami.toMessages("Ping", { ActionID: "dup" });
  assert.equal(again.actionId, "dup");
  assert.deepEqual(
    session.actions.filter((a) => a.actionId === "dup").map((a) => a.name),
    ["Hush", "Ping"],
  );
  dami.close();
});
