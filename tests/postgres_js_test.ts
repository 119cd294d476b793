/**
 * One test per postgres.js 3.4.9 defect that `daemon/postgres_js.ts` works around, each
 * reproduced against the real PostgreSQL through a TCP proxy that refuses, cuts or
 * black-holes connections.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import {
  copyIn,
  guardAgainstDriverSocketBug,
  isDriverConnectFailure,
  noDelaySocket,
  reconnectBackoff,
  type SocketOptions,
} from "../daemon/postgres_js.ts";
import { createTestDatabase } from "./pg.ts";
import { TcpProxy } from "./tcp_proxy.ts";

/**
 * Resolves with `promise`, or rejects once `ms` passed without it settling: tells a
 * hang from an answer (the bound is far above any answer's time, not a measurement).
 */
async function settles<T>(promise: Promise<T>, ms = 15_000): Promise<T> {
  const deadline = AbortSignal.timeout(ms);
  const hung = new Promise<never>((_, reject) =>
    deadline.addEventListener("abort", () => reject(new Error(`still pending after ${ms} ms`)))
  );
  return await Promise.race([promise, hung]);
}

/** postgres.js takes a `socket` function its types do not declare. */
const noDelay = { socket: noDelaySocket, backoff: reconnectBackoff };

/** A failure other than {@linkcode settles}'s "still pending". */
const failed = (error: Error) => !error.message.startsWith("still pending");

Deno.test("a pool whose connects were refused more times than it has connections answers once the database is back", async () => {
  const database = await createTestDatabase("pgjs_slots");
  const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
  const sql = postgres(proxy.url(database.url), {
    max: 2,
    connect_timeout: 2,
    onnotice: () => {},
    ...noDelay,
  });
  try {
    proxy.cut(600_000);
    // postgres.js 3.4.9 kept a connection whose `socket` function rejected in its
    // "connecting" queue for good: one pool slot lost per failed connect.
    for (let i = 0; i < 5; i++) {
      await assert.rejects(settles(sql.begin((tx) => tx`select 1`)), failed);
      await assert.rejects(settles(sql`select 1`), failed);
    }
    proxy.restore();
    const [row] = await settles(sql`select 1 as one`);
    assert.equal(row.one, 1);
    const answers = await settles(
      Promise.all([1, 2, 3, 4].map((n) => sql.begin((tx) => tx`select ${n}::int as n`))),
    );
    assert.deepEqual(answers.map(([r]) => r.n), [1, 2, 3, 4]);
  } finally {
    await sql.end({ timeout: 1 });
    await proxy.close();
    await database.drop();
  }
});

Deno.test("a pool whose connects were black-holed answers once the network heals", async () => {
  const database = await createTestDatabase("pgjs_blackhole");
  const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
  const sql = postgres(proxy.url(database.url), {
    max: 2,
    connect_timeout: 1,
    onnotice: () => {},
    ...noDelay,
  });
  try {
    proxy.blackhole();
    for (let i = 0; i < 3; i++) {
      await assert.rejects(settles(sql`select 1`), /CONNECT_TIMEOUT/);
    }
    proxy.restore();
    const [row] = await settles(sql`select 1 as one`);
    assert.equal(row.one, 1);
  } finally {
    await sql.end({ timeout: 1 });
    await proxy.close();
    await database.drop();
  }
});

Deno.test("the socket has Nagle's algorithm off", async () => {
  const database = await createTestDatabase("pgjs_nodelay");
  let noDelayed: boolean | undefined;
  const sql = postgres(database.url, {
    max: 1,
    onnotice: () => {},
    ...{
      socket: (options: SocketOptions) => {
        const socket = noDelaySocket(options);
        const setNoDelay = socket.setNoDelay.bind(socket);
        socket.setNoDelay = (enable?: boolean) => {
          noDelayed = enable ?? true;
          return setNoDelay(enable);
        };
        return socket;
      },
    },
  });
  try {
    await sql`select 1`;
    assert.equal(noDelayed, true);
  } finally {
    await sql.end({ timeout: 1 });
    await database.drop();
  }
});

Deno.test("COPY of a row the server refuses fails with the server's error instead of hanging", async () => {
  const database = await createTestDatabase("pgjs_copy_refused");
  const sql = postgres(database.url, { max: 1, onnotice: () => {}, ...noDelay });
  try {
    await sql`create table t (n int not null)`;
    const error = await settles(
      sql.begin((tx) => copyIn(tx, "t (n)", "1\nnot-a-number\n")).then(
        () => assert.fail("the COPY must fail"),
        (e: { code?: string }) => e,
      ),
    );
    assert.equal(error.code, "22P02"); // invalid_text_representation
    const [{ n }] = await sql`select count(*)::int as n from t`;
    assert.equal(n, 0);
  } finally {
    await sql.end({ timeout: 1 });
    await database.drop();
  }
});

Deno.test("a connection closed in the middle of a COPY fails the copy, not the process", async () => {
  guardAgainstDriverSocketBug(); // the ROLLBACK after the cut meets the next defect too
  const database = await createTestDatabase("pgjs_copy_cut");
  const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
  const direct = postgres(database.url, { max: 1, onnotice: () => {} });
  try {
    await direct`create table t (line text)`;
    const rows = Array.from({ length: 20_000 }, (_, i) => `row ${i} ${"x".repeat(80)}\n`).join("");
    for (const offset of [4_096, 300_000, 1_000_000]) {
      // A client per cut: a client cut inside a transaction is replaced (see the last test).
      const sql = postgres(proxy.url(database.url), { max: 1, onnotice: () => {}, ...noDelay });
      proxy.cutAfter(offset);
      await assert.rejects(settles(sql.begin((tx) => copyIn(tx, "t (line)", rows))), failed);
      await sql.end({ timeout: 0 });
    }
    const [{ n }] = await direct`select count(*)::int as n from t`;
    assert.equal(n, 0);
  } finally {
    await direct.end();
    await proxy.close();
    await database.drop();
  }
});

Deno.test("a connection cut inside sql.begin() fails the transaction, not the process", async () => {
  guardAgainstDriverSocketBug();
  const database = await createTestDatabase("pgjs_begin_cut");
  const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
  try {
    for (let i = 0; i < 3; i++) {
      const sql = postgres(proxy.url(database.url), { max: 1, onnotice: () => {}, ...noDelay });
      const marker = `cut ${i}`;
      const sleeping = sql.begin((tx) => tx.unsafe(`select pg_sleep(30) /* ${marker} */`));
      // The statement is on the wire once the server runs it.
      await waitFor(async () => (await activeSleeps(database.url, marker)) > 0);
      proxy.cut();
      // postgres.js then sends ROLLBACK from a setImmediate on the dropped socket: a
      // TypeError thrown outside any promise, which ends the process unguarded.
      await assert.rejects(settles(sleeping), /CONNECTION_CLOSED/);
      await new Promise((resolve) => setImmediate(resolve));
      await sql.end({ timeout: 0 });
    }
  } finally {
    await proxy.close();
    await database.drop();
  }
});

/** Backends of the test database running `pg_sleep` (seen on a direct connection). */
async function activeSleeps(url: string, marker: string): Promise<number> {
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await admin`select count(*)::int as n from pg_stat_activity
      where datname = current_database() and query like ${"%" + marker + "%"}
        and state = 'active' and pid <> pg_backend_pid()`;
    return row.n;
  } finally {
    await admin.end();
  }
}

/** Polls `condition` until it holds (each poll is a database round trip). */
async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

Deno.test("a driver connect failure nobody awaits does not end the process; other rejections are not taken", async () => {
  guardAgainstDriverSocketBug();
  const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), {
    code: "ECONNREFUSED",
    syscall: "connect",
  });
  // Unguarded, this rejection fails the test module ("uncaught error").
  Promise.reject(refused);
  Promise.reject(Object.assign(new Error("write CONNECT_TIMEOUT"), { code: "CONNECT_TIMEOUT" }));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(isDriverConnectFailure(refused), true);
  assert.equal(isDriverConnectFailure(new Error("connect ECONNREFUSED")), false);
  assert.equal(isDriverConnectFailure(Object.assign(new Error("x"), { code: "42P01" })), false);
  assert.equal(
    isDriverConnectFailure(Object.assign(new Error("x"), { code: "EPIPE", syscall: "write" })),
    false,
  );
});
