/**
 * The small pure rules the projector is built from: uniqueid age, endpoint names, event
 * times, dispositions, the call graph.
 */
import assert from "node:assert/strict";
import { CallGraph } from "../daemon/projections/call_graph.ts";
import { causeDisposition, dialStatusDisposition } from "../daemon/projections/caller_cdr.ts";
import { parsePeerEntryStatus } from "../daemon/projections/endpoint_samples.ts";
import {
  compareUniqueids,
  endpointOf,
  eventNodes,
  type ProjectionEvent,
  timestampMicros,
} from "../daemon/projections/event.ts";

function event(name: string, headers: Record<string, string>): ProjectionEvent {
  const fields = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    id: 1n,
    server: "pbx1",
    sessionId: "s",
    seq: 1,
    timeUs: 0,
    event: name,
    uniqueid: headers.Uniqueid ?? null,
    fields,
  };
}

Deno.test("uniqueids compare by epoch then counter, not as text", () => {
  assert.ok(compareUniqueids("1795663687.42", "1795663687.100") < 0);
  assert.ok(compareUniqueids("1795663688.1", "1795663687.900") > 0);
  assert.ok(compareUniqueids("pbx-1795663687.9", "pbx-1795663687.10") < 0);
  assert.equal(compareUniqueids("1795663687.42", "1795663687.42"), 0);
  const sorted = ["1795663687.100", "1795663687.9", "1795663686.500"].sort(compareUniqueids);
  assert.deepEqual(sorted, ["1795663686.500", "1795663687.9", "1795663687.100"]);
});

Deno.test("an endpoint is the channel name without its sequence suffix", () => {
  assert.equal(endpointOf("SIP/6001-00000011"), "SIP/6001");
  assert.equal(endpointOf("PJSIP/trunk-provider-0000002a"), "PJSIP/trunk-provider");
  assert.equal(endpointOf("Local/100@internal-00000003;1"), "Local/100@internal");
  assert.equal(endpointOf("DAHDI/pseudo"), "DAHDI/pseudo");
  assert.equal(endpointOf(undefined), undefined);
});

Deno.test("event time is the Timestamp header with its microseconds", () => {
  assert.equal(timestampMicros("1795663687.205511"), 1795663687205511);
  assert.equal(timestampMicros("1795663687.2"), 1795663687200000);
  assert.equal(timestampMicros("1795663687"), 1795663687000000);
  assert.equal(timestampMicros("yesterday"), undefined);
  assert.equal(timestampMicros(undefined), undefined);
});

Deno.test("an event names the channels, linkedids and linking bridge of one call", () => {
  const dial = eventNodes(event("DialBegin", {
    Uniqueid: "1795663687.42",
    Linkedid: "1795663687.42",
    DestUniqueid: "1795663687.43",
    DestLinkedid: "1795663687.42",
  }));
  assert.deepEqual(dial, {
    channels: ["1795663687.42", "1795663687.43"],
    linkedids: ["1795663687.42"],
  });
  const failedOriginate = eventNodes(event("OriginateResponse", { Uniqueid: "<unknown>" }));
  assert.deepEqual(failedOriginate, { channels: [], linkedids: [] });
  const basic = eventNodes(event("BridgeEnter", {
    Uniqueid: "1.1",
    Linkedid: "1.1",
    BridgeUniqueid: "7b9d",
    BridgeType: "basic",
    BridgeTechnology: "simple_bridge",
  }));
  assert.equal(basic.bridge, "bridge:7b9d");
  assert.deepEqual(basic.channels, ["1.1"]);
  const parking = eventNodes(event("BridgeEnter", {
    Uniqueid: "1.1",
    BridgeUniqueid: "p1",
    BridgeType: "holding",
    BridgeTechnology: "holding_bridge",
  }));
  assert.equal(parking.bridge, undefined);
  const conference = eventNodes(event("BridgeEnter", {
    Uniqueid: "1.1",
    BridgeUniqueid: "c1",
    BridgeType: "base",
    BridgeTechnology: "softmix",
  }));
  assert.equal(conference.bridge, undefined);
  const attended = eventNodes(event("AttendedTransfer", {
    OrigTransfererUniqueid: "1.2",
    OrigBridgeUniqueid: "b1",
    SecondTransfererUniqueid: "1.3",
    TransfereeUniqueid: "1.1",
    TransferTargetUniqueid: "1.4",
  }));
  assert.deepEqual(attended.channels, ["1.2", "1.3", "1.1", "1.4"]);
});

Deno.test("dispositions follow cdr.c's dial-status and hangup-cause rules, with DAMI's two refinements", () => {
  assert.equal(dialStatusDisposition("ANSWER"), "ANSWERED");
  assert.equal(dialStatusDisposition("BUSY"), "BUSY");
  assert.equal(dialStatusDisposition("NOANSWER"), "NO ANSWER");
  assert.equal(dialStatusDisposition("CHANUNAVAIL"), "FAILED");
  assert.equal(dialStatusDisposition("SOMETHING-NEW"), "FAILED");
  // Refinements: Asterisk writes NO ANSWER and FAILED unless cdr.conf enables these.
  assert.equal(dialStatusDisposition("CANCEL"), "CANCEL");
  assert.equal(dialStatusDisposition("CONGESTION"), "CONGESTION");
  assert.equal(causeDisposition(17), "BUSY");
  assert.equal(causeDisposition(34), "CONGESTION");
  assert.equal(causeDisposition(16), "NO ANSWER");
  assert.equal(causeDisposition(19), "NO ANSWER");
  assert.equal(causeDisposition(3), "FAILED");
  assert.equal(causeDisposition(20), "FAILED");
  // Any other cause leaves cdr.c's disposition unset, which it prints as NO ANSWER.
  assert.equal(causeDisposition(1), "NO ANSWER");
  assert.equal(causeDisposition(21), "NO ANSWER");
});

Deno.test("chan_sip peer status text gives state and latency", () => {
  assert.deepEqual(parsePeerEntryStatus("OK (5 ms)"), { state: "reachable", latencyMs: 5 });
  assert.deepEqual(parsePeerEntryStatus("LAGGED (2501 ms)"), { state: "lagged", latencyMs: 2501 });
  assert.deepEqual(parsePeerEntryStatus("UNREACHABLE"), { state: "unreachable", latencyMs: null });
  assert.deepEqual(parsePeerEntryStatus("Unmonitored"), { state: "unmonitored", latencyMs: null });
  assert.deepEqual(parsePeerEntryStatus("UNKNOWN"), { state: "unknown", latencyMs: null });
});

Deno.test("the call graph joins everything linked, directly or not", () => {
  const graph = new CallGraph();
  graph.link(["a", "b"]);
  graph.link(["c", "d"]);
  graph.add("e");
  assert.notEqual(graph.find("a"), graph.find("c"));
  graph.link(["b", "d"]);
  assert.equal(graph.find("a"), graph.find("c"));
  const groups = [...graph.groups().values()].map((g) => g.sort().join(""));
  assert.deepEqual(groups.sort(), ["abcd", "e"]);
});
