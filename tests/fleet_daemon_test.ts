/**
 * Fleet mode end to end: daemon processes sharing one config and one PostgreSQL, in
 * front of simulated PBXs that count how many sessions each has open. A third instance
 * takes its share; a SIGTERM hands over at once; an instance cut from its database
 * stops its sessions before its leases expire; a kill -9 is taken over after the TTL.
 * Throughout, no PBX ever has two DAMI sessions at once, and `ami_sessions` (which
 * records the instance of each session) shows no overlap.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { DaemonProcess } from "./daemon_process.ts";
import { type FakeAmi, startFakeAmi } from "./fake_ami_server.ts";
import { createTestDatabase } from "./pg.ts";
import { TcpProxy } from "./tcp_proxy.ts";

const TTL = 5000;
const SERVERS = 4;

Deno.test("fleet: share, graceful handover, fencing on a database cut, takeover after kill -9", async () => {
  const db = await createTestDatabase("fleet_daemon");
  const dir = await Deno.makeTempDir({ prefix: "dami-fleet-" });
  const pbxs: FakeAmi[] = [];
  for (let i = 0; i < SERVERS; i++) pbxs.push(await startFakeAmi({ authFailDelayMs: 0 }));
  // The PBXs' own view: never more than one session open at once.
  let maxOpen = 0;
  const watch = setInterval(() => {
    for (const pbx of pbxs) maxOpen = Math.max(maxOpen, pbx.openSessions.length);
  }, 5);
  const config = `${dir}/dami.config.jsonc`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      database: { url: "${DATABASE_URL}" },
      dataDir: "${DAMI_DATA_DIR}",
      http: { listen: "127.0.0.1:0" },
      logging: { level: "info" },
      cluster: { instance: "${DAMI_INSTANCE}", leaseTtlMs: TTL },
      servers: pbxs.map((pbx, i) => ({
        name: `pbx${i + 1}`,
        host: "127.0.0.1",
        port: pbx.port,
        username: "dami",
        secret: "dami-secret",
        auth: "plain",
        keepalive: { schedule: "* * * * * *", timeoutMs: 500, maxMissed: 2 },
        reconnect: { initialMs: 100, maxMs: 500 },
      })),
    }),
  );
  const proxies = new Map<string, TcpProxy>();
  const daemons = new Map<string, DaemonProcess>();
  const start = (name: string) => {
    const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
    proxies.set(name, proxy);
    const daemon = new DaemonProcess(["--config", config], {
      DATABASE_URL: proxy.url(db.url),
      DAMI_DATA_DIR: `${dir}/${name}`,
      DAMI_INSTANCE: name,
    });
    daemons.set(name, daemon);
    return daemon;
  };
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  /** Sessions recorded open, per instance. */
  const held = async () => {
    try {
      const rows = await sql<{ instance: string; n: number }[]>`
        select instance, count(*)::int as n from ami_sessions
         where disconnected_at is null group by instance`;
      return new Map(rows.map((r) => [r.instance, r.n]));
    } catch (error) {
      if ((error as { code?: string }).code === "42P01") return new Map(); // not migrated yet
      throw error;
    }
  };
  const until = async (what: string, check: () => Promise<boolean>, ms = 6 * TTL) => {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) {
        const logs = [...daemons].map(([n, d]) => `${n}:\n${d.lines.slice(-15).join("\n")}`);
        throw new Error(`timed out waiting until ${what}\n${logs.join("\n")}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const allOpen = () => pbxs.every((pbx) => pbx.openSessions.length === 1);
  try {
    start("a");
    start("b");
    await until("4 PBXs recorded, 2 per instance", async () => {
      const h = await held();
      return allOpen() && h.get("a") === 2 && h.get("b") === 2;
    });

    start("c");
    await until("a third instance holds a share, none more than ceil(4/3) = 2", async () => {
      const h = await held();
      return allOpen() && (h.get("c") ?? 0) >= 1 && Math.max(...h.values()) <= 2;
    });

    const cLeases = await sql<{ server: string; expires: Date }[]>`
      select server, expires_at as expires from server_leases where holder = 'c'`;
    daemons.get("c")!.kill("SIGTERM");
    assert.equal((await daemons.get("c")!.finished()).code, 0);
    await until("c's PBXs are taken over", async () => allOpen() && !(await held()).has("c"));
    // Handed over at once: each was taken before c's lease on it would have expired.
    for (const { server, expires } of cLeases) {
      const [lease] = await sql<{ acquired: Date }[]>`
        select acquired_at as acquired from server_leases where server = ${server}`;
      assert.ok(lease.acquired < expires, `${server} waited for the lease to expire`);
    }

    // a loses its database: it must end its sessions before its leases can expire.
    const aHeld = (await held()).get("a")!;
    const [{ expires_ms }] = await sql<{ expires_ms: number }[]>`
      select (extract(epoch from max(expires_at) - now()) * 1000)::float8 as expires_ms
        from server_leases where holder = 'a'`;
    const cutAt = Date.now();
    proxies.get("a")!.cut(60_000);
    await daemons.get("a")!.waitForLog(/lease on pbx\d not renewed/, 3 * TTL);
    const aSessions = async () =>
      (await sql`select 1 from ami_sessions where instance = 'a' and disconnected_at is null`)
        .length;
    // a's session ends are in its spool (its database is gone); the PBXs see the Logoff.
    await until("a's PBX sessions are closed", () => {
      const open = pbxs.reduce((n, p) => n + p.openSessions.length, 0);
      return Promise.resolve(open === SERVERS - aHeld);
    }, TTL);
    const fencedMs = Date.now() - cutAt;
    assert.ok(fencedMs < expires_ms, `fenced after ${fencedMs} ms, lease left ${expires_ms} ms`);
    await until("b records all 4", async () => allOpen() && (await held()).get("b") === 4);
    proxies.get("a")!.restore();
    await until("a writes its spooled session ends and takes its share back", async () => {
      const h = await held();
      return allOpen() && (await aSessions()) >= 1 && h.get("b")! <= 2;
    });

    const killedAt = Date.now();
    daemons.get("b")!.kill("SIGKILL");
    await daemons.get("b")!.finished();
    await until("a records all 4 after b's leases expire", async () => {
      return allOpen() && (await aSessions()) === SERVERS;
    });

    assert.equal(maxOpen, 1, "a PBX had two DAMI sessions at once");
    // No overlap in the record either; b's sessions were cut by the kill (no end recorded).
    const overlaps = await sql`
      select s1.server, s1.instance as first, s2.instance as second
        from ami_sessions s1 join ami_sessions s2
          on s1.server = s2.server and s1.id < s2.id and s1.instance <> s2.instance
       where s1.connected_at < coalesce(s2.disconnected_at, 'infinity')
         and s2.connected_at < coalesce(s1.disconnected_at, ${new Date(killedAt)})`;
    assert.deepEqual([...overlaps], []);
    const instances = await sql`select distinct instance from ami_sessions order by 1`;
    assert.deepEqual(instances.map((r) => r.instance), ["a", "b", "c"]);
  } finally {
    clearInterval(watch);
    for (const daemon of daemons.values()) {
      try {
        daemon.kill("SIGKILL");
      } catch { /* already gone */ }
      await daemon.finished();
    }
    for (const proxy of proxies.values()) await proxy.close();
    for (const pbx of pbxs) await pbx.close();
    await sql.end();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});
