/**
 * Recovery after database outages: real PostgreSQL behind a TCP proxy that refuses,
 * cuts (in the middle of a COPY) and black-holes, while recorded calls stream into the
 * ingest pipeline and the projector runs. After each outage every part comes back by
 * itself: the writer stores everything exactly once, `/healthz` returns to 200, the
 * projection checkpoint reaches the head of the log, and queries answer.
 *
 * The outages are 3 s refused, 15 s refused after a cut in the middle of a COPY, and a
 * black hole of 20 s with the write timeout lowered to 5 s (so that, as in a 60 s black
 * hole with the default 30 s, the writer gives up on a stalled transaction and replaces
 * its connection several times). `DAMI_TEST_LONG_OUTAGES=1` black-holes for 60 s with the
 * default write timeout instead.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import type { AmiMessage } from "../dami/message.ts";
import { type HealthReport, startHttp, storeHealthOf } from "../daemon/http.ts";
import { uuidv7 } from "../daemon/ids.ts";
import { Ingest } from "../daemon/ingest.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";
import { startProjector } from "../daemon/projections/projector.ts";
import { openStore } from "../daemon/store.ts";
import { calls } from "../schema/mod.ts";
import { fixtureEvents } from "./load_events.ts";
import { createTestDatabase } from "./pg.ts";
import { TcpProxy } from "./tcp_proxy.ts";

const LONG = Deno.env.get("DAMI_TEST_LONG_OUTAGES") === "1";
const BLACKHOLE_MS = LONG ? 60_000 : 20_000;
const WRITE_TIMEOUT_MS = LONG ? 30_000 : 5_000;

/** Polls `predicate` until it holds; the deadline only tells a hang from a recovery. */
async function waitFor(what: string, predicate: () => Promise<boolean>, ms = 180_000) {
  const deadline = AbortSignal.timeout(ms);
  while (!(await predicate())) {
    if (deadline.aborted) throw new Error(`still waiting for ${what} after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The recorded SIP calls with their channel ids moved to round `round`, so calls stay apart. */
function callRound(template: readonly AmiMessage[], round: number): AmiMessage[] {
  return template.map((m) => ({
    ...m,
    headers: m.headers.map(([k, v]) =>
      [k, v.replace(/^(\d{10})\.(\d+)$/, (_, s, n) => `${s}.${Number(n) + round * 1000}`)] as const
    ),
  }));
}

Deno.test({
  name:
    "after outages refused, cut mid-COPY and black-holed, writer, health, projector and queries all come back",
  sanitizeOps: false, // a black-holed ping may still be pending when the test ends
  sanitizeResources: false,
  async fn() {
    const db = await createTestDatabase("recovery");
    const direct = postgres(db.url, { max: 1, onnotice: () => {} });
    const dataDir = await Deno.makeTempDir({ prefix: "dami-recovery-" });
    const pg = new URL(db.url);
    const proxy = TcpProxy.start({ hostname: pg.hostname, port: Number(pg.port) });
    const store = await openStore({
      url: proxy.url(db.url),
      dataDir,
      connectTimeoutSeconds: 1,
      writeTimeoutMs: WRITE_TIMEOUT_MS,
    });
    const ingest = await Ingest.open({ store, dataDir });
    const projector = startProjector(store, { intervalMs: 100 });
    const metrics = new DaemonMetrics();
    metrics.watchIngest(() => ingest.stats());
    metrics.watchProjector(() => projector.stats());
    const http = startHttp({
      listen: "127.0.0.1:0",
      servers: [],
      storeHealth: storeHealthOf(store, ingest, 1000),
      metrics,
      projector: () => projector.stats(),
    });
    const health = async () => {
      const response = await fetch(`http://127.0.0.1:${http.port}/healthz`);
      return { code: response.status, body: await response.json() as HealthReport };
    };

    // The producer: a round of the recorded calls (141 events) every 250 ms, as an AMI
    // session would.
    const template = fixtureEvents("sip-calls").map((e) => e.message);
    const sessionId = uuidv7();
    ingest.sessionStarted({ id: sessionId, server: "pbx1", connectedAt: new Date() });
    let seq = 0;
    let round = 0;
    let producing = true;
    const producer = (async () => {
      while (producing) {
        for (const m of callRound(template, round)) {
          ingest.event("pbx1", sessionId, { ...m, seq: ++seq, receivedAt: Date.now() });
        }
        round++;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();

    const head = async () => {
      const [row] = await direct`select coalesce(max(id), 0)::text as head,
        coalesce((select last_event_id from projection_checkpoints), 0)::text as checkpoint
        from ami_events`;
      return row as { head: string; checkpoint: string };
    };
    /** Waits for 200 and for the checkpoint at the head; returns seconds to 200. */
    const recovered = async (outage: string) => {
      const back = performance.now();
      await waitFor(`/healthz 200 after ${outage}`, async () => (await health()).code === 200);
      const seconds = (performance.now() - back) / 1000;
      console.log(`${outage}: /healthz 200 ${seconds.toFixed(1)} s after the database was back`);
      // Events keep coming: the checkpoint must pass the head as it was at recovery.
      const target = BigInt((await head()).head);
      await waitFor(
        `the checkpoint at the head after ${outage}`,
        async () => BigInt((await head()).checkpoint) >= target,
      ).catch((error) => {
        const { lastError, eventsBehind, failedRuns, stuck } = projector.stats();
        throw new Error(
          `${error.message}; projector: ${
            JSON.stringify({ lastError, eventsBehind, failedRuns, stuck })
          }`,
        );
      });
      // Queries answer through the store's pool (a lost pool slot would hang here). A
      // query that fails is not an answer yet: with the 1 s connect timeout, a connection
      // made while the machine is loaded (the suite runs in parallel) can time out once.
      await waitFor(
        `a query through the store after ${outage}`,
        () => store.db.$count(calls).then(() => true, () => false),
      );
    };
    const down = async (outage: string) => {
      await waitFor(`/healthz 503 during ${outage}`, async () => (await health()).code === 503);
    };

    try {
      await recovered("the start");

      // 1. Refused for 3 s.
      proxy.cut(3_000);
      await down("a 3 s refusal");
      await waitFor("the proxy to listen again", () => Promise.resolve(!proxy.refusing));
      await recovered("a 3 s refusal");

      // 2. Cut in the middle of a COPY, then refused for 15 s.
      proxy.cutAfter(64 * 1024, 15_000);
      await waitFor("the cut", () => Promise.resolve(proxy.refusing));
      await down("a cut mid-COPY and 15 s refused");
      await waitFor("the proxy to listen again", () => Promise.resolve(!proxy.refusing));
      await recovered("a cut mid-COPY and 15 s refused");

      // 3. Black-holed: nothing fails, everything waits.
      proxy.blackhole(BLACKHOLE_MS);
      await down(`a ${BLACKHOLE_MS / 1000} s black hole`);
      await waitFor("the network to heal", () => Promise.resolve(!proxy.blackholed));
      await recovered(`a ${BLACKHOLE_MS / 1000} s black hole`);

      // Everything sent is stored once, in order, with no gap, and projected.
      producing = false;
      await producer;
      await ingest.flush();
      await waitFor("the checkpoint at the head at the end", async () => {
        const { head: h, checkpoint } = await head();
        return h === checkpoint;
      });
      const [stored] = await direct`select count(*)::int as n, count(distinct seq)::int as distinct,
          min(seq)::int as first, max(seq)::int as last from ami_events where session_id = ${sessionId}`;
      assert.deepEqual({ ...stored }, { n: seq, distinct: seq, first: 1, last: seq });
      assert.ok((await store.db.$count(calls)) >= round, "every round's calls are projected");
      const stats = projector.stats();
      assert.equal(stats.lastError, null);
      assert.equal(stats.stuck, false);
      assert.equal(stats.eventsIsolated, 0);
      assert.ok(stats.failedRuns > 0, "the outages failed some projection runs");
      const body = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
      assert.match(body, /^dami_projection_events_behind 0$/m);
      assert.match(body, /^dami_projection_stuck 0$/m);
      assert.match(body, /^dami_projection_errors_total 0$/m);
      assert.match(
        body,
        new RegExp(`^dami_projection_run_failures_total ${stats.failedRuns}$`, "m"),
      );
    } finally {
      producing = false;
      await producer;
      // Bounded: on a failure, a run may still hang on a dead connection.
      const stopped = AbortSignal.timeout(10_000);
      await Promise.race([
        projector.stop(),
        new Promise((resolve) => stopped.addEventListener("abort", resolve)),
      ]);
      await ingest.close({ timeoutMs: 5000 });
      await http.close();
      await store.close();
      await proxy.close();
      await direct.end();
      await db.drop();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
});
