/**
 * Call history agrees with Asterisk's own CDR. Every recording with `Cdr` events (real
 * Asterisk 20.20.1 conversations, see tests/fixtures/README.md) is stored and projected,
 * and every call is compared with the Cdr rows of its caller: party A, the channel whose
 * uniqueid is the call's linkedid. Where the caller has several rows (a second queue
 * agent, a transfer, a dialplan that goes on after a failed Dial) the call spans them:
 * from the first row's start to the last row's end, answered at the first answer.
 *
 * DAMI refines two of Asterisk's default dispositions on purpose (README, "Tables"):
 * a caller who hung up while the last dial attempt was ringing is `CANCEL` where the Cdr
 * says `NO ANSWER` (Asterisk too with `canceldispositionenabled = yes`), and congestion
 * is `CONGESTION` where the Cdr says `FAILED` (Asterisk too with `congestion = yes`).
 */
import assert from "node:assert/strict";
import { sql } from "drizzle-orm";
import { headerValue } from "../dami/message.ts";
import type { AmiMessage } from "../dami/message.ts";
import { runProjectionsOnce } from "../daemon/projections/projector.ts";
import { selectRows, type SqlDatabase, type SqlExecutor } from "../queries/db.ts";
import { CALL_FIXTURE_NAMES, type CallFixtureName, type FixtureName } from "./fixtures.ts";
import { loadFixtureEvents, openTestStore } from "./load_events.ts";

/** Every recording that carries Asterisk's Cdr events. */
const CDR_FIXTURES: readonly (FixtureName | CallFixtureName)[] = [
  "sip-calls",
  "queue-call",
  "originate-local",
  ...CALL_FIXTURE_NAMES,
];

/** DAMI's disposition → the Cdr disposition it refines (see the module comment). */
const REFINES: Record<string, string> = { CANCEL: "NO ANSWER", CONGESTION: "FAILED" };

interface ProjectedCall {
  server: string;
  call_id: string;
  dst: string | null;
  disposition: string | null;
  duration_s: number | null;
  billsec_s: number | null;
  transferred: boolean;
}

/** What the caller's Cdr rows say, spanned as the module comment explains. */
interface CallerCdr {
  disposition: string;
  duration: number;
  billsec: number;
  rows: number;
}

/** Cdr times are `YYYY-MM-DD HH:MM:SS` in the PBX's zone: differences are what count. */
function cdrSeconds(text: string): number {
  return Date.parse(text.replace(" ", "T") + "Z") / 1000;
}

function callerCdr(rows: readonly AmiMessage[]): CallerCdr {
  const h = (m: AmiMessage, key: string) => headerValue(m, key) ?? "";
  const ordered = [...rows].sort((a, b) => Number(h(a, "Sequence")) - Number(h(b, "Sequence")));
  // Not answered anywhere: the row with a party B that ended last (whole seconds, so ties
  // go to the later Sequence), as a parallel Dial's rows end out of Sequence order.
  const withPartyB = ordered.filter((m) => h(m, "DestinationChannel") !== "")
    .sort((a, b) => cdrSeconds(h(a, "EndTime")) - cdrSeconds(h(b, "EndTime")));
  const disposition = ordered.some((m) => h(m, "Disposition") === "ANSWERED")
    ? "ANSWERED"
    : h((withPartyB.length > 0 ? withPartyB : ordered).at(-1)!, "Disposition");
  if (ordered.length === 1) {
    return {
      disposition,
      duration: Number(h(ordered[0], "Duration")),
      billsec: Number(h(ordered[0], "BillableSeconds")),
      rows: 1,
    };
  }
  const start = Math.min(...ordered.map((m) => cdrSeconds(h(m, "StartTime"))));
  const end = Math.max(...ordered.map((m) => cdrSeconds(h(m, "EndTime"))));
  const answers = ordered.map((m) => h(m, "AnswerTime")).filter((a) => a !== "");
  const answer = answers.length === 0 ? undefined : Math.min(...answers.map(cdrSeconds));
  return {
    disposition,
    duration: end - start,
    billsec: answer === undefined ? 0 : end - answer,
    rows: ordered.length,
  };
}

async function projectedCalls(db: SqlExecutor): Promise<ProjectedCall[]> {
  return await selectRows<ProjectedCall>(
    db,
    sql`select server, call_id, dst, disposition, duration_s, billsec_s, transferred
        from calls order by server, started_at`,
  );
}

/** Loads every Cdr recording (one server each) and projects it; returns the Cdr events. */
async function loadAll(db: SqlDatabase): Promise<Map<string, AmiMessage[]>> {
  const cdrs = new Map<string, AmiMessage[]>();
  for (const name of CDR_FIXTURES) {
    const { messages } = await loadFixtureEvents(db, name, { server: name });
    cdrs.set(name, messages.filter((m) => headerValue(m, "Event") === "Cdr"));
  }
  await runProjectionsOnce({ db });
  return cdrs;
}

Deno.test("every call agrees with its caller's Cdr: disposition, duration and billsec within 1 s", async () => {
  const store = await openTestStore("cdr_agree");
  try {
    const cdrs = await loadAll(store.db);
    const calls = await projectedCalls(store.db);
    let compared = 0;
    const mismatches: string[] = [];
    for (const call of calls) {
      const rows = (cdrs.get(call.server) ?? []).filter((m) =>
        headerValue(m, "UniqueID") === call.call_id
      );
      if (rows.length === 0) continue;
      compared++;
      const cdr = callerCdr(rows);
      const where = `${call.server} ${call.call_id} (to ${call.dst}, ${cdr.rows} Cdr rows)`;
      const disposition = call.disposition ?? "";
      if (disposition !== cdr.disposition && REFINES[disposition] !== cdr.disposition) {
        mismatches.push(`${where}: disposition ${call.disposition}, Cdr ${cdr.disposition}`);
      }
      if (call.duration_s === null || Math.abs(call.duration_s - cdr.duration) > 1) {
        mismatches.push(`${where}: duration ${call.duration_s}, Cdr ${cdr.duration}`);
      }
      if (call.billsec_s === null || Math.abs(call.billsec_s - cdr.billsec) > 1) {
        mismatches.push(`${where}: billsec ${call.billsec_s}, Cdr ${cdr.billsec}`);
      }
    }
    assert.deepEqual(mismatches, []);
    // Every caller that Asterisk wrote a Cdr for is a call that was compared.
    const callers = new Set<string>();
    for (const [server, list] of cdrs) {
      for (const m of list) {
        const uniqueid = headerValue(m, "UniqueID");
        const linkedid = headerValue(m, "Linkedid");
        if (uniqueid !== undefined && uniqueid === linkedid) callers.add(`${server} ${uniqueid}`);
      }
    }
    const callIds = new Set(calls.map((c) => `${c.server} ${c.call_id}`));
    assert.deepEqual([...callers].filter((c) => !callIds.has(c)), []);
    assert.equal(compared, callers.size);
    assert.equal(compared, 22); // every caller of the ten recordings
  } finally {
    await store.close();
  }
});

Deno.test("each kind of call gets the disposition and billable seconds Asterisk's CDR rules give it", async () => {
  const store = await openTestStore("cdr_kinds");
  try {
    await loadAll(store.db);
    const calls = await projectedCalls(store.db);
    const byKind = (server: string, dst: string) => {
      const call = calls.find((c) => c.server === server && c.dst === dst);
      assert.ok(call !== undefined, `${server} has a call to ${dst}`);
      return [call.disposition, call.billsec_s, call.transferred];
    };
    const expected: [string, string, string, (string | number | boolean)[]][] = [
      ["calls-dial", "300", "answered Dial", ["ANSWERED", 3, false]],
      ["calls-dial", "301", "busy", ["BUSY", 0, false]],
      // Refinement: the Cdr says FAILED (cause 34 without `congestion = yes`).
      ["calls-dial", "302", "unreachable", ["CONGESTION", 0, false]],
      // Refinement: the Cdr says NO ANSWER (without `canceldispositionenabled = yes`).
      ["calls-dial", "303", "caller cancels while ringing", ["CANCEL", 0, false]],
      ["calls-parallel", "304", "parallel Dial, one answers", ["ANSWERED", 3, false]],
      // Rows NO ANSWER (ended last, after 3 s of ringing) and BUSY (at once).
      ["calls-parallel", "305", "parallel Dial, busy and rings out", ["NO ANSWER", 0, false]],
      ["calls-dialplan", "310", "IVR: Answer() then Wait()", ["ANSWERED", 2, false]],
      // Two Cdr rows: BUSY (with billsec, the caller was up) then ANSWERED (Hangup()).
      ["calls-dialplan", "311", "Answer(), busy Dial, Hangup()", ["ANSWERED", 1, false]],
      ["calls-dialplan", "312", "Answer(), busy Dial, Wait()", ["ANSWERED", 2, false]],
      // One Cdr row: NO ANSWER with 3 billable seconds (answered by the dialplan).
      ["calls-dialplan", "313", "Answer(), Dial rings, caller hangs up", ["CANCEL", 3, false]],
      ["calls-queue", "400", "queue answered", ["ANSWERED", 4, false]],
      ["calls-queue", "401", "queue abandoned", ["CANCEL", 3, false]],
      // Rows NO ANSWER (first member timed out) then ANSWERED: the call spans both.
      ["calls-queue", "402", "queue answered by the second member", ["ANSWERED", 9, false]],
      // The member rang out; the caller hung up 1 s into the retry pause: the row (and the
      // billable seconds) ended when the member rang out.
      ["calls-caller-leaves", "403", "queue, caller leaves between members", [
        "NO ANSWER",
        2,
        false,
      ]],
      ["calls-transfer", "320", "blind transfer", ["ANSWERED", 8, true]],
      // The caller itself transferred the callee away after 1.5 s: its Cdr ends there.
      ["calls-caller-leaves", "322", "the caller transfers the call away", ["ANSWERED", 1, true]],
      ["calls-transfer", "321", "attended transfer", ["ANSWERED", 12, true]],
      ["calls-originate", "300", "Originate into a Local channel", ["ANSWERED", 3, false]],
    ];
    for (const [server, dst, kind, want] of expected) {
      assert.deepEqual(byKind(server, dst), want, kind);
    }
  } finally {
    await store.close();
  }
});
