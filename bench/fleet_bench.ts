/**
 * `deno task bench fleet`: 100 simulated PBXs at 50 events/s each (5,000 events/s in
 * all), recorded into one PostgreSQL by two daemon instances in fleet mode. Reports
 * events/s stored, each instance's RSS, then kills one instance with SIGKILL and
 * reports the failover time (until every one of its PBXs has a new session), the
 * overlap (PBXs that ever had two DAMI sessions at once: must be 0) and the gap per
 * taken-over PBX (events the PBX sent while nobody recorded it).
 *
 * @module
 */
import postgres from "postgres";
import { DaemonProcess } from "../tests/daemon_process.ts";
import { type FakeAmi, formatAmiMessage, startFakeAmi } from "../tests/fake_ami_server.ts";
import { createTestDatabase } from "../tests/pg.ts";

/** Options of {@linkcode runFleetBench}. */
export interface FleetBenchOptions {
  /** @default {100} */
  pbxs?: number;
  /** Events per second per PBX. @default {50} */
  rate?: number;
  /** Seconds of steady recording before the kill. @default {20} */
  steadySeconds?: number;
  /** Lease TTL of the fleet. @default {6000} */
  leaseTtlMs?: number;
}

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024;
}

/** Runs the scenario; resolves to one figure per line of the report. */
export async function runFleetBench(
  options: FleetBenchOptions = {},
): Promise<Record<string, unknown>[]> {
  const count = options.pbxs ?? 100;
  const rate = options.rate ?? 50;
  const ttl = options.leaseTtlMs ?? 6000;
  const db = await createTestDatabase("bench_fleet");
  const dir = await Deno.makeTempDir({ prefix: "dami-bench-fleet-" });
  const pbxs: FakeAmi[] = [];
  for (let i = 0; i < count; i++) pbxs.push(await startFakeAmi({ authFailDelayMs: 0 }));
  const sent = new Array<number>(count).fill(0);
  let maxOpen = 0;
  // Every 100 ms, each PBX emits rate/10 numbered events to whoever is logged in.
  const pump = setInterval(() => {
    pbxs.forEach((pbx, i) => {
      maxOpen = Math.max(maxOpen, pbx.openSessions.length);
      let batch = "";
      for (let k = 0; k < rate / 10; k++) {
        batch += formatAmiMessage({
          Event: "Newexten",
          Privilege: "dialplan,all",
          Channel: `PJSIP/${6000 + i}-00000001`,
          Uniqueid: "1795663687.42",
          Linkedid: "1795663687.42",
          Application: "NoOp",
          "X-Seq": String(++sent[i]),
        });
      }
      pbx.broadcast(batch).catch(() => {});
    });
  }, 100);
  const config = `${dir}/dami.config.jsonc`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      database: { url: "${DATABASE_URL}" },
      dataDir: "${DAMI_DATA_DIR}",
      http: { listen: "127.0.0.1:0" },
      logging: { level: "warning" },
      cluster: { instance: "${DAMI_INSTANCE}", leaseTtlMs: ttl },
      servers: pbxs.map((pbx, i) => ({
        name: `pbx${i + 1}`,
        host: "127.0.0.1",
        port: pbx.port,
        username: "dami",
        secret: "dami-secret",
        auth: "plain",
        reconnect: { initialMs: 200, maxMs: 2000 },
      })),
    }),
  );
  const start = (name: string) =>
    new DaemonProcess(["--config", config], {
      DATABASE_URL: db.url,
      DAMI_DATA_DIR: `${dir}/${name}`,
      DAMI_INSTANCE: name,
    });
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  const figures: Record<string, unknown>[] = [];
  const a = start("a");
  const b = start("b");
  try {
    const allOpen = () => pbxs.every((p) => p.openSessions.length === 1);
    const deadline = Date.now() + 60_000;
    while (!allOpen()) {
      if (Date.now() > deadline) throw new Error("the fleet did not connect every PBX in 60 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    const stored = async () =>
      (await sql`select count(*)::int as n from ami_events`)[0].n as number;
    await new Promise((r) => setTimeout(r, 3000)); // warm up
    const before = await stored();
    const t0 = performance.now();
    const rss = { a: [] as number[], b: [] as number[] };
    for (let s = 0; s < (options.steadySeconds ?? 20); s++) {
      await new Promise((r) => setTimeout(r, 1000));
      rss.a.push(rssMb(a.pid));
      rss.b.push(rssMb(b.pid));
    }
    const storedRate = (await stored() - before) / ((performance.now() - t0) / 1000);
    const held = await sql`select instance, count(*)::int as n from ami_sessions
      where disconnected_at is null group by instance order by instance`;
    figures.push({
      figure: "steady",
      pbxs: count,
      offered_events_per_s: count * rate,
      stored_events_per_s: Math.round(storedRate),
      held: Object.fromEntries(held.map((r) => [r.instance, r.n])),
      rss_mb_a: { steady: Math.round(rss.a.at(-1)!), peak: Math.round(Math.max(...rss.a)) },
      rss_mb_b: { steady: Math.round(rss.b.at(-1)!), peak: Math.round(Math.max(...rss.b)) },
    });

    const bServers = (await sql`select server from ami_sessions
      where instance = 'b' and disconnected_at is null`).map((r) => r.server as string);
    const sessionsBefore = new Map(
      bServers.map((name) => [name, pbxs[Number(name.slice(3)) - 1].sessions.length]),
    );
    const killedAt = performance.now();
    b.kill("SIGKILL");
    await b.finished();
    const takenOver = new Map<string, number>();
    while (takenOver.size < bServers.length && performance.now() - killedAt < 4 * ttl + 30_000) {
      for (const name of bServers) {
        const pbx = pbxs[Number(name.slice(3)) - 1];
        if (
          !takenOver.has(name) && pbx.sessions.length > sessionsBefore.get(name)! &&
          pbx.openSessions.some((s) => s.loggedIn)
        ) takenOver.set(name, performance.now() - killedAt);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 2000)); // let the survivor write what it got
    const gaps = await sql`
      select server, ${sent[0]}::int as sent, count(distinct (fields->>'X-Seq')::int)::int as got,
             max((fields->>'X-Seq')::int)::int as last
        from ami_events where server in ${sql(bServers)} group by server`;
    const missing = gaps.map((g) => g.last - g.got);
    const overlaps = await sql`
      select count(*)::int as n from ami_sessions s1 join ami_sessions s2
        on s1.server = s2.server and s1.id < s2.id and s1.instance <> s2.instance
       where s1.connected_at < coalesce(s2.disconnected_at, 'infinity')
         and s2.connected_at < coalesce(s1.disconnected_at, now())
         and not (s1.instance = 'b' and s1.disconnected_at is null
                  and s2.connected_at >= now() - make_interval(secs => ${
      (performance.now() - killedAt) / 1000
    }))`;
    figures.push({
      figure: "failover after kill -9",
      lease_ttl_ms: ttl,
      pbxs_taken_over: takenOver.size,
      of: bServers.length,
      failover_ms: {
        max: Math.round(Math.max(...takenOver.values())),
        min: Math.round(Math.min(...takenOver.values())),
      },
      gap_events_per_pbx: {
        max: Math.max(...missing),
        avg: Math.round(missing.reduce((x, y) => x + y, 0) / Math.max(1, missing.length)),
      },
      overlap_pbxs_two_sessions_at_once: maxOpen > 1 ? "yes" : 0,
      overlapping_sessions_in_ami_sessions: overlaps[0].n,
      survivor_rss_mb: Math.round(rssMb(a.pid)),
    });
  } finally {
    clearInterval(pump);
    for (const d of [a, b]) {
      try {
        d.kill("SIGTERM");
      } catch { /* gone */ }
      await d.finished();
    }
    for (const pbx of pbxs) await pbx.close();
    await sql.end();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
  return figures;
}
