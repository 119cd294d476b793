/**
 * `/api/queries` and `/api/calls` over real HTTP on recorded sessions: the same rows and
 * the same parameter errors as the query CLI, CSV on request, keyset pages that add up
 * to the table, one call with its legs, queue stays and events; and the config rule
 * that an API listening beyond loopback needs a token (exit 78).
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { ConfigError, parseConfig } from "../daemon/config.ts";
import { EXIT_CONFIG, main } from "../daemon/main.ts";
import { runProjectionsOnce } from "../daemon/projections/projector.ts";
import { parseQueryArgs } from "../queries/cli.ts";
import { selectRows } from "../queries/db.ts";
import { findQuery, QUERIES } from "../queries/mod.ts";
import { formatCsv } from "../queries/output.ts";
import { type ReadSide, startReadSide } from "./api_harness.ts";
import { loadFixtureEvents } from "./load_events.ts";

async function withCalls(
  fn: (side: ReadSide) => Promise<void>,
  kind: "postgres" | "pglite" = "postgres",
): Promise<void> {
  const side = await startReadSide({
    kind,
    before: async (store) => {
      await loadFixtureEvents(store.db, "sip-calls");
      await loadFixtureEvents(store.db, "queue-call");
      await loadFixtureEvents(store.db, "originate-local", { server: "pbx2" });
      await runProjectionsOnce(store);
    },
  });
  try {
    await fn(side);
  } finally {
    await side.close();
  }
}

Deno.test("queries over HTTP: the list, the CLI's rows and errors, CSV on Accept: text/csv", async () => {
  await withCalls(async (side) => {
    const list = await (await side.get("/api/queries")).json();
    assert.deepEqual(list.map((q: { name: string }) => q.name), QUERIES.map((q) => q.name));
    assert.ok(list.every((q: { params: unknown[]; columns: unknown[] }) => q.params.length > 0));

    for (const name of ["calls-per-day", "longest-calls", "queue-summary", "missed-calls"]) {
      const query = findQuery(name)!;
      const args = parseQueryArgs(query, { from: "2026-11-01", tz: "UTC" });
      const expected = await query.run(side.store.db, args);
      const response = await side.get(`/api/queries/${name}?from=2026-11-01&tz=UTC`);
      assert.equal(response.status, 200, name);
      const body = await response.json();
      assert.deepEqual(body.columns, query.columns, name);
      assert.deepEqual(
        body.rows,
        expected.map((r) => Object.fromEntries(query.columns.map((c) => [c, r[c] ?? null]))),
        name,
      );
      const csv = await side.get(`/api/queries/${name}?from=2026-11-01&tz=UTC`, {
        accept: "text/csv",
      });
      assert.match(csv.headers.get("content-type")!, /^text\/csv/);
      assert.equal(await csv.text(), formatCsv(query.columns, expected), name);
    }
    assert.ok(
      (await (await side.get("/api/queries/calls-per-day?from=2026-11-01&tz=UTC")).json()).rows
        .length > 0,
    );

    for (
      const [path, param, status] of [
        ["/api/queries/calls-per-day?from=last-tuesday", "from", 400],
        ["/api/queries/calls-per-day?tz=Mars/Olympus", "tz", 400],
        ["/api/queries/longest-calls?limit=ten", "limit", 400],
        ["/api/queries/calls-per-day?form=2026-11-01", "form", 400],
        ["/api/queries/call-timeline", "call", 400],
      ] as const
    ) {
      const response = await side.get(path);
      assert.equal(response.status, status, path);
      const body = await response.json();
      assert.equal(body.param, param, path);
      assert.match(body.message, new RegExp(param), path);
    }
    assert.equal((await side.get("/api/queries/no-such-query")).status, 404);
  });
});

for (const kind of ["postgres", "pglite"] as const) {
  Deno.test(`${kind}: calls over HTTP: keyset pages add up to the table, filters, one call in full`, async () => {
    await withCalls(async (side) => {
      const all = await selectRows<{ call_id: string }>(
        side.store.db,
        sql`select call_id from calls order by started_at desc, server desc, call_id desc`,
      );
      assert.ok(all.length >= 4);
      const paged: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const query: string = cursor === null ? "" : `&cursor=${cursor}`;
        const body = await (await side.get(`/api/calls?limit=2${query}`)).json();
        paged.push(...body.calls.map((c: { call_id: string }) => c.call_id));
        cursor = body.next_cursor;
        pages++;
      } while (cursor !== null);
      assert.deepEqual(paged, all.map((c) => c.call_id));
      assert.equal(pages, Math.ceil(all.length / 2));

      const answered = await (await side.get("/api/calls?disposition=answered&server=pbx1")).json();
      assert.ok(answered.calls.length > 0);
      for (const c of answered.calls) {
        assert.deepEqual([c.disposition, c.server], ["ANSWERED", "pbx1"]);
      }
      assert.match(
        answered.calls[0].started_at,
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$/,
      );
      const inQueue = await (await side.get("/api/calls?queue=support")).json();
      assert.ok(inQueue.calls.length > 0);
      for (const c of inQueue.calls) assert.equal(c.queue, "support");
      const agent = await (await side.get("/api/calls?endpoint=SIP/6001")).json();
      const agentCalls = await selectRows<{ call_id: string }>(
        side.store.db,
        sql`select distinct call_id from call_legs where endpoint = 'SIP/6001'`,
      );
      assert.deepEqual(
        agent.calls.map((c: { call_id: string }) => c.call_id).sort(),
        agentCalls.map((c) => c.call_id).sort(),
      );
      const bySrc = await (await side.get("/api/calls?number=sipp")).json();
      assert.ok(bySrc.calls.length > 0);
      for (const c of bySrc.calls) assert.ok(c.src === "sipp" || c.dst === "sipp");

      for (
        const [query, param] of [
          ["disposition=LOST", "disposition"],
          ["limit=0", "limit"],
          ["cursor=bm90IGEgY3Vyc29y", "cursor"],
          ["from=soon", "from"],
        ]
      ) {
        const response = await side.get(`/api/calls?${query}`);
        assert.equal(response.status, 400, query);
        assert.equal((await response.json()).param, param);
      }

      const queued = await selectRows<{ call_id: string; legs: number }>(
        side.store.db,
        sql`select call_id, legs from calls where queue is not null limit 1`,
      );
      const detail = await (await side.get(`/api/calls/${queued[0].call_id}`)).json();
      assert.equal(detail.call.call_id, queued[0].call_id);
      assert.equal(detail.legs.length, queued[0].legs);
      assert.ok(detail.queue.length > 0);
      const ids = detail.events.map((e: { id: number }) => e.id);
      assert.ok(ids.length > 10);
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
      assert.ok(detail.events.some((e: { event: string }) => e.event === "QueueCallerJoin"));
      assert.equal((await side.get("/api/calls/nope.1")).status, 404);
    }, kind);
  });
}

Deno.test("an HTTP listen address beyond loopback without a token is a config error (exit 78)", async () => {
  const server = { name: "pbx1", host: "127.0.0.1", username: "dami", secret: "s3cr3t-value" };
  const config = (http: Record<string, string>) => JSON.stringify({ http, servers: [server] });
  for (const listen of ["127.0.0.1:9464", "[::1]:9464", "localhost:9464"]) {
    parseConfig(config({ listen }), "/etc/dami/a.jsonc", { env: {} });
  }
  for (const listen of ["0.0.0.0:9464", "192.168.1.10:9464", "[::]:9464"]) {
    assert.throws(
      () => parseConfig(config({ listen }), "/etc/dami/a.jsonc", { env: {} }),
      (error) =>
        error instanceof ConfigError && /http\.token: expected a token/.test(error.message),
    );
  }
  const token = "x".repeat(32);
  parseConfig(config({ listen: "0.0.0.0:9464", token }), "/etc/dami/a.jsonc", { env: {} });
  assert.throws(
    () => parseConfig(config({ listen: "0.0.0.0:9464", token: "short" }), "/x.jsonc", { env: {} }),
    /at least 16 characters/,
  );

  const dir = await Deno.makeTempDir({ prefix: "dami-api-config-" });
  try {
    const file = `${dir}/dami.config.jsonc`;
    await Deno.writeTextFile(file, config({ listen: "0.0.0.0:0" }));
    const error = console.error;
    console.error = () => {};
    try {
      assert.equal(await main(["--config", file]), EXIT_CONFIG);
    } finally {
      console.error = error;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
