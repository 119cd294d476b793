import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { uuidv7 } from "../daemon/ids.ts";
import { main as migrateMain } from "../daemon/migrate_cli.ts";
import {
  isTransientError,
  MIGRATIONS_FOLDER,
  openStore,
  redactDatabaseUrl,
  type Store,
} from "../daemon/store.ts";
import { amiSessions } from "../schema/mod.ts";
import postgres from "postgres";
import { createTestDatabase, TEST_PG_BASE } from "./pg.ts";
import { TcpProxy } from "./tcp_proxy.ts";

/** Every `table.column type` of the public schema, sorted. */
async function columns(store: Store): Promise<string[]> {
  const result = await store.db.execute(sql`
    SELECT table_name || '.' || column_name || ' ' || data_type AS c
    FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1`);
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as {
    c: string;
  }[];
  return rows.map((r) => r.c);
}

/** Every index definition of the public schema, sorted. */
async function indexes(store: Store): Promise<string[]> {
  const result = await store.db.execute(
    sql`SELECT indexdef AS d FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`,
  );
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as {
    d: string;
  }[];
  return rows.map((r) => r.d);
}

Deno.test("PostgreSQL and PGlite stores get the same tables, columns and indexes from the migrations", async () => {
  const database = await createTestDatabase("store_same");
  const dataDir = await Deno.makeTempDir();
  const pg = await openStore({ url: database.url, dataDir });
  const lite = await openStore({ dataDir });
  try {
    assert.equal(pg.kind, "postgres");
    assert.equal(lite.kind, "pglite");
    const pgColumns = await columns(pg);
    assert.ok(pgColumns.includes("ami_events.fields jsonb"));
    assert.ok(pgColumns.includes("ami_sessions.id uuid"));
    assert.ok(pgColumns.includes("action_runs.response jsonb"));
    assert.deepEqual(await columns(lite), pgColumns);
    assert.ok((await indexes(pg)).some((d) => d.includes("ami_events_session_seq_key")));
    assert.deepEqual(await indexes(lite), await indexes(pg));
    await Deno.stat(`${dataDir}/pglite`); // the embedded database lives in the data directory
  } finally {
    await pg.close();
    await lite.close();
    await database.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("stores opened at once on one database migrate it once and both work", async () => {
  const database = await createTestDatabase("store_concurrent");
  try {
    const stores = await Promise.all(
      [1, 2, 3].map(() => openStore({ url: database.url, dataDir: "/nonexistent" })),
    );
    const id = uuidv7();
    await stores[0].db.insert(amiSessions).values({ id, server: "pbx1", connectedAt: new Date() });
    for (const store of stores) {
      const rows = await store.db.select().from(amiSessions);
      assert.deepEqual(rows.map((r) => r.id), [id]);
    }
    await Promise.all(stores.map((s) => s.close()));
  } finally {
    await database.drop();
  }
});

Deno.test("a store opened while PostgreSQL is unreachable migrates before its first write", async () => {
  const database = await createTestDatabase("store_late");
  const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
  proxy.cut(60_000);
  try {
    const store = await openStore({ url: proxy.url(database.url), dataDir: "/nonexistent" });
    const write = (id: string) =>
      store.writeTransaction((tx) =>
        tx.query("INSERT INTO ami_sessions (id, server, connected_at) VALUES ($1, $2, now())", [
          id,
          "pbx1",
        ])
      );
    await assert.rejects(write(uuidv7()), (error) => isTransientError(error));
    proxy.restore();
    await write(uuidv7());
    assert.equal((await store.db.select().from(amiSessions)).length, 1);
    await store.close();
  } finally {
    await proxy.close();
    await database.drop();
  }
});

Deno.test("the database password appears neither in the description nor in errors", async () => {
  const database = await createTestDatabase("store_secret");
  const url = database.url.replace("postgres@", "postgres:Sup3rS3cret@");
  try {
    const store = await openStore({ url, dataDir: "/nonexistent" });
    assert.ok(!store.description.includes("Sup3rS3cret"));
    assert.match(store.description, /postgres:\*\*\*@/);
    await store.close();
    const missing = url.replace(database.name, `${database.name}_missing`);
    const error = await openStore({ url: missing, dataDir: "/nonexistent" }).then(
      () => assert.fail("opening a missing database must fail"),
      (e: Error) => e,
    );
    assert.ok(!String(error.message).includes("Sup3rS3cret"), error.message);
    assert.match(error.message, /does not exist/);
  } finally {
    await database.drop();
  }
  assert.equal(
    redactDatabaseUrl("postgres://u:p%40ss@db:5432/x?sslpassword=k"),
    "postgres://u:***@db:5432/x?sslpassword=***",
  );
});

Deno.test("a failed write transaction leaves nothing behind", async () => {
  const dataDir = await Deno.makeTempDir();
  const store = await openStore({ dataDir });
  try {
    await assert.rejects(store.writeTransaction(async (tx) => {
      await tx.query("INSERT INTO ami_sessions (id, server, connected_at) VALUES ($1, $2, now())", [
        uuidv7(),
        "pbx1",
      ]);
      await tx.query("SELECT 1/0");
    }));
    assert.equal((await store.db.select().from(amiSessions)).length, 0);
  } finally {
    await store.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("errors are classified: connection and shutdown retry, bad data is permanent", () => {
  const withCode = (code: string) => Object.assign(new Error(code), { code });
  for (const code of ["CONNECTION_CLOSED", "ECONNREFUSED", "57P01", "08006", "53300", "40001"]) {
    assert.equal(isTransientError(withCode(code)), true, code);
  }
  for (const code of ["22P05", "22021", "22008", "23502", "23514", "54000"]) {
    assert.equal(isTransientError(withCode(code)), false, code);
  }
  assert.equal(isTransientError(new Error("no code")), true);
});

Deno.test("UUIDv7 ids have the version and variant bits and sort in creation order", () => {
  const ids = Array.from({ length: 10_000 }, () => uuidv7());
  for (const id of ids.slice(0, 100)) {
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  }
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
  const ms = parseInt(ids[0].replace(/-/g, "").slice(0, 12), 16);
  assert.ok(Math.abs(ms - Date.now()) < 60_000);
});

async function listing(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) {
      for (const [name, text] of await listing(`${dir}/${e.name}`)) {
        files.set(`${e.name}/${name}`, text);
      }
    } else {
      files.set(e.name, await Deno.readTextFile(`${dir}/${e.name}`));
    }
  }
  return files;
}

Deno.test("migrations/ is exactly what drizzle-kit generates from schema/", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const out = await Deno.makeTempDir();
  const committed = await listing(MIGRATIONS_FOLDER);
  for (const [name, text] of committed) {
    await Deno.mkdir(`${out}/${name}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.writeTextFile(`${out}/${name}`, text);
  }
  // drizzle-kit prefixes "./" to --out, so the path must be relative to the repository.
  const relativeOut = "../".repeat(root.split("/").filter(Boolean).length) + out.slice(1);
  const { stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "npm:drizzle-kit", "generate", "--dialect=postgresql"]
      .concat(["--schema=./schema/mod.ts", `--out=${relativeOut}`]),
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const output = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  // drizzle-kit exits 0 even when it fails (e.g. wants a terminal): judge by its output.
  assert.match(output, /No schema changes, nothing to migrate/, output);
  assert.deepEqual(await listing(out), committed);
  await Deno.remove(out, { recursive: true });
});

Deno.test("deno task migrate brings a database up to date and reports an unreachable one", async () => {
  const database = await createTestDatabase("store_migrate_cli");
  const log = console.log;
  const error = console.error;
  const printed: string[] = [];
  console.log = console.error = (line: string) => printed.push(line);
  try {
    assert.equal(await migrateMain(["--database-url", database.url]), 0);
    assert.equal(await migrateMain(["--database-url", database.url]), 0);
    // Says what happened: the first run applied every migration, the second none.
    assert.match(printed[0], /: applied \d+ migrations; up to date \(\d+ migrations applied\)/);
    assert.match(printed[1], /: already up to date \(\d+ migrations applied\); nothing to do/);
    assert.equal(await migrateMain(["--database-url", "postgres://u:Pw0rd@127.0.0.1:1/x"]), 1);
    assert.match(printed[2], /ECONNREFUSED/);
    assert.ok(!printed.join("\n").includes("Pw0rd"));
    assert.equal(await migrateMain(["--help"]), 0);
    assert.match(printed[3], /^Usage: deno task migrate/);
  } finally {
    console.log = log;
    console.error = error;
    await database.drop();
  }
});

Deno.test("the store connects its writer when it opens, so that the first write does not wait for it", async () => {
  const database = await createTestDatabase("store_writer_warm");
  const dataDir = await Deno.makeTempDir();
  const store = await openStore({ url: database.url, dataDir });
  const admin = postgres(`${TEST_PG_BASE}/postgres`, { max: 1, onnotice: () => {} });
  try {
    // Nothing has been written or read: the only session is the writer's.
    let sessions = 0;
    for (const deadline = Date.now() + 10_000; sessions === 0 && Date.now() < deadline;) {
      const [{ n }] = await admin`
        select count(*)::int as n from pg_stat_activity where datname = ${database.name}`;
      sessions = n;
      if (sessions === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(sessions, 1);
  } finally {
    await admin.end();
    await store.close();
    await database.drop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
