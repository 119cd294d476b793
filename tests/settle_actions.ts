/**
 * Edge case 17 as a scenario the suite runs small and the bench runs at a million
 * (`bench/settle_bench.ts`): many actions in flight with every outcome (answered, list,
 * refused, timed out, cut by a disconnect); every one must settle exactly once and the
 * pending table must be empty after each round.
 *
 * @example
 * ```ts ignore
 * import { settleActions } from "./settle_actions.ts";
 * const { outcomes } = await settleActions(50_000);
 * ```
 *
 * @module
 */
import assert from "node:assert/strict";
import { DAMI, DAMIError } from "../mod.ts";
import { type FakeAmi, type FakeAmiOptions, startFakeAmi } from "./fake_ami_server.ts";

/** A fake Asterisk with actions that fail, never answer, answer a list, or cut the session. */
export function scriptedServer(options: FakeAmiOptions = {}): Promise<FakeAmi> {
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

/** Logs in to `server` (again, with `dami`, after a cut). */
export async function login(server: FakeAmi, dami?: DAMI): Promise<DAMI> {
  dami ??= new DAMI({ hostname: server.hostname, port: server.port, logger: false });
  await dami.connectAndLogin({ username: "dami", secret: "dami-secret" });
  return dami;
}

/** How the actions of {@linkcode settleActions} ended. */
export interface SettleReport {
  outcomes: { ok: number; action: number; timeout: number; closed: number; other: number };
  /** Actions per round (in flight at once). */
  round: number;
  /** TCP connections the server accepted (2: the round in the middle is cut). */
  connections: number;
  /** Pending actions left at the end (must be 0). */
  pendingActions: number;
}

/**
 * Sends `total` actions in rounds of `round` in flight: half answered, a quarter lists,
 * an eighth refused, an eighth never answered (100 ms timeout); the server cuts the
 * connection half way through the middle round. Throws when a round leaves an action
 * pending.
 */
export async function settleActions(
  total: number,
  round = Math.min(50_000, Math.ceil(total / 10)),
): Promise<SettleReport> {
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
  return { outcomes, round, connections: server.connections, pendingActions: dami.pendingActions };
}
