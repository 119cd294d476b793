/**
 * Scheduled actions end to end: croner schedules, the fake Asterisk, the real ingest
 * pipeline and a real PostgreSQL database. Runs land in `action_runs`; their list
 * items land once in `ami_events`, linked by `action_id`.
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { parseConfig } from "../daemon/config.ts";
import { Ingest } from "../daemon/ingest.ts";
import { Scheduler } from "../daemon/scheduler.ts";
import { openStore, type Store } from "../daemon/store.ts";
import { Supervisor } from "../daemon/supervisor.ts";
import { selectRows } from "../queries/db.ts";
import { type FakeAmi, startFakeAmi } from "./fake_ami_server.ts";
import { createTestDatabase } from "./pg.ts";

interface Harness {
  store: Store;
  ingest: Ingest;
  supervisor: Supervisor;
  scheduler: Scheduler;
  /** Stops everything and flushes the ingest pipeline; the store stays open. */
  stop(): Promise<void>;
}

async function harness(
  t: { name: string },
  server: FakeAmi,
  actions: unknown[],
  port = server.port,
): Promise<Harness & AsyncDisposable> {
  const db = await createTestDatabase("scheduler");
  const dataDir = await Deno.makeTempDir({ prefix: "dami-scheduler-" });
  const config = parseConfig(
    JSON.stringify({
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        port,
        username: "dami",
        secret: "dami-secret",
        reconnect: { initialMs: 20, maxMs: 100 },
      }],
      actions,
    }),
    `${t.name}.jsonc`,
    { env: {} },
  );
  const store = await openStore({ url: db.url, dataDir });
  const ingest = await Ingest.open({ store, dataDir });
  const supervisor = new Supervisor({
    server: config.servers[0],
    recorder: ingest,
    onConnect: config.actions.filter((a) => a.onConnect),
  });
  const scheduler = new Scheduler();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await scheduler.stop();
    await supervisor.stop();
    await ingest.close();
  };
  supervisor.start();
  scheduler.start(config.actions, [supervisor]);
  return {
    store,
    ingest,
    supervisor,
    scheduler,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
      await store.close();
      await db.drop();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

interface RunRow {
  id: string;
  name: string;
  action: string;
  action_id: string | null;
  status: string;
  item_count: number | null;
  message: string | null;
  started_at: string;
  finished_at: string;
  /** `response->>'EventList'`: what SQL users read. */
  event_list: string | null;
}

function runs(store: Store): Promise<RunRow[]> {
  return selectRows<RunRow>(
    store.db,
    sql`select id::text, name, action, action_id, status, item_count, message,
               started_at::text, finished_at::text, response->>'EventList' as event_list
          from action_runs order by started_at, name`,
  );
}

async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test("scheduled SIPPeers and PJSIPShowEndpoints runs are recorded with their items, stored once", async (t) => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  await using h = await harness(t, server, [
    { name: "sip-peers", schedule: "* * * * * *", action: "SIPPeers", timeoutMs: 900 },
    { name: "endpoints", schedule: "* * * * * *", action: "PJSIPShowEndpoints", timeoutMs: 900 },
  ]);
  await waitFor("two runs of each", () => {
    const sent = server.sessions.flatMap((s) => s.actions).map((a) => a.name);
    return sent.filter((n) => n === "SIPPeers").length >= 2 &&
      sent.filter((n) => n === "PJSIPShowEndpoints").length >= 2;
  });
  await h.stop();

  const rows = await runs(h.store);
  assert.ok(rows.length >= 4, `${rows.length} runs`);
  for (const run of rows) {
    assert.equal(run.status, "ok", `${run.name}: ${run.message}`);
    assert.equal(run.item_count, 3);
    assert.equal(run.action_id, run.id, "the ActionID sent is the run id");
    assert.equal(run.event_list, "start", "the response is stored as a jsonb object");
    assert.ok(run.finished_at >= run.started_at);
    const items = await selectRows<{ event: string; n: number }>(
      h.store.db,
      sql`select event, count(*)::int as n from ami_events
           where action_id = ${run.action_id} group by event order by event`,
    );
    const expected = run.action === "SIPPeers"
      ? [{ event: "PeerEntry", n: 3 }, { event: "PeerlistComplete", n: 1 }]
      : [{ event: "EndpointList", n: 3 }, { event: "EndpointListComplete", n: 1 }];
    assert.deepEqual(items, expected, `items of ${run.name} stored exactly once`);
  }
  assert.deepEqual([...new Set(rows.map((r) => r.name))].sort(), ["endpoints", "sip-peers"]);
});

Deno.test("a run while the server is down is recorded not_connected at its time, never replayed", async (t) => {
  const server = await startFakeAmi({ authFailDelayMs: 0 });
  const port = server.port;
  await server.close();
  const startedAt = Date.now();
  await using h = await harness(t, server, [
    { name: "peers", schedule: "* * * * * *", action: "SIPPeers" },
  ], port);
  await waitFor(
    "two runs recorded not_connected while the server is down",
    async () => (await runs(h.store)).filter((r) => r.status === "not_connected").length >= 2,
  );
  await using back = await startFakeAmi({ authFailDelayMs: 0, port });
  await waitFor("connected", () => h.supervisor.connected);
  const reconnectedAt = Date.now();
  await waitFor(
    "one run after reconnecting",
    () => back.sessions.flatMap((s) => s.actions).some((a) => a.name === "SIPPeers"),
  );
  await h.stop();
  const elapsedS = (Date.now() - startedAt) / 1000;

  const rows = await runs(h.store);
  const missed = rows.filter((r) => r.status === "not_connected");
  assert.ok(missed.length >= 2, `${missed.length} not_connected runs`);
  for (const run of missed) {
    assert.equal(run.action_id, null);
    assert.equal(run.item_count, null);
    assert.equal(run.started_at, run.finished_at, "recorded at once, not waiting");
    assert.match(run.message ?? "", /server pbx1 is not connected/);
  }
  // One run per second at most: nothing queued up to fire in a burst on reconnection.
  assert.ok(rows.length <= Math.ceil(elapsedS) + 1, `${rows.length} runs in ${elapsedS} s`);
  const sentRightAfter = back.sessions.flatMap((s) => s.actions).filter((a) =>
    a.name === "SIPPeers"
  );
  assert.ok(sentRightAfter.length <= Math.ceil((Date.now() - reconnectedAt) / 1000) + 1);
  assert.ok(rows.some((r) => r.status === "ok"));
});

Deno.test("a run still waiting for its answer makes the next firing skip (no overlap)", async (t) => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  server.handle("SlowStatus", () => undefined);
  await using h = await harness(t, server, [
    { name: "slow", schedule: "* * * * * *", action: "SlowStatus", timeoutMs: 1500 },
  ]);
  await waitFor("connected", () => h.supervisor.connected);
  // Firings every second, each run waiting 1.5 s for an answer that never comes.
  await waitFor(
    "two runs timed out",
    async () => (await runs(h.store)).filter((r) => r.status === "timeout").length >= 2,
  );
  await h.stop();
  const sent = server.sessions.flatMap((s) => s.actions).filter((a) => a.name === "SlowStatus");
  const rows = await runs(h.store);
  assert.ok(rows.length >= 2, `${rows.length} runs`);
  // Every firing that sent something is recorded, and no run started before the previous
  // one had finished: the firings in between were skipped, not queued or overlapped.
  assert.equal(sent.length, rows.length);
  for (const run of rows) assert.ok(run.status === "timeout" || run.status === "error", run.status);
  for (let i = 1; i < rows.length; i++) {
    assert.ok(
      Date.parse(rows[i].started_at) >= Date.parse(rows[i - 1].finished_at),
      `run ${i} started at ${rows[i].started_at}, before run ${i - 1} finished at ${
        rows[i - 1].finished_at
      }`,
    );
  }
});

Deno.test("on-connect actions run after every login and capture calls already up", async (t) => {
  await using server = await startFakeAmi({ authFailDelayMs: 0 });
  await using h = await harness(t, server, [
    { name: "channels", action: "CoreShowChannels", onConnect: true },
  ]);
  await waitFor(
    "first run",
    () => server.sessions[0]?.actions.some((a) => a.name === "CoreShowChannels"),
  );
  server.sessions[0].abort();
  await waitFor(
    "second run",
    () => server.sessions[1]?.actions.some((a) => a.name === "CoreShowChannels"),
  );
  await waitFor("both runs stored", async () => (await runs(h.store)).length === 2);
  await h.stop();
  const rows = await runs(h.store);
  assert.equal(rows.length, 2);
  assert.deepEqual(rows.map((r) => [r.name, r.status]), [["channels", "ok"], ["channels", "ok"]]);
  const sessions = await selectRows<{ id: string; disconnect_reason: string | null }>(
    h.store.db,
    sql`select id::text, disconnect_reason from ami_sessions order by connected_at`,
  );
  assert.equal(sessions.length, 2);
  const linked = await selectRows<{ n: number }>(
    h.store.db,
    sql`select count(*)::int as n from action_runs r join ami_sessions s on s.id = r.session_id`,
  );
  assert.equal(linked[0].n, 2, "each run is linked to the session it ran in");
  for (const run of rows) {
    const items = await selectRows<{ event: string }>(
      h.store.db,
      sql`select event from ami_events where action_id = ${run.action_id} order by seq`,
    );
    assert.deepEqual(items.map((i) => i.event), [
      ...Array.from({ length: run.item_count ?? 0 }, () => "CoreShowChannel"),
      "CoreShowChannelsComplete",
    ]);
  }
});
