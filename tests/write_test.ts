/** Bulk writes of projection rows (`daemon/projections/write.ts`) against PostgreSQL. */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { insertRecords, UnknownColumnError } from "../daemon/projections/write.ts";
import { selectRows } from "../queries/db.ts";
import { endpointStatus } from "../schema/mod.ts";
import { openTestStore } from "./load_events.ts";

Deno.test("a record naming a column the table lacks is refused and nothing is written", async () => {
  const store = await openTestStore("write_unknown");
  try {
    const good = {
      server: "pbx1",
      endpoint: "SIP/6001",
      observed_at: "2026-11-01T22:00:00Z",
      state: "reachable",
      latency_ms: 5,
      source: "PeerStatus",
      detail: "Reachable",
      event_id: "1",
    };
    // A misspelt key, as untyped data (typed rows would not compile).
    const misspelt: Record<string, string | number> = { ...good, event_id: "2" };
    misspelt.latencyms = misspelt.latency_ms;
    delete misspelt.latency_ms;
    await assert.rejects(
      () =>
        insertRecords(store.db, endpointStatus, [good, misspelt], {
          columns: ["event_id", "endpoint"],
          action: "nothing",
        }),
      (error: unknown) =>
        error instanceof UnknownColumnError && error.table === "endpoint_status" &&
        error.column === "latencyms",
    );
    const [row] = await selectRows<{ n: number }>(
      store.db,
      sql`select count(*)::int as n from endpoint_status`,
    );
    assert.equal(row.n, 0);
  } finally {
    await store.close();
  }
});
