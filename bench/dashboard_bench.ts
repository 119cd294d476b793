/**
 * `deno task bench dashboard`: each dashboard page's first paint with its data, in
 * headless Chromium, against the daemon on a PostgreSQL store of 500,000 calls over 90
 * days (with their queue stays and endpoint samples), generated server-side.
 *
 * "First paint" here is from navigation to the page showing its data (its tiles, table
 * or grid), measured 5 times on a fresh page each; the median and the worst are reported.
 *
 * @module
 */
import postgres from "postgres";
import { openStore } from "../daemon/store.ts";
import { launchChromium } from "../tests/chromium.ts";
import { DaemonProcess } from "../tests/daemon_process.ts";
import { startFakeAmi } from "../tests/fake_ami_server.ts";
import { createTestDatabase } from "../tests/pg.ts";

/** What each page shows once its data is there. */
const PAGES: Record<string, string> = {
  overview: "[data-tile=total]",
  live: "#live-body h2",
  calls: "#call-results tbody tr[role=link]",
  queues: "#queue-results table",
  endpoints: "main table.grid",
  events: "#events-status",
};

/** Builds the store, starts the daemon, measures; resolves to one figure per page. */
export async function runDashboardBench(calls = 500_000): Promise<Record<string, unknown>[]> {
  const db = await createTestDatabase("bench_dashboard");
  const dir = await Deno.makeTempDir({ prefix: "dami-bench-dashboard-" });
  const store = await openStore({ url: db.url, dataDir: dir });
  await store.close();
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  const started = performance.now();
  // Calls spread over the last 90 days, a tenth of them through a queue, with the
  // dispositions and durations of a contact center.
  await sql`
    insert into calls (call_id, server, started_at, answered_at, ended_at, src, dst, answered_by,
                       disposition, duration_s, billsec_s, hangup_cause, transferred, queue, legs,
                       complete)
    select 'c' || g, 'pbx1', t, case when g % 5 <> 0 then t + interval '8 s' end,
           t + make_interval(secs => 30 + g % 400), '+1555' || lpad((g % 9000)::text, 7, '0'),
           (6000 + g % 50)::text, case when g % 5 <> 0 then 'SIP/' || (6000 + g % 50) end,
           case when g % 5 <> 0 then 'ANSWERED' when g % 10 = 0 then 'BUSY' else 'NO ANSWER' end,
           30 + g % 400, case when g % 5 <> 0 then 22 + g % 400 else 0 end, 16, false,
           case when g % 10 = 3 then 'support' end, 2, true
      from generate_series(1, ${calls}) g,
           lateral (select now() - make_interval(secs => (g::float8 / ${calls}) * 90 * 86400) as t) x`;
  await sql`
    insert into queue_calls (server, uniqueid, call_id, queue, caller, joined_at, connected_at,
                             left_at, agent, hold_s, talk_s, outcome)
    select server, 'u' || call_id, call_id, 'support', src, started_at,
           case when answered_at is not null then started_at + interval '8 s' end,
           started_at + interval '8 s', answered_by, 8,
           case when answered_at is not null then billsec_s end,
           case when answered_at is not null then 'answered' else 'abandoned' end
      from calls where queue = 'support'`;
  await sql`
    insert into endpoint_status (server, endpoint, observed_at, state, latency_ms, source,
                                 event_id)
    select 'pbx1', 'SIP/' || (6000 + e), now() - make_interval(mins => m * 15),
           case when (m + e) % 97 = 0 then 'unreachable' else 'reachable' end, 12, 'PeerStatus',
           m * 50 + e + 1
      from generate_series(0, 49) e, generate_series(0, 90 * 96) m`;
  await sql`analyze`;
  const buildSeconds = (performance.now() - started) / 1000;

  await using ami = await startFakeAmi({ authFailDelayMs: 0 });
  await Deno.writeTextFile(
    `${dir}/dami.config.jsonc`,
    JSON.stringify({
      database: { url: "${DATABASE_URL}" },
      dataDir: "./data",
      http: { listen: "127.0.0.1:0" },
      logging: { level: "info" },
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        port: ami.port,
        username: "dami",
        secret: "dami-secret",
        auth: "plain",
      }],
    }),
  );
  const daemon = new DaemonProcess(["--config", `${dir}/dami.config.jsonc`], {
    DATABASE_URL: db.url,
  }, dir);
  const figures: Record<string, unknown>[] = [{
    figure: "store",
    calls,
    queue_calls: (await sql`select count(*)::int as n from queue_calls`)[0].n,
    endpoint_samples: (await sql`select count(*)::int as n from endpoint_status`)[0].n,
    build_s: Math.round(buildSeconds),
  }];
  const browser = await launchChromium();
  try {
    const base = (await daemon.waitForLog(/^HTTP on http:\/\//, 60_000)).match(
      /http:\/\/[^ ]+/,
    )![0];
    for (const [page, ready] of Object.entries(PAGES)) {
      const times: number[] = [];
      for (let run = 0; run < 5; run++) {
        const context = await browser.newContext({ timezoneId: "UTC" });
        const tab = await context.newPage();
        const t0 = performance.now();
        await tab.goto(`${base}/#/${page}`);
        await tab.locator(ready).first().waitFor({ timeout: 30_000 });
        times.push(performance.now() - t0);
        await context.close();
      }
      times.sort((a, b) => a - b);
      figures.push({
        figure: "first paint with data",
        page,
        median_ms: Math.round(times[2]),
        max_ms: Math.round(times[4]),
      });
    }
  } finally {
    await browser.close();
    daemon.kill("SIGTERM");
    await daemon.finished();
    await sql.end();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
  return figures;
}

if (import.meta.main) {
  for (const figure of await runDashboardBench()) console.log(JSON.stringify(figure));
}
