/**
 * The daemon as a process (`deno run daemon/main.ts`), end to end: against the fake
 * Asterisk and a real PostgreSQL database; SIGTERM under load; config refusal; the
 * demo; secrets never in the logs.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { EXIT_CONFIG } from "../daemon/main.ts";
import { eventRecord, eventRowValues } from "../daemon/ingest_record.ts";
import { AmiParser } from "../dami/parser.ts";
import { eventTexts, FIXTURE_NAMES } from "./fixtures.ts";
import { DaemonProcess } from "./daemon_process.ts";
import { startFakeAmi } from "./fake_ami_server.ts";
import { createTestDatabase, type TestDatabase } from "./pg.ts";

const AMI_SECRET = "ami-Secret-7f3a9c";
const DB_PASSWORD = "db-Password-51e2b0";

async function writeConfig(dir: string, body: Record<string, unknown>): Promise<string> {
  const file = `${dir}/dami.config.jsonc`;
  await Deno.writeTextFile(file, `// test config\n${JSON.stringify(body, null, 2)}\n`);
  return file;
}

function urlWithPassword(db: TestDatabase): string {
  // Trust authentication ignores the password; it is there to prove it is never logged.
  const url = new URL(db.url);
  url.password = DB_PASSWORD;
  return url.toString();
}

Deno.test("--help prints the usage and exits 0", async () => {
  const daemon = new DaemonProcess(["--help"], {});
  const { code, output } = await daemon.finished();
  assert.equal(code, 0);
  assert.match(output, /deno task start \[--config PATH\]/);
  assert.match(output, /deno task demo/);
});

Deno.test("a bad config file is refused with its path, field and expectation, exit 78", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dami-daemon-" });
  try {
    const file = await writeConfig(dir, {
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        username: "dami",
        secret: "${AMI_SECRET}",
        keepalive: { schedule: "every 15s" },
      }],
    });
    const daemon = new DaemonProcess(["--config", file], { AMI_SECRET });
    const { code, stderr, output } = await daemon.finished();
    assert.equal(code, EXIT_CONFIG);
    assert.match(stderr, new RegExp(`${file}:\\d+:\\d+: servers\\[0\\]\\.keepalive\\.schedule: `));
    assert.match(stderr, /expected a cron expression/);
    assert.ok(!(stderr + output).includes(AMI_SECRET));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGTERM under load: exit 0 within 10 s and every event sent before Logoff is stored", async () => {
  const db = await createTestDatabase("daemon");
  const dir = await Deno.makeTempDir({ prefix: "dami-daemon-" });
  await using ami = await startFakeAmi({ secret: AMI_SECRET, authFailDelayMs: 0 });
  try {
    const file = await writeConfig(dir, {
      database: { url: "${DATABASE_URL}" },
      dataDir: "./data",
      http: { listen: "127.0.0.1:0" },
      logging: { level: "debug" },
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        port: ami.port,
        username: "dami",
        secret: "${AMI_SECRET}",
        auth: "plain",
        filters: ["!Event: VarSet"],
      }],
      actions: [{ name: "channels", action: "CoreShowChannels", onConnect: true }],
    });
    const daemon = new DaemonProcess(["--config", file], {
      AMI_SECRET,
      DATABASE_URL: urlWithPassword(db),
    });
    await daemon.waitForLog(/^connected to pbx1/);
    const session = await ami.session(0);

    // Load: events as fast as the socket takes them, numbered so gaps would show.
    let sent = 0;
    let sentBeforeLogoff: number | undefined;
    session.nextAction("Logoff").then(() => (sentBeforeLogoff = sent));
    const pump = (async () => {
      while (!session.isClosed) {
        let batch = "";
        for (let i = 0; i < 200; i++) {
          sent++;
          batch +=
            `Event: Newexten\r\nPrivilege: dialplan,all\r\nChannel: PJSIP/6001-00000001\r\n` +
            `Uniqueid: 1795663687.42\r\nLinkedid: 1795663687.42\r\nApplication: NoOp\r\n` +
            `AppData: load ${sent}\r\nX-Load: ${sent}\r\n\r\n`;
        }
        await session.send(batch);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    while (sent < 20_000) await new Promise((resolve) => setTimeout(resolve, 20));

    const killedAt = Date.now();
    daemon.kill("SIGTERM");
    const { code, output } = await daemon.finished();
    const exitMs = Date.now() - killedAt;
    await pump;
    assert.equal(code, 0, output.slice(-3000));
    assert.ok(
      exitMs < 10_000,
      `exited after ${exitMs} ms: ${
        output.split("\n").filter((l) => !l.includes("load ")).slice(-15).join("\n")
      }`,
    );
    assert.ok(sentBeforeLogoff !== undefined, "the daemon sent Logoff");

    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [{ n, max, distinct }] = await sql`
        select count(*)::int as n, max((fields->>'X-Load')::int)::int as max,
               count(distinct (fields->>'X-Load'))::int as distinct
          from ami_events where fields ? 'X-Load'`;
      assert.ok(
        max >= sentBeforeLogoff!,
        `stored up to ${max}, ${sentBeforeLogoff} sent before Logoff`,
      );
      assert.equal(n, max, "no gap: every event up to the last one read is stored");
      assert.equal(distinct, n, "no duplicate");
      const [session1] = await sql`
        select disconnect_reason, event_count::int as event_count,
               (select count(*)::int from ami_events e where e.session_id = s.id) as stored
          from ami_sessions s`;
      assert.match(session1.disconnect_reason, /^stopped: /);
      assert.equal(session1.stored, session1.event_count, "every event received is stored");
      const [run] = await sql`select name, status from action_runs`;
      assert.deepEqual({ ...run }, { name: "channels", status: "ok" });
    } finally {
      await sql.end();
    }
    assert.ok(!output.includes(AMI_SECRET), "the AMI secret never appears in the logs");
    assert.ok(!output.includes(DB_PASSWORD), "the database password never appears in the logs");
    assert.match(output, /"message":"stopped: \d+ events stored, 0 bytes left in the spool"/);
  } finally {
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the daemon keeps recording across a PBX restart, serves /healthz, and reports retention runs in /metrics", async () => {
  const db = await createTestDatabase("daemon");
  const dir = await Deno.makeTempDir({ prefix: "dami-daemon-" });
  await using ami = await startFakeAmi({ secret: AMI_SECRET, authFailDelayMs: 0 });
  try {
    const file = await writeConfig(dir, {
      database: { url: "${DATABASE_URL}" },
      http: { listen: "127.0.0.1:0" },
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        port: ami.port,
        username: "dami",
        secret: "${AMI_SECRET}",
        reconnect: { initialMs: 50, maxMs: 200 },
      }],
      retention: { events: "90d", schedule: "0 30 3 * * *" },
    });
    const daemon = new DaemonProcess(["--config", file], {
      AMI_SECRET,
      DATABASE_URL: db.url,
    });
    const httpLine = await daemon.waitForLog(/^HTTP on /);
    const port = Number(/:(\d+) \(/.exec(httpLine)![1]);
    await daemon.waitForLog(/^connected to pbx1/);
    // Retention ran at start, and /metrics says so.
    for (const deadline = Date.now() + 15_000;;) {
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      if (/^dami_retention_runs_total\{result="ok"\} 1$/m.test(metrics)) {
        assert.match(metrics, /^dami_retention_days_pending 0$/m);
        assert.match(metrics, /^dami_retention_last_run_timestamp_seconds \d/m);
        break;
      }
      if (Date.now() > deadline) throw new Error(`no retention run in /metrics:\n${metrics}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const healthz = async () => {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      await response.body?.cancel();
      return response.status;
    };
    assert.equal(await healthz(), 200);
    await ami.restart({ downMs: 500 });
    await daemon.waitForLog(/ended: shutdown: the PBX announced Shutdown/);
    const deadline = Date.now() + 15_000;
    while (daemon.records.filter((r) => /^connected to pbx1/.test(r.message)).length < 2) {
      if (Date.now() > deadline) throw new Error("no reconnection");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(await healthz(), 200);
    daemon.kill("SIGTERM");
    const { code } = await daemon.finished();
    assert.equal(code, 0);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const sessions = await sql`
        select disconnect_reason from ami_sessions order by connected_at`;
      assert.equal(sessions.length, 2);
      assert.match(sessions[0].disconnect_reason, /^shutdown: /);
      assert.match(sessions[1].disconnect_reason, /^stopped: /);
    } finally {
      await sql.end();
    }
  } finally {
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the demo records simulated calls and says how to query them", async () => {
  const db = await createTestDatabase("demo");
  const dir = await Deno.makeTempDir({ prefix: "dami-demo-" });
  try {
    // Reports every second rather than every 20 s: the test waits for the first one
    // that has a completed call in it.
    const daemon = new DaemonProcess(["--demo"], {
      DATABASE_URL: db.url,
      DAMI_DEMO_INTERVAL_MS: "1000",
    }, dir);
    await daemon.waitForLog(/^connected to demo/);
    const announcement = await daemon.waitForLog(
      /calls simulated, [1-9]\d* events and [1-9]\d* calls recorded; query them: .*deno task query calls-per-day/,
      40_000,
    );
    daemon.kill("SIGINT");
    const { code } = await daemon.finished();
    assert.equal(code, 0);
    assert.match(announcement, /[1-9]\d* events/);
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [{ events, calls }] = await sql`
        select (select count(*)::int from ami_events) as events,
               (select count(*)::int from calls) as calls`;
      assert.ok(events > 10, `${events} events`);
      assert.ok(calls >= 1, `${calls} calls`);
      const runs = await sql`select distinct name from action_runs order by name`;
      assert.ok(runs.some((r) => r.name === "channels"));
    } finally {
      await sql.end();
    }
  } finally {
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** The ```sql blocks of the README, in order. */
async function readmeSqlBlocks(): Promise<string[]> {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  return [...readme.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]);
}

Deno.test("while the demo runs on the embedded store, every SQL block of the README runs through its SQL address", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dami-demo-embedded-" });
  try {
    const daemon = new DaemonProcess(["--demo"], { DATABASE_URL: "" }, dir);
    const announced = await daemon.waitForLog(/^SQL clients .*connect to postgres:/, 120_000);
    const url = /postgres:\/\/\S+/.exec(announced)![0];
    await daemon.waitForLog(/^call .*->/, 60_000); // a finished call is in the store
    // The commands to paste come one per line, and the PBX's login is shown to try it.
    await daemon.waitForLog(/^ {2}psql postgres:\/\/\S+$/);
    await daemon.waitForLog(/^ {2}deno task query missed-calls$/);
    await daemon.waitForLog(/AMI\) on 127\.0\.0\.1:\d+, username admin, secret mysecret/);
    const blocks = await readmeSqlBlocks();
    assert.ok(blocks.length >= 1);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      for (const block of blocks) await sql.unsafe(block); // simple protocol: many statements
      const [{ calls }] = await sql`select count(*)::int as calls from calls`;
      assert.ok(calls >= 1, `${calls} calls`);
    } finally {
      await sql.end();
    }
    // psql, as a user would paste the blocks, stopping at the first error.
    for (const block of blocks) {
      const psql = await new Deno.Command("psql", {
        args: [url, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-c", block],
        stdin: "null",
      }).output();
      assert.ok(psql.success, new TextDecoder().decode(psql.stderr));
    }
    daemon.kill("SIGINT");
    const { code } = await daemon.finished();
    assert.equal(code, 0);
    await assert.rejects(Deno.stat(`${dir}/data/sql.addr`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the daemon stores every recorded event byte for byte as the parser's path would (wire path and parsed path)", async () => {
  const db = await createTestDatabase("daemon_wire");
  const dir = await Deno.makeTempDir({ prefix: "dami-daemon-" });
  await using ami = await startFakeAmi({ secret: AMI_SECRET, authFailDelayMs: 0 });
  try {
    const file = await writeConfig(dir, {
      database: { url: "${DATABASE_URL}" },
      dataDir: "./data",
      http: { listen: "127.0.0.1:0" },
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        port: ami.port,
        username: "dami",
        secret: "${AMI_SECRET}",
        auth: "plain",
      }],
    });
    const daemon = new DaemonProcess(["--config", file], { AMI_SECRET, DATABASE_URL: db.url });
    await daemon.waitForLog(/^connected to pbx1/);
    const session = await ami.session(0);
    // Every event of every recording, plus some the wire path must decline: a repeated
    // key, invalid UTF-8 is not expressible in a string, a tab, a line without a colon.
    const texts = [
      ...FIXTURE_NAMES.flatMap((name) => eventTexts(name)),
      "Event: VarSet\r\nChanVariable: a=1\r\nChanVariable: b=2\r\nUniqueid: 9.1\r\n\r\n",
      "Event: UserEvent\r\nUserEvent: x\r\nData: tab\there\r\nCallerIDName: Zoë\r\n\r\n",
      "Event: UserEvent\r\nUserEvent: y\r\nno colon here\r\n\r\n",
    ];
    for (let i = 0; i < texts.length; i += 50) await session.send(texts.slice(i, i + 50).join(""));
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      for (const deadline = Date.now() + 30_000;;) {
        const [{ n }] = await sql`select count(*)::int as n from ami_events`;
        if (n >= texts.length + 1) break;
        if (Date.now() > deadline) throw new Error(`${n} of ${texts.length} events stored`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const rows = await sql`
        select seq::int as seq, event, uniqueid, linkedid, channel, action_id, fields::text as fields,
               raw_b64, escaped
          from ami_events order by seq`;
      // The fake Asterisk's own events at login (FullyBooted, ...) come first.
      const offset = rows.length - texts.length;
      assert.ok(offset >= 0 && offset < 5, `${rows.length} rows for ${texts.length} events`);
      const parser = new AmiParser({ expectBanner: false });
      const messages = texts.flatMap((t) => parser.push(new TextEncoder().encode(t)));
      assert.equal(messages.length, texts.length);
      const columns = (row: Record<string, unknown>) => JSON.stringify(row);
      for (const [i, msg] of messages.entries()) {
        const v = eventRowValues(eventRecord("pbx1", "s", msg));
        const [{ fields }] = await sql`select ${v.fields}::text::jsonb::text as fields`;
        assert.equal(
          columns(rows[offset + i]),
          columns({
            seq: offset + i + 1,
            event: v.event,
            uniqueid: v.uniqueid,
            linkedid: v.linkedid,
            channel: v.channel,
            action_id: v.action_id,
            fields,
            raw_b64: v.raw_b64,
            escaped: v.escaped === "t",
          }),
          texts[i].slice(0, 200),
        );
      }
    } finally {
      await sql.end();
    }
    daemon.kill("SIGTERM");
    assert.equal((await daemon.finished()).code, 0);
  } finally {
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});
