/**
 * Every pending action settles exactly once (edge cases 17 and 18 of AMI-NOTES.md): a
 * million actions with mixed outcomes leave the pending table empty; ids are unique.
 */
import assert from "node:assert/strict";
import { DAMI, DAMIError } from "../mod.ts";
import { type FakeAmi, type FakeAmiOptions, startFakeAmi } from "./fake_ami_server.ts";

function scriptedServer(options: FakeAmiOptions = {}): Promise<FakeAmi> {
  return startFakeAmi(options).then((server) => {
    server.handle("Fail", (action) => action.respond("Error", { Message: "scripted failure" }));
    server.handle("Hush", () => undefined);
    server.handle(
      "Items",
      (action) =>
        action.respond("Success", { EventList: "start", Message: "Items will follow" }) +
        action.event("Item", { N: 1 }) +
        action.event("ItemsComplete", { EventList: "Complete", ListItems: 1 }),
    );
    server.handle("Cut", (_, session) => void session.abort());
    return server;
  });
}

async function login(server: FakeAmi, dami?: DAMI): Promise<DAMI> {
  dami ??= new DAMI({ hostname: server.hostname, port: server.port, logger: false });
  await dami.connectAndLogin({ username: "dami", secret: "dami-secret" });
  return dami;
}

Deno.test("edge 17: 1,000,000 actions answered, refused, timed out or cut by a disconnect leave no pending action", async () => {
  const total = Number(Deno.env.get("DAMI_EDGE17_TOTAL") ?? 1_000_000);
  const round = 50000;
  await using server = await scriptedServer({ recordActions: false });
  const dami = await login(server);
  const outcomes = { ok: 0, action: 0, timeout: 0, closed: 0, other: 0 };
  let sent = 0;
  for (let r = 0; sent < total; r++) {
    // One round in the middle is cut by the server half way through.
    const cutAt = r === Math.floor(total / round / 2) ? round / 2 : -1;
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < round && sent < total; i++, sent++) {
      let promise: Promise<unknown>;
      if (i === cutAt) promise = dami.toMessages("Cut");
      else {
        // Half answered, a quarter lists, an eighth refused, an eighth never answered.
        const kind = sent % 8;
        if (kind < 4) promise = dami.toMessages("Ping");
        else if (kind < 6) promise = dami.toMessages("Items");
        else if (kind === 6) promise = dami.toMessages("Fail");
        else promise = dami.toMessages("Hush", {}, { timeoutMs: 100 });
      }
      batch.push(promise.then(
        () => void outcomes.ok++,
        (error: unknown) => {
          if (error instanceof DAMIError && error.code in outcomes) {
            outcomes[error.code as "action" | "timeout" | "closed"]++;
          } else outcomes.other++;
        },
      ));
    }
    await Promise.all(batch);
    assert.equal(dami.pendingActions, 0, `round ${r}`);
    if (!dami.connected) await login(server, dami);
  }
  dami.close();
  const settled = outcomes.ok + outcomes.action + outcomes.timeout + outcomes.closed;
  assert.equal(settled, total);
  assert.equal(outcomes.other, 0);
  assert.ok(outcomes.closed >= round / 2 - 1, `closed ${outcomes.closed}`);
  assert.ok(outcomes.ok > 0 && outcomes.action > 0 && outcomes.timeout > 0);
  assert.equal(dami.pendingActions, 0);
  assert.equal(server.connections, 2);
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
