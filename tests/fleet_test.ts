/**
 * Fleet mode's leases against a real PostgreSQL, with instances in one process whose
 * supervisors are stand-ins that log when they record: every server is recorded, by
 * one instance at a time, with a fair spread; a new instance takes its share; a
 * graceful stop hands over at once; an instance cut from the database stops recording
 * before its leases can expire, and another takes over after they do.
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import {
  type ActionConfig,
  ConfigError,
  parseConfig,
  type ServerConfig,
} from "../daemon/config.ts";
import { fairShare, Fleet, type FleetSupervisor, rendezvous } from "../daemon/fleet.ts";
import { openStore, type Store } from "../daemon/store.ts";
import type { ActionRun, SupervisorStatus } from "../daemon/supervisor.ts";
import { selectRows } from "../queries/db.ts";
import { createTestDatabase, type TestDatabase } from "./pg.ts";
import { TcpProxy } from "./tcp_proxy.ts";

const TTL = 5000;

/** When each instance recorded each server: [start, stop) in performance.now() time. */
interface Interval {
  server: string;
  instance: string;
  start: number;
  stop?: number;
  reason?: string;
}

class Recorder implements FleetSupervisor {
  readonly name: string;
  #interval: Interval;
  constructor(server: string, instance: string, private log: Interval[]) {
    this.name = server;
    this.#interval = { server, instance, start: NaN };
  }
  get status(): SupervisorStatus {
    return { server: this.name, state: "connected", attempt: 0 };
  }
  start(): void {
    this.#interval.start = performance.now();
    this.log.push(this.#interval);
  }
  stop(_timeoutMs?: number, reason?: string): Promise<void> {
    this.#interval.stop ??= performance.now();
    this.#interval.reason ??= reason;
    return Promise.resolve();
  }
  runAction(_action: ActionConfig): Promise<ActionRun> {
    return Promise.reject(new Error("not used"));
  }
}

function servers(n: number): ServerConfig[] {
  return Array.from({ length: n }, (_, i) => ({ name: `pbx${i + 1}` }) as ServerConfig);
}

interface Instance {
  name: string;
  fleet: Fleet<Recorder>;
  store: Store;
  proxy?: TcpProxy;
}

async function startInstance(
  db: TestDatabase,
  name: string,
  configured: ServerConfig[],
  log: Interval[],
  options: { proxy?: boolean } = {},
): Promise<Instance> {
  const proxy = options.proxy ? TcpProxy.start({ hostname: "127.0.0.1", port: 5432 }) : undefined;
  const dataDir = await Deno.makeTempDir({ prefix: "dami-fleet-" });
  const store = await openStore({
    url: proxy === undefined ? db.url : proxy.url(db.url),
    dataDir,
    connectTimeoutSeconds: 1,
  });
  const fleet = new Fleet<Recorder>({
    servers: configured,
    cluster: { instance: name, leaseTtlMs: TTL },
    connect: () => ({ db: store.db, close: () => Promise.resolve() }),
    supervise: (server) => new Recorder(server.name, name, log),
  });
  fleet.start();
  return { name, fleet, store, proxy };
}

async function closeInstance(instance: Instance): Promise<void> {
  await instance.fleet.stop(100);
  await instance.store.close();
  await instance.proxy?.close();
}

/** Servers being recorded now, by instance. */
function recording(log: Interval[]): Map<string, string[]> {
  const now = new Map<string, string[]>();
  for (const i of log) {
    if (i.stop !== undefined) continue;
    now.set(i.instance, [...(now.get(i.instance) ?? []), i.server].sort());
  }
  return now;
}

async function until(what: string, check: () => boolean, timeoutMs = 4 * TTL): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** No server was ever recorded by two instances at once. */
function assertNoOverlap(log: Interval[]): void {
  const byServer = Map.groupBy(log, (i) => i.server);
  for (const [server, intervals] of byServer) {
    const sorted = intervals.toSorted((a, b) => a.start - b.start);
    for (let k = 1; k < sorted.length; k++) {
      const before = sorted[k - 1];
      assert.ok(
        before.stop !== undefined && before.stop <= sorted[k].start,
        `${server}: ${before.instance} still recorded when ${sorted[k].instance} started`,
      );
    }
  }
}

function allRecordedOnce(log: Interval[], n: number): boolean {
  const now = [...recording(log).values()].flat();
  return now.length === n && new Set(now).size === n;
}

Deno.test("two instances split the servers fairly, each recorded once; a third takes its share", async () => {
  const db = await createTestDatabase("fleet");
  const log: Interval[] = [];
  const configured = servers(7);
  const a = await startInstance(db, "a", configured, log);
  const b = await startInstance(db, "b", configured, log);
  let c: Instance | undefined;
  try {
    await until("7 servers recorded, 4 + 3", () => {
      const sizes = [...recording(log).values()].map((s) => s.length).sort();
      return allRecordedOnce(log, 7) && sizes.join() === "3,4";
    });
    c = await startInstance(db, "c", configured, log);
    await until("7 servers recorded over three instances, none above ceil(7/3)", () => {
      const sizes = [...recording(log).values()].map((s) => s.length);
      return allRecordedOnce(log, 7) && sizes.length === 3 && Math.max(...sizes) <= 3;
    });
    assertNoOverlap(log);
    const handedOver = log.filter((i) => i.reason?.includes("handed over"));
    assert.ok(handedOver.length >= 1, "some server was handed over to the new instance");
    const [row] = await selectRows<{ n: number }>(
      a.store.db,
      sql`select count(*)::int as n from cluster_instances where expires_at > now()`,
    );
    assert.equal(row.n, 3);
  } finally {
    for (const i of [a, b, c]) if (i !== undefined) await closeInstance(i);
    await db.drop();
  }
});

Deno.test("a graceful stop hands every server over without waiting for the lease to expire", async () => {
  const db = await createTestDatabase("fleet");
  const log: Interval[] = [];
  const configured = servers(4);
  const a = await startInstance(db, "a", configured, log);
  const b = await startInstance(db, "b", configured, log);
  try {
    await until(
      "4 servers over two instances",
      () => allRecordedOnce(log, 4) && recording(log).size === 2,
    );
    const leases = async () =>
      new Map(
        (await selectRows<{ server: string; holder: string; acquired: number; expires: number }>(
          b.store.db,
          sql`select server, holder, extract(epoch from acquired_at)::float8 as acquired,
                extract(epoch from expires_at)::float8 as expires from server_leases`,
        )).map((l) => [l.server, l]),
      );
    const before = await leases();
    await a.fleet.stop(100);
    await until("b records all 4", () => recording(log).get("b")?.length === 4);
    // A released lease is free at once: b took each one before it would have expired.
    for (const [server, lease] of await leases()) {
      const old = before.get(server)!;
      if (old.holder !== "a") continue;
      assert.equal(lease.holder, "b");
      assert.ok(lease.acquired < old.expires, `${server} was taken only after a's lease expired`);
    }
    assertNoOverlap(log);
  } finally {
    await a.store.close();
    await closeInstance(b);
    await db.drop();
  }
});

Deno.test("an instance cut from the database stops recording before its leases expire; another takes over after", async () => {
  const db = await createTestDatabase("fleet");
  const log: Interval[] = [];
  const configured = servers(4);
  const a = await startInstance(db, "a", configured, log, { proxy: true });
  const b = await startInstance(db, "b", configured, log);
  try {
    await until(
      "4 servers over two instances",
      () => allRecordedOnce(log, 4) && recording(log).size === 2,
    );
    const aHeld = recording(log).get("a")!;
    const [lease] = await selectRows<{ ms: number }>(
      b.store.db,
      sql`select (extract(epoch from max(expires_at) - now()) * 1000)::float8 as ms
          from server_leases where holder = 'a'`,
    );
    a.proxy!.cut(60_000); // refused for the rest of the test
    const cutAt = performance.now();
    const expiresBy = cutAt + lease.ms;
    await until("a stopped recording", () => !recording(log).has("a"));
    const fenced = log.filter((i) => i.instance === "a" && i.stop! >= cutAt);
    assert.deepEqual(fenced.map((i) => i.server).sort(), aHeld);
    const fencedAt = Math.max(...fenced.map((i) => i.stop!));
    assert.ok(fencedAt < expiresBy, "a stopped only after its lease could have expired");
    assert.ok(fenced.every((i) => i.reason?.includes("not renewed")), "fenced for its lease");
    await until("b records all 4", () => recording(log).get("b")?.length === 4);
    for (const server of aHeld) {
      // b's recording of it now (b may have held it once before, during the first spread).
      const takeover = log.findLast((i) => i.instance === "b" && i.server === server)!;
      assert.equal(takeover.stop, undefined);
      assert.ok(takeover.start >= fencedAt, `${server} taken over before a stopped`);
    }
    assertNoOverlap(log);
    assert.match(a.fleet.status!.lastError ?? "", /.+/);
  } finally {
    await a.fleet.stop(100);
    await a.store.close().catch(() => {});
    await a.proxy!.close();
    await closeInstance(b);
    await db.drop();
  }
});

Deno.test("rendezvous preference is stable and spreads servers across instances", () => {
  assert.equal(rendezvous("a", "pbx1"), rendezvous("a", "pbx1"));
  const first = new Map<string, number>();
  for (let s = 0; s < 300; s++) {
    const server = `pbx${s}`;
    const best = ["a", "b", "c"].reduce((x, y) =>
      rendezvous(x, server) >= rendezvous(y, server) ? x : y
    );
    first.set(best, (first.get(best) ?? 0) + 1);
  }
  for (const n of first.values()) assert.ok(n > 60, `uneven preference: ${[...first.values()]}`);
});

Deno.test("alone (no cluster), every configured server is recorded, and stop ends them all", async () => {
  const log: Interval[] = [];
  const fleet = new Fleet<Recorder>({
    servers: servers(3),
    supervise: (server) => new Recorder(server.name, "solo", log),
  });
  fleet.start();
  assert.deepEqual(recording(log).get("solo"), ["pbx1", "pbx2", "pbx3"]);
  assert.equal(fleet.status, undefined);
  assert.equal(fleet.supervisors.length, 3);
  await fleet.stop();
  assert.equal(recording(log).size, 0);
  assert.ok(log.every((i) => i.reason?.includes("shutting down")));
});

Deno.test("fair shares add up to the servers and differ by at most one", () => {
  for (let servers = 0; servers <= 12; servers++) {
    for (let n = 1; n <= 5; n++) {
      const live = Array.from({ length: n }, (_, i) => `i${i}`);
      const shares = live.map((name) => fairShare(servers, live, name));
      assert.equal(shares.reduce((a, b) => a + b, 0), servers);
      assert.ok(Math.max(...shares) <= Math.ceil(servers / n));
      assert.ok(Math.max(...shares) - Math.min(...shares) <= 1);
    }
  }
});

Deno.test("cluster with the embedded store is refused, naming the field; with PostgreSQL it loads", () => {
  const text = JSON.stringify({
    cluster: { instance: "${HOSTNAME}" },
    servers: [{ name: "pbx1", host: "127.0.0.1", username: "dami", secret: "s" }],
  });
  assert.throws(
    () => parseConfig(text, "/etc/dami/dami.config.jsonc", { env: { HOSTNAME: "host1" } }),
    (error: Error) =>
      error instanceof ConfigError &&
      /cluster: fleet mode needs a shared PostgreSQL/.test(error.message),
  );
  const config = parseConfig(text, "/etc/dami/dami.config.jsonc", {
    env: { HOSTNAME: "host1", DATABASE_URL: "postgres://dami@db/dami" },
  });
  assert.deepEqual(config.cluster, { instance: "host1", leaseTtlMs: 15000 });
  assert.throws(
    () =>
      parseConfig(
        JSON.stringify({ ...JSON.parse(text), cluster: { instance: "a", leaseTtlMs: 500 } }),
        "/etc/dami/dami.config.jsonc",
        { env: { DATABASE_URL: "postgres://dami@db/dami" } },
      ),
    /cluster\.leaseTtlMs/,
  );
});
