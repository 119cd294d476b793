/**
 * Synthetic call traffic for the projection benchmark: the recorded calls of the
 * fixtures (sip-calls: answered, busy, congested; queue-call: answered by an agent),
 * replayed with fresh uniqueids, channel names, bridge ids, numbers, times and talk
 * durations, plus SIPPeers poll answers for 50 peers with occasional outages.
 *
 * CEL, VarSet and Newexten events are left out, as a production `eventfilter` would; the rest
 * is kept as recorded.
 *
 * @module
 */
import { type AmiMessage, headersToFields, headerValue } from "../dami/message.ts";
import type { ColumnRecord } from "../daemon/projections/write.ts";
import { fixtureEvents, type TimedMessage } from "../tests/load_events.ts";

/** Options of {@linkcode generateCallTraffic}. */
export interface TrafficOptions {
  /** Total events to generate (calls first, then polls fill the rest). */
  events: number;
  /** Calls to generate. */
  calls: number;
  /** First day (UTC), e.g. `2026-10-01`. */
  startDay: string;
  /** Days the calls are spread over. */
  days: number;
  /** Rows per chunk handed to `sink`. */
  chunkRows: number;
  /** Receives `ami_events` rows in time order, chunk by chunk. */
  sink: (rows: ColumnRecord[]) => Promise<void>;
  /** Server name. */
  server: string;
  /** Session id of the single session all events belong to. */
  sessionId: string;
  /** Deterministic seed. */
  seed: number;
}

/** What was generated. */
export interface TrafficSummary {
  events: number;
  calls: number;
  pollEvents: number;
  firstMs: number;
  lastMs: number;
}

interface Template {
  name: string;
  events: { headers: [string, string][]; offsetUs: number; tail: boolean }[];
  uniqueids: string[];
  channelSuffixes: string[];
  bridges: string[];
  /** Microseconds from the first event to the start of the hang-up phase. */
  tailUs: number;
}

const SKIP = new Set(["CEL", "VarSet", "Newexten", "SuccessfulAuth", "FullyBooted"]);

function template(name: string, messages: TimedMessage[]): Template {
  const events = messages.map((m) => m.message).filter((m) =>
    !SKIP.has(headerValue(m, "Event") ?? "") && headerValue(m, "ActionID") === undefined
  );
  const ts = (m: AmiMessage) => Math.round(Number(headerValue(m, "Timestamp")) * 1e6);
  const t0 = ts(events[0]);
  const tail = events.find((m) => /^(Soft)?Hangup(Request)?$/.test(headerValue(m, "Event")!));
  const tailUs = tail === undefined ? Infinity : ts(tail) - t0;
  const uniqueids = new Set<string>();
  const suffixes = new Set<string>();
  const bridges = new Set<string>();
  for (const m of events) {
    for (const [k, v] of m.headers) {
      if (/uniqueid$/i.test(k) && /^\d+\.\d+$/.test(v)) {
        if (/bridge/i.test(k)) bridges.add(v);
        else uniqueids.add(v);
      }
      if (/bridgeuniqueid$/i.test(k)) bridges.add(v);
      const suffix = /-([0-9a-f]{8})(;\d)?$/.exec(v);
      if (suffix !== null && /channel/i.test(k)) suffixes.add(suffix[1]);
    }
  }
  return {
    name,
    events: events.map((m) => ({
      headers: m.headers.map(([k, v]) => [k, v] as [string, string]),
      offsetUs: ts(m) - t0,
      tail: ts(m) - t0 >= tailUs,
    })),
    uniqueids: [...uniqueids],
    channelSuffixes: [...suffixes],
    bridges: [...bridges],
    tailUs,
  };
}

function bySeq(messages: TimedMessage[], from: number, to: number): TimedMessage[] {
  return messages.filter((m) => m.message.seq >= from && m.message.seq <= to);
}

/** The call templates and the share of calls each gets. */
function templates(): { template: Template; share: number; answered: boolean }[] {
  const sip = fixtureEvents("sip-calls");
  const queue = fixtureEvents("queue-call");
  return [
    { template: template("answered", bySeq(sip, 3, 107)), share: 0.45, answered: true },
    { template: template("queue", bySeq(queue, 3, 113)), share: 0.15, answered: true },
    { template: template("busy", bySeq(sip, 108, 122)), share: 0.2, answered: false },
    { template: template("congested", bySeq(sip, 123, 137)), share: 0.2, answered: false },
  ];
}

/** mulberry32. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Calls per hour of a weekday: office hours heavy, nights light. */
const HOUR_WEIGHT = [
  1,
  1,
  1,
  1,
  1,
  2,
  4,
  10,
  25,
  35,
  35,
  30,
  20,
  28,
  33,
  32,
  28,
  18,
  8,
  4,
  3,
  2,
  1,
  1,
];

/** Generates the traffic and hands it to `options.sink` in time order. */
export async function generateCallTraffic(options: TrafficOptions): Promise<TrafficSummary> {
  const rnd = random(options.seed);
  const kinds = templates();
  const dayStartMs = Date.parse(`${options.startDay}T00:00:00Z`);

  // Call start times: pick a day, then an hour by weight (weekends get a third).
  const starts: number[] = [];
  const totalWeight = HOUR_WEIGHT.reduce((a, b) => a + b, 0);
  while (starts.length < options.calls) {
    const day = Math.floor(rnd() * options.days);
    const weekday = new Date(dayStartMs + day * 86_400_000).getUTCDay();
    if ((weekday === 0 || weekday === 6) && rnd() > 0.33) continue;
    let pick = rnd() * totalWeight;
    let hour = 0;
    while (pick > HOUR_WEIGHT[hour]) pick -= HOUR_WEIGHT[hour++];
    starts.push(dayStartMs + day * 86_400_000 + hour * 3_600_000 + Math.floor(rnd() * 3_600_000));
  }
  starts.sort((a, b) => a - b);

  const callEvents = estimateEvents(kinds, options.calls);
  const pollRounds = Math.max(0, Math.floor((options.events - callEvents) / 52));
  const pollEveryMs = pollRounds > 0 ? (options.days * 86_400_000) / pollRounds : Infinity;

  let seq = 0;
  let counter = 100;
  let events = 0;
  let pollEvents = 0;
  let nextPollMs = dayStartMs;
  let pollsDone = 0;
  let pending: { us: number; row: ColumnRecord }[] = [];
  const flush = async (untilUs: number) => {
    pending.sort((a, b) => a.us - b.us);
    const ready = pending.filter((p) => p.us < untilUs);
    pending = pending.filter((p) => p.us >= untilUs);
    for (let i = 0; i < ready.length; i += options.chunkRows) {
      const rows = ready.slice(i, i + options.chunkRows).map((p) => {
        p.row.seq = ++seq;
        return p.row;
      });
      events += rows.length;
      await options.sink(rows);
    }
  };
  const push = (us: number, headers: [string, string][]) => {
    pending.push({
      us,
      row: {
        server: options.server,
        session_id: options.sessionId,
        seq: 0,
        received_at: new Date(Math.floor(us / 1000)).toISOString(),
        event: headers[0][1],
        uniqueid: valueOf(headers, "uniqueid"),
        linkedid: valueOf(headers, "linkedid"),
        channel: valueOf(headers, "channel"),
        action_id: valueOf(headers, "actionid"),
        fields: headersToFields(headers),
      },
    });
  };

  for (let i = 0; i < starts.length; i++) {
    const startMs = starts[i];
    while (pollsDone < pollRounds && nextPollMs <= startMs) {
      pollEvents += pushPoll(push, nextPollMs, pollsDone, rnd);
      pollsDone++;
      nextPollMs = dayStartMs + pollsDone * pollEveryMs;
    }
    let pick = rnd();
    const kind = kinds.find((k) => (pick -= k.share) < 0) ?? kinds[0];
    const t = kind.template;
    const epoch = Math.floor(startMs / 1000);
    const replace = new Map<string, string>();
    for (const u of t.uniqueids) replace.set(u, `${epoch}.${counter++}`);
    for (const s of t.channelSuffixes) {
      replace.set(s, (counter++).toString(16).padStart(8, "0"));
    }
    for (const b of t.bridges) replace.set(b, crypto.randomUUID());
    const caller = `+1555${String(Math.floor(rnd() * 2000)).padStart(7, "0")}`;
    const agent = `60${String(Math.floor(rnd() * 50)).padStart(2, "0")}`;
    // Talk time: minutes for answered calls, a little ringing for the rest.
    const extraUs = kind.answered ? Math.floor((5 + rnd() * 400) * 1e6) : 0;
    const startUs = startMs * 1000;
    for (const ev of t.events) {
      const us = startUs + ev.offsetUs + (ev.tail ? extraUs : 0);
      const headers = ev.headers.map(([k, v]): [string, string] => {
        if (k === "Timestamp") return [k, (us / 1e6).toFixed(6)];
        return [k, rewrite(v, replace, caller, agent)];
      });
      push(us, headers);
    }
    if (i % 500 === 499) await flush(startUs);
  }
  while (pollsDone < pollRounds) {
    pollEvents += pushPoll(push, nextPollMs, pollsDone, rnd);
    pollsDone++;
    nextPollMs = dayStartMs + pollsDone * pollEveryMs;
  }
  await flush(Infinity);
  return {
    events,
    calls: starts.length,
    pollEvents,
    firstMs: starts[0],
    lastMs: starts[starts.length - 1],
  };
}

function estimateEvents(kinds: { template: Template; share: number }[], calls: number): number {
  return Math.round(kinds.reduce((n, k) => n + k.share * k.template.events.length, 0) * calls);
}

function valueOf(headers: [string, string][], key: string): string | null {
  for (const [k, v] of headers) if (k.toLowerCase() === key) return v;
  return null;
}

function rewrite(
  value: string,
  replace: Map<string, string>,
  caller: string,
  agent: string,
): string {
  let out = value;
  for (const [from, to] of replace) if (out.includes(from)) out = out.replaceAll(from, to);
  if (out === "sipp") return caller;
  if (out.includes("6001")) out = out.replaceAll("6001", agent);
  return out;
}

/** One SIPPeers answer: 50 extensions and the trunk, then PeerlistComplete. */
function pushPoll(
  push: (us: number, headers: [string, string][]) => void,
  atMs: number,
  round: number,
  rnd: () => number,
): number {
  const actionId = `sip-peers-${round}`;
  for (let p = 0; p <= 50; p++) {
    const name = p === 50 ? "trunk" : `60${String(p).padStart(2, "0")}`;
    // Peer 6007 is flaky (down ~1 round in 5); the rest go down rarely.
    const down = p === 7 ? rnd() < 0.2 : rnd() < 0.002;
    push(atMs * 1000 + p, [
      ["Event", "PeerEntry"],
      ["ActionID", actionId],
      ["Channeltype", "SIP"],
      ["ObjectName", name],
      ["ChanObjectType", "peer"],
      ["IPaddress", "10.0.0." + (p + 10)],
      ["IPport", "5060"],
      ["Dynamic", "yes"],
      ["Status", down ? "UNREACHABLE" : `OK (${1 + Math.floor(rnd() * 40)} ms)`],
      ["Description", ""],
    ]);
  }
  push(atMs * 1000 + 51, [
    ["Event", "PeerlistComplete"],
    ["ActionID", actionId],
    ["EventList", "Complete"],
    ["ListItems", "51"],
  ]);
  return 52;
}
