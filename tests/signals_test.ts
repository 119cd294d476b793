/**
 * Shutdown on SIGTERM, always in a child process (a test never signals its own
 * runner): the signal handler's duplicate and repeated signals, and the daemon itself
 * stopping while its database is black-holed and nobody reads its stdout.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { abortable } from "../daemon/abortable.ts";
import { Ingest } from "../daemon/ingest.ts";
import { openStore } from "../daemon/store.ts";
import { startFakeAmi } from "./fake_ami_server.ts";
import { createTestDatabase } from "./pg.ts";

/** A child process whose stdout is read line by line, on demand. */
class Child {
  readonly status: Promise<Deno.CommandStatus>;
  readonly lines: string[] = [];
  readonly #process: Deno.ChildProcess;
  readonly #reader: ReadableStreamDefaultReader<string>;
  #rest = "";
  #next = 0;
  readonly #stdin: boolean;

  constructor(args: string[], options: { env?: Record<string, string>; stdin?: boolean } = {}) {
    this.#process = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...args],
      env: { NO_COLOR: "1", ...options.env },
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#stdin = options.stdin ?? false;
    this.status = this.#process.status;
    this.#reader = this.#process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  /**
   * Reads stdout until a line after the last one matched matches, and returns it;
   * throws if stdout ends first.
   */
  async waitFor(pattern: RegExp): Promise<string> {
    for (;;) {
      for (; this.#next < this.lines.length; this.#next++) {
        if (pattern.test(this.lines[this.#next])) return this.lines[this.#next++];
      }
      const { value, done } = await this.#reader.read();
      if (done) throw new Error(`stdout ended before ${pattern}:\n${this.lines.join("\n")}`);
      const parts = (this.#rest + value).split("\n");
      this.#rest = parts.pop()!;
      this.lines.push(...parts);
    }
  }

  /** Lines matching `pattern` read so far. */
  count(pattern: RegExp): number {
    return this.lines.filter((line) => pattern.test(line)).length;
  }

  kill(signal: Deno.Signal): void {
    this.#process.kill(signal);
  }

  async writeLine(line: string): Promise<void> {
    const writer = this.#process.stdin.getWriter();
    await writer.write(new TextEncoder().encode(`${line}\n`));
    writer.releaseLock();
  }

  /** Stops reading stdout for good, leaving the pipe open and full. */
  stopReading(): void {
    this.#reader.releaseLock();
  }

  async close(): Promise<void> {
    if (this.#stdin) await this.#process.stdin.close().catch(() => {});
    await this.#process.stdout.cancel().catch(() => {});
  }
}

const SIGNALS_CHILD = fileURLToPath(new URL("./signals_child.ts", import.meta.url));
const MAIN = fileURLToPath(new URL("../daemon/main.ts", import.meta.url));

Deno.test("a SIGTERM delivered twice at once (deno task and the process group) still flushes and exits 0", async () => {
  const child = new Child([SIGNALS_CHILD, "600000"], { stdin: true });
  await child.waitFor(/^ready$/);
  // The second one once the first has arrived (two at once may merge into one delivery),
  // but well within repeatSignalMs: the same stop delivered twice.
  child.kill("SIGTERM");
  await child.waitFor(/^got SIGTERM$/);
  child.kill("SIGTERM");
  await child.waitFor(/^got SIGTERM$/);
  assert.equal(child.count(/^flushing$/), 1);
  await child.writeLine("go");
  await child.waitFor(/^flushed$/);
  assert.equal((await child.status).code, 0);
  await child.close();
});

Deno.test("a second SIGTERM well after the first exits at once with 1, without waiting for the flush", async () => {
  // repeatSignalMs 0: any second signal counts as "well after".
  const child = new Child([SIGNALS_CHILD, "0"], { stdin: true });
  await child.waitFor(/^ready$/);
  child.kill("SIGTERM");
  await child.waitFor(/^flushing$/);
  child.kill("SIGTERM");
  assert.equal((await child.status).code, 1);
  assert.equal(child.count(/^flushed$/), 0);
  await child.close();
});

/**
 * A TCP proxy to PostgreSQL that can black-hole: connections stay open, bytes in both
 * directions are swallowed, new connections are accepted and never answered (as a
 * firewall that drops packets, or a server that froze).
 */
class BlackHoleProxy {
  readonly port: number;
  #blackHoled = false;
  #closed = false;
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();

  constructor(target: { hostname: string; port: number }) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.port = listener.addr.port;
    (async () => {
      for await (const client of listener) {
        this.#conns.add(client);
        if (this.#blackHoled) {
          this.#swallow(client);
          continue;
        }
        Deno.connect(target).then((upstream) => {
          this.#conns.add(upstream);
          this.#pipe(client, upstream);
          this.#pipe(upstream, client);
        }, () => client.close());
      }
    })().catch(() => {});
  }

  url(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  blackHole(): void {
    this.#blackHoled = true;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await from.read(buf)) !== null;) {
        if (this.#blackHoled) continue;
        for (let done = 0; done < n;) done += await to.write(buf.subarray(done, n));
      }
    } catch {
      // closed
    }
  }

  async #swallow(conn: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (await conn.read(buf) !== null);
    } catch {
      // closed
    }
  }
}

Deno.test("SIGTERM while the database is black-holed and stdout is never read: exit 0, the rest in the spool, stored at the next start", async () => {
  const db = await createTestDatabase("sigterm_blackhole");
  const dir = await Deno.makeTempDir({ prefix: "dami-sigterm-" });
  const proxy = new BlackHoleProxy({ hostname: "127.0.0.1", port: 5432 });
  await using ami = await startFakeAmi({ secret: "s3cret-ami", authFailDelayMs: 0 });
  try {
    await Deno.writeTextFile(
      `${dir}/dami.config.jsonc`,
      JSON.stringify({
        database: { url: "${DATABASE_URL}" },
        dataDir: `${dir}/data`,
        http: { listen: "127.0.0.1:0" },
        logging: { level: "debug" },
        servers: [{
          name: "pbx1",
          host: "127.0.0.1",
          port: ami.port,
          username: "dami",
          secret: "${AMI_SECRET}",
          auth: "plain",
        }],
      }),
    );
    const daemon = new Child([MAIN, "--config", `${dir}/dami.config.jsonc`], {
      env: { AMI_SECRET: "s3cret-ami", DATABASE_URL: proxy.url(db.url) },
    });
    const httpLine = await daemon.waitFor(/HTTP on http:\/\/127\.0\.0\.1:\d+/);
    const metricsUrl = `${httpLine.match(/http:\/\/127\.0\.0\.1:\d+/)![0]}/metrics`;
    await daemon.waitFor(/connected to pbx1/);
    daemon.stopReading(); // from now on nobody reads the daemon's stdout
    const session = await ami.session(0);
    const figure = async (name: string) => {
      const text = await (await fetch(metricsUrl)).text();
      return Number(text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, "m"))?.[1] ?? 0);
    };
    const send = async (from: number, to: number) => {
      let batch = "";
      for (let n = from; n <= to; n++) {
        batch += `Event: UserEvent\r\nUserEvent: Load\r\nX-Load: ${n}\r\n\r\n` +
          // A response nobody asked for: one distinct debug line each, to flood the log.
          `Response: Success\r\nActionID: flood-${n}-${"x".repeat(200)}\r\n\r\n`;
        if (n % 500 === 0 || n === to) {
          await session.send(batch);
          batch = "";
        }
      }
    };

    await send(1, 10_000);
    while (await figure("dami_events_stored_total") < 10_000) continue;
    while (await figure("dami_log_lines_dropped_total") === 0) await send(0, 0);

    proxy.blackHole();
    await send(10_001, 15_000);
    while (await figure("dami_events_received_total") < 15_000) continue;

    daemon.kill("SIGTERM");
    // Not a timing assertion: a guard so that a daemon that never exits fails the test.
    const status = await abortable(daemon.status, AbortSignal.timeout(60_000)).catch(() => {
      daemon.kill("SIGKILL");
      throw new Error("the daemon was still running 60 s after SIGTERM");
    });
    assert.equal(status.code, 0, "exit 0: the shutdown ended within its deadline");
    await daemon.close();
    proxy.close();

    // The next start stores what the spool kept: every event exactly once.
    const spooled = [];
    for await (const e of Deno.readDir(`${dir}/data/spool`)) spooled.push(e.name);
    assert.ok(spooled.length > 0, "events written during the black hole are in the spool");
    const store = await openStore({ url: db.url, dataDir: `${dir}/data` });
    const ingest = await Ingest.open({ store, dataDir: `${dir}/data` });
    await ingest.close({ timeoutMs: 60_000 });
    assert.ok(ingest.stats().spooledEvents > 0);
    await store.close();
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const [row] = await sql`
        select count(*)::int as n, count(distinct fields->>'X-Load')::int as distinct,
               min((fields->>'X-Load')::int)::int as min, max((fields->>'X-Load')::int)::int as max
          from ami_events where fields ? 'X-Load' and fields->>'X-Load' <> '0'`;
      assert.deepEqual({ ...row }, { n: 15_000, distinct: 15_000, min: 1, max: 15_000 });
    } finally {
      await sql.end();
    }
  } finally {
    proxy.close();
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});
