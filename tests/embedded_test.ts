/**
 * The embedded store served over the PostgreSQL protocol (`daemon/embedded/`): several
 * clients at once, a forgotten transaction, statement names, one process per store,
 * and the query CLI finding a running store.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import {
  addressFile,
  EmbeddedStoreBusyError,
  EmbeddedStoreMissingError,
  startEmbedded,
} from "../daemon/embedded/embedded.ts";
import { openStore } from "../daemon/store.ts";

const QUERY_CLI = fileURLToPath(new URL("../daemon/query_cli.ts", import.meta.url));

let template: Promise<string> | undefined;

/**
 * A fresh data directory holding an empty store: a copy of one created once (creating
 * a PGlite database takes seconds; copying its files, milliseconds).
 */
async function dataDirWithStore(): Promise<string> {
  template ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "dami-embedded-template-" });
    await (await startEmbedded({ dataDir: dir })).close();
    return dir;
  })();
  const source = await template;
  const dataDir = await Deno.makeTempDir({ prefix: "dami-embedded-" });
  const copy = await new Deno.Command("cp", { args: ["-a", `${source}/pglite`, dataDir] }).output();
  assert.ok(copy.success);
  return dataDir;
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

function client(url: string): postgres.Sql {
  return postgres(url, { max: 1, onnotice: () => {} });
}

Deno.test("two clients at once: a query waits for another client's transaction and sees its commit", async () => {
  const dataDir = await dataDirWithStore();
  const embedded = await startEmbedded({ dataDir });
  const writer = client(embedded.url);
  const reader = client(embedded.url);
  try {
    await writer`create table t (n int)`;
    const inTransaction = Promise.withResolvers<void>();
    const commit = Promise.withResolvers<void>();
    const transaction = writer.begin(async (sql) => {
      await sql`insert into t values (1), (2)`;
      inTransaction.resolve();
      await commit.promise;
      await sql`insert into t values (3)`;
    });
    await inTransaction.promise;
    // Asked while the writer's transaction is open: on PGlite's single backend it would
    // see 2 rows from inside that transaction; it waits for the commit and sees 3.
    const query = reader`select count(*)::int as n from t`;
    commit.resolve();
    await transaction;
    assert.deepEqual([...await query], [{ n: 3 }]);
  } finally {
    await writer.end();
    await reader.end();
    await embedded.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a client idle in a transaction is disconnected when another needs the store, and rolled back", async () => {
  const dataDir = await dataDirWithStore();
  const embedded = await startEmbedded({ dataDir, idleInTransactionMs: 200 });
  const other = client(embedded.url);
  const forgetful = await RawClient.connect(portOf(embedded.address));
  try {
    await other`create table t (n int)`;
    // A psql user who typed BEGIN, inserted a row and went for coffee.
    await forgetful.query("begin");
    await forgetful.query("insert into t values (1)");
    assert.deepEqual([...await other`select count(*)::int as n from t`], [{ n: 0 }]);
    await assert.rejects(forgetful.query("insert into t values (2)")); // disconnected
    assert.deepEqual([...await other`select count(*)::int as n from t`], [{ n: 0 }]);
  } finally {
    forgetful.close();
    await other.end();
    await embedded.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a client's CopyFail after its COPY failed does not keep the store from others", async () => {
  const dataDir = await dataDirWithStore();
  const embedded = await startEmbedded({ dataDir });
  const other = client(embedded.url);
  const copier = await RawClient.connect(portOf(embedded.address));
  try {
    await other`create table t (n int)`;
    // What postgres.js 3.4.9 sends when a row is refused: the COPY, its data and
    // CopyDone; after the error (and its ROLLBACK, here none: no transaction) a CopyFail,
    // written when its copy stream is destroyed. PostgreSQL ignores a CopyFail outside
    // a COPY and answers nothing.
    const error = await copier.copy("copy t (n) from stdin", "not a number\n");
    assert.match(error ?? "", /22P02/);
    await copier.copyFail("null");
    assert.deepEqual([...await other`select count(*)::int as n from t`], [{ n: 0 }]);
    // Still connected: not disconnected as if it had held a transaction open.
    assert.equal(await copier.query("select 1"), "1");
  } finally {
    copier.close();
    await other.end();
    await embedded.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("two clients preparing statements under the same name do not collide", async () => {
  const dataDir = await dataDirWithStore();
  const embedded = await startEmbedded({ dataDir });
  const a = await RawClient.connect(portOf(embedded.address));
  const b = await RawClient.connect(portOf(embedded.address));
  try {
    // pgx (Grafana's driver) names statements by their text: two dashboards, one name.
    assert.equal(await a.prepareAndRun("stmtcache_1", "select 1 as n"), "1");
    assert.equal(await b.prepareAndRun("stmtcache_1", "select 2 as n"), "2");
    assert.equal(await a.run("stmtcache_1"), "1");
    a.close();
    // The statements of a client that left are gone; the other's remain.
    assert.equal(await b.run("stmtcache_1"), "2");
  } finally {
    b.close();
    await embedded.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a second opening of a store in use is refused with a clear error, and works once it is free", async () => {
  const dataDir = await dataDirWithStore();
  const first = await startEmbedded({ dataDir });
  try {
    const error = await startEmbedded({ dataDir }).then(() => undefined, (e) => e);
    assert.ok(error instanceof EmbeddedStoreBusyError, String(error));
    assert.match(error.message, new RegExp(`in use by process ${Deno.pid}`));
  } finally {
    await first.close();
  }
  const again = await startEmbedded({ dataDir });
  await again.close();
  await Deno.remove(dataDir, { recursive: true });
});

Deno.test("a missing store is not created when creation is not asked for", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "dami-embedded-" });
  try {
    await assert.rejects(
      startEmbedded({ dataDir: `${dataDir}/typo`, create: false }),
      EmbeddedStoreMissingError,
    );
    assert.deepEqual([...Deno.readDirSync(dataDir)], []);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

async function runQueryCli(args: string[]): Promise<{ code: number; out: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", QUERY_CLI, ...args],
    env: { NO_COLOR: "1", DATABASE_URL: "" },
    stdin: "null",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: output.code, out: decode(output.stdout) + decode(output.stderr) };
}

Deno.test("deno task query reads a store while it is open elsewhere (through its address), and its files when it is not", async () => {
  const dataDir = await dataDirWithStore();
  try {
    const store = await openStore({ dataDir });
    try {
      const address = await Deno.readTextFile(addressFile(dataDir));
      assert.match(address, /^127\.0\.0\.1:\d+\n$/);
      const running = await runQueryCli(["calls-per-day", "--data-dir", dataDir]);
      assert.equal(running.code, 0, running.out);
      assert.match(running.out, /\(0 rows\)/);
    } finally {
      await store.close();
    }
    await assert.rejects(Deno.stat(addressFile(dataDir)), Deno.errors.NotFound);
    const stopped = await runQueryCli(["calls-per-day", "--data-dir", dataDir]);
    assert.equal(stopped.code, 0, stopped.out);
    assert.match(stopped.out, /\(0 rows\)/);
    const typo = await runQueryCli(["calls-per-day", "--data-dir", `${dataDir}/typo`]);
    assert.notEqual(typo.code, 0);
    assert.match(typo.out, /no DAMI store in .*typo/);
    await assert.rejects(Deno.stat(`${dataDir}/typo`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** Just enough of the protocol to prepare and run named statements by hand. */
class RawClient {
  #conn: Deno.TcpConn;
  #buffer = new Uint8Array(0);

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async connect(port: number): Promise<RawClient> {
    const client = new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
    const params = new TextEncoder().encode("user\0postgres\0database\0postgres\0\0");
    const startup = new Uint8Array(8 + params.length);
    new DataView(startup.buffer).setInt32(0, startup.length);
    new DataView(startup.buffer).setInt32(4, 196608);
    startup.set(params, 8);
    await client.#conn.write(startup);
    await client.#untilReady();
    return client;
  }

  async prepareAndRun(name: string, text: string): Promise<string | undefined> {
    await this.#send([
      message("P", [name, text], new Uint8Array(2)),
      message("S", [], new Uint8Array(0)),
    ]);
    const answer = await this.#untilReady();
    if (answer.error !== undefined) throw new Error(answer.error);
    return await this.run(name);
  }

  /** Runs `text` with the simple protocol; rejects with the server's error. */
  async query(text: string): Promise<string | undefined> {
    await this.#send([message("Q", [text], new Uint8Array(0))]);
    const answer = await this.#untilReady();
    if (answer.error !== undefined) throw new Error(answer.error);
    return answer.value;
  }

  /**
   * Runs a `COPY ... FROM STDIN` with the simple protocol: sends `data` in one
   * CopyData and CopyDone after the server's CopyInResponse. The server's error, if any.
   */
  async copy(statement: string, data: string): Promise<string | undefined> {
    await this.#send([message("Q", [statement], new Uint8Array(0))]);
    const response = await this.#until("G");
    if (response.error !== undefined) return response.error;
    await this.#send([
      message("d", [], new TextEncoder().encode(data)),
      message("c", [], new Uint8Array(0)),
    ]);
    return (await this.#untilReady()).error;
  }

  /** Sends a CopyFail, which PostgreSQL answers only inside a COPY. */
  async copyFail(reason: string): Promise<void> {
    await this.#send([message("f", [reason], new Uint8Array(0))]);
  }

  /** Binds and executes the named statement; the first column of the first row. */
  async run(name: string): Promise<string | undefined> {
    await this.#send([
      message("B", ["", name], new Uint8Array(6)),
      message("E", [""], new Uint8Array(4)),
      message("S", [], new Uint8Array(0)),
    ]);
    const answer = await this.#untilReady();
    if (answer.error !== undefined) throw new Error(answer.error);
    return answer.value;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // closed by the server
    }
  }

  async #send(messages: Uint8Array[]): Promise<void> {
    for (const m of messages) await this.#conn.write(m);
  }

  /** Reads messages up to ReadyForQuery: the first DataRow's first value, any error. */
  #untilReady(): Promise<{ value?: string; error?: string }> {
    return this.#until("Z");
  }

  /** Reads messages up to one of `type` (or ReadyForQuery): as {@linkcode #untilReady}. */
  async #until(last: string): Promise<{ value?: string; error?: string }> {
    const answer: { value?: string; error?: string } = {};
    for (;;) {
      while (this.#buffer.length < 5 || this.#buffer.length < 1 + this.#length()) {
        const chunk = new Uint8Array(65536);
        const n = await this.#conn.read(chunk);
        if (n === null) throw new Error("connection closed");
        const merged = new Uint8Array(this.#buffer.length + n);
        merged.set(this.#buffer);
        merged.set(chunk.subarray(0, n), this.#buffer.length);
        this.#buffer = merged;
      }
      const type = String.fromCharCode(this.#buffer[0]);
      const body = this.#buffer.slice(5, 1 + this.#length());
      this.#buffer = this.#buffer.slice(1 + this.#length());
      if (type === "D" && answer.value === undefined) {
        const length = new DataView(body.buffer).getInt32(2);
        answer.value = new TextDecoder().decode(body.subarray(6, 6 + length));
      }
      if (type === "E") answer.error = new TextDecoder().decode(body).replaceAll("\0", " ");
      if (type === last || type === "Z") return answer;
    }
  }

  #length(): number {
    return new DataView(this.#buffer.buffer).getInt32(1);
  }
}

function message(type: string, strings: string[], rest: Uint8Array): Uint8Array {
  const parts = strings.map((s) => new TextEncoder().encode(s + "\0"));
  const length = 4 + parts.reduce((n, p) => n + p.length, 0) + rest.length;
  const out = new Uint8Array(1 + length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, length);
  let offset = 5;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  out.set(rest, offset);
  return out;
}
