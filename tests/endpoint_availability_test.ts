/**
 * `endpoint-availability` edge cases that the seeded query tests do not reach: an
 * endpoint observed only down, and one observed only in unknown states.
 */
import assert from "node:assert/strict";
import { insertRecords } from "../daemon/projections/write.ts";
import { endpointAvailability } from "../queries/endpoint_availability.ts";
import { endpointStatus } from "../schema/mod.ts";
import { openTestStore } from "./load_events.ts";

Deno.test("endpoint-availability gives 0 %, not null, for an endpoint down all day", async () => {
  const store = await openTestStore("endpoint_avail");
  try {
    const sample = { latency_ms: null, observed_at: "2026-11-01T22:00:00Z", server: "pbx1" };
    await insertRecords(store.db, endpointStatus, [
      {
        ...sample,
        endpoint: "SIP/6001",
        state: "unreachable",
        source: "PeerStatus",
        detail: "Unreachable",
        event_id: "1",
      },
      {
        ...sample,
        endpoint: "SIP/6002",
        state: "unknown",
        source: "PeerEntry",
        detail: "UNKNOWN",
        event_id: "2",
      },
    ], { columns: ["event_id", "endpoint"], action: "nothing" });
    const rows = await endpointAvailability(store.db, {
      from: "2026-11-02",
      to: "2026-11-03",
      tz: "UTC",
    });
    assert.deepEqual(rows, [
      { day: "2026-11-02", endpoint: "SIP/6001", up_pct: 0, up_s: 0, down_s: 86400, samples: 0 },
      // Only unknown time: no share can be given.
      { day: "2026-11-02", endpoint: "SIP/6002", up_pct: null, up_s: 0, down_s: 0, samples: 0 },
    ]);
  } finally {
    await store.close();
  }
});
