/**
 * `/healthz` and `/metrics` over real HTTP, with the fake Asterisk, the real ingest
 * pipeline and PostgreSQL reached through a cuttable TCP proxy.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../daemon/config.ts";
import { type HealthReport, healthReport, startHttp, storeHealthOf } from "../daemon/http.ts";
import { Ingest } from "../daemon/ingest.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";
import { openStore } from "../daemon/store.ts";
import { Supervisor, type SupervisorStatus } from "../daemon/supervisor.ts";
import { startFakeAmi } from "./fake_ami_server.ts";
import { createTestDatabase } from "./pg.ts";
import { TcpProxy } from "./tcp_proxy.ts";

async function waitFor(what: string, predicate: () => Promise<boolean> | boolean, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function status(server: string, state: SupervisorStatus["state"], lastError?: string) {
  return { status: { server, state, attempt: 0, lastError } };
}

Deno.test("health is ok only when every server is connected and the store is writable", async () => {
  const metrics = new DaemonMetrics();
  const healthy = () => ({ writable: true });
  const ok = await healthReport({
    servers: [status("a", "connected"), status("b", "connected")],
    storeHealth: healthy,
    metrics,
  });
  assert.equal(ok.status, "ok");
  assert.deepEqual(ok.reasons, []);
  const down = await healthReport({
    servers: [status("a", "connected"), status("b", "waiting", "eof: closed")],
    storeHealth: () => ({ writable: false, reason: "connection refused" }),
    metrics,
  });
  assert.equal(down.status, "unhealthy");
  assert.deepEqual(down.reasons, [
    "server b is not connected (waiting: eof: closed)",
    "the store is not writable: connection refused",
  ]);
  const thrown = await healthReport({
    servers: [],
    storeHealth: () => Promise.reject(new Error("boom")),
    metrics,
  });
  assert.deepEqual(thrown.reasons, ["the store is not writable: boom"]);
});

Deno.test("/healthz flips to 503 when a server or the database is down, and back to 200", async () => {
  const db = await createTestDatabase("http");
  const dataDir = await Deno.makeTempDir({ prefix: "dami-http-" });
  const pg = new URL(db.url);
  const proxy = TcpProxy.start({ hostname: pg.hostname, port: Number(pg.port) });
  await using ami = await startFakeAmi({ authFailDelayMs: 0 });
  const store = await openStore({ url: proxy.url(db.url), dataDir, connectTimeoutSeconds: 1 });
  const ingest = await Ingest.open({ store, dataDir });
  const metrics = new DaemonMetrics();
  metrics.watchIngest(() => ingest.stats());
  const config = parseConfig(
    JSON.stringify({
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        port: ami.port,
        username: "dami",
        secret: "dami-secret",
        reconnect: { initialMs: 20, maxMs: 100 },
      }],
    }),
    "http.jsonc",
    { env: {} },
  );
  const supervisor = new Supervisor({ server: config.servers[0], recorder: ingest, metrics });
  const http = startHttp({
    listen: "127.0.0.1:0",
    servers: [supervisor],
    storeHealth: storeHealthOf(store, ingest, 1000),
    metrics,
  });
  const base = `http://127.0.0.1:${http.port}`;
  const health = async () => {
    const response = await fetch(`${base}/healthz`);
    return { code: response.status, body: await response.json() as HealthReport };
  };
  try {
    supervisor.start();
    const before = await health();
    assert.equal(before.code, 503, "not connected yet");

    await waitFor("200", async () => (await health()).code === 200);
    const ok = await health();
    assert.equal(ok.body.status, "ok");
    assert.equal(ok.body.servers[0].state, "connected");
    assert.equal(ok.body.store.writable, true);

    // The PBX goes away.
    ami.stopListening();
    for (const session of ami.openSessions) session.abort();
    await waitFor("503 for the server", async () => (await health()).code === 503);
    const serverDown = await health();
    assert.equal(serverDown.body.status, "unhealthy");
    assert.match(serverDown.body.reasons.join("\n"), /server pbx1 is not connected/);
    assert.equal(serverDown.body.store.writable, true, JSON.stringify(serverDown.body.store));

    await new Promise((resolve) => setTimeout(resolve, 200));
    ami.startListening();
    await waitFor("200 again", async () => (await health()).code === 200);

    // The database goes away.
    proxy.cut(60_000);
    await waitFor("503 for the store", async () => (await health()).code === 503);
    const storeDown = await health();
    assert.match(storeDown.body.reasons.join("\n"), /the store is not writable/);
    assert.equal(storeDown.body.servers[0].state, "connected");

    proxy.restore();
    await waitFor("200 after the database is back", async () => (await health()).code === 200);
  } finally {
    await supervisor.stop();
    await ingest.close({ timeoutMs: 2000 });
    await http.close();
    await store.close();
    await proxy.close();
    await db.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("/metrics exposes events, reconnects, keepalive misses, action runs and ingest figures", async () => {
  const db = await createTestDatabase("metrics");
  const dataDir = await Deno.makeTempDir({ prefix: "dami-metrics-" });
  await using ami = await startFakeAmi({ authFailDelayMs: 0 });
  const store = await openStore({ url: db.url, dataDir });
  const metrics = new DaemonMetrics();
  const ingest = await Ingest.open({ store, dataDir, onCommitted: metrics.observeCommit });
  metrics.watchIngest(() => ingest.stats());
  const config = parseConfig(
    JSON.stringify({
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        port: ami.port,
        username: "dami",
        secret: "dami-secret",
        keepalive: { schedule: "* * * * * *", timeoutMs: 200, maxMissed: 5 },
        reconnect: { initialMs: 20, maxMs: 100 },
      }],
      actions: [{ name: "peers", action: "SIPPeers", onConnect: true }],
    }),
    "metrics.jsonc",
    { env: {} },
  );
  const supervisor = new Supervisor({
    server: config.servers[0],
    recorder: ingest,
    metrics,
    onConnect: config.actions,
  });
  const http = startHttp({
    listen: "127.0.0.1:0",
    servers: [supervisor],
    storeHealth: storeHealthOf(store, ingest),
    metrics,
  });
  const scrape = async () => {
    const response = await fetch(`http://127.0.0.1:${http.port}/metrics`);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
    return await response.text();
  };
  try {
    supervisor.start();
    await waitFor("stored events", () => (ingest.stats().servers.pbx1?.stored ?? 0) >= 4);
    ami.setPingMode("silent");
    await waitFor(
      "a keepalive miss",
      async () => /dami_keepalive_misses_total\{server="pbx1"\} [1-9]/.test(await scrape()),
    );
    ami.setPingMode("pong");
    for (const session of ami.openSessions) session.abort();
    await waitFor(
      "a reconnect",
      async () => /dami_reconnects_total\{server="pbx1"\} [1-9]/.test(await scrape()),
    );
    // Both sessions ran the on-connect SIPPeers (3 PeerEntry and a Complete each); once
    // everything received is stored, the figures must equal the pipeline's own counts.
    await waitFor(
      "the second on-connect run",
      async () =>
        /dami_action_runs_total\{server="pbx1",action="peers",status="ok"\} 2\n/.test(
          await scrape(),
        ),
    );
    await waitFor("everything received stored", () => {
      const s = ingest.stats();
      return s.queueDepth === 0 && s.servers.pbx1.stored === s.servers.pbx1.received &&
        supervisor.connected;
    });
    const stats = ingest.stats();
    const text = await scrape();
    const value = (sample: string): number => {
      const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
      assert.ok(line !== undefined, `${sample} in:\n${text}`);
      return Number(line.slice(sample.length + 1));
    };
    assert.ok(stats.servers.pbx1.received >= 8, `${stats.servers.pbx1.received} events`);
    assert.equal(value('dami_events_received_total{server="pbx1"}'), stats.servers.pbx1.received);
    assert.equal(value('dami_events_stored_total{server="pbx1"}'), stats.servers.pbx1.stored);
    assert.equal(value('dami_events_spooled_total{server="pbx1"}'), stats.servers.pbx1.spooled);
    assert.equal(value('dami_action_runs_total{server="pbx1",action="peers",status="ok"}'), 2);
    assert.equal(value('dami_server_connected{server="pbx1"}'), 1);
    assert.equal(value('dami_reconnects_total{server="pbx1"}'), 1);
    assert.ok(value('dami_keepalive_misses_total{server="pbx1"}') >= 1);
    assert.equal(value("dami_ingest_queue_depth"), 0);
    assert.equal(value("dami_spool_bytes"), stats.spoolBytes);
    assert.equal(value("dami_database_up"), 1);
    // One delay observation per stored event, each within the +Inf bucket.
    assert.equal(value("dami_ingest_delay_seconds_count"), stats.storedEvents);
    assert.equal(value('dami_ingest_delay_seconds_bucket{le="+Inf"}'), stats.storedEvents);
    const missing = await fetch(`http://127.0.0.1:${http.port}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  } finally {
    await supervisor.stop();
    await ingest.close({ timeoutMs: 2000 });
    await http.close();
    await store.close();
    await db.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
