/**
 * The caller's CDR records, rebuilt from AMI events the way Asterisk 20's `main/cdr.c`
 * builds them, so that a call's disposition, duration and billable seconds agree with the
 * `Cdr` rows Asterisk itself writes for party A (the channel whose uniqueid is the
 * call's linkedid).
 *
 * `cdr.c` keeps, per channel, a chain of records, each a small state machine (single,
 * dial, dialed-pending, bridge, parked, finalized). The transitions that matter for party
 * A, with the AMI event that carries each:
 * - the first record starts when the channel is created (`Newchannel`);
 * - a record is answered at the first snapshot that shows party A `Up`
 *   (`cdr_object_check_party_a_answer()`): a dialplan `Answer()` counts, not only a
 *   bridge or a `DialEnd`; a record created while party A is already up is answered at
 *   once;
 * - `DialBegin` from party A gives a record in the single state its party B; a record
 *   already dialing (a parallel `Dial(A&B)`, `ringall` queues) refuses it, and so does a
 *   finalized one, so a new record is appended;
 * - `DialEnd` sets the dialing record's disposition from the dial status
 *   (`dial_status_to_disposition()`), whatever the answer time: a caller answered by the
 *   dialplan whose `Dial`/`Queue` attempt then fails keeps billable seconds *and* a
 *   `BUSY`/`NO ANSWER`/`FAILED` record. `ANSWER` waits for the bridge; anything else
 *   finalizes the record at that instant;
 * - a finalized record refuses every later snapshot; when party A then moves to another
 *   dialplan application (`Newexten`), enters a bridge, or dials again, a new record
 *   starts (so one caller can have several rows: a second queue agent, voicemail after a
 *   busy `Dial`, a blind transfer);
 * - the record ends at the event that finalizes it (`cdr->end = cdr->lastevent`): a failed
 *   `DialEnd`, party B or party A leaving the bridge, party B hanging up, party A's
 *   `Hangup`; a record finalized without a disposition is `ANSWERED` when answered, else
 *   mapped from party A's hangup cause, else party B's, else `FAILED`
 *   (`cdr_object_finalize()`, `cdr_object_set_disposition()`).
 *
 * Durations follow `cdr_object_get_duration()`/`cdr_object_get_billsec()`: milliseconds
 * truncated to whole seconds (billsec rounds half up only with `initiatedseconds = yes`,
 * off by default).
 *
 * @module
 */
import type { ProjectionEvent } from "./event.ts";
import { isChannelId } from "./event.ts";

/** A CDR-style disposition. */
export type Disposition = "ANSWERED" | "NO ANSWER" | "BUSY" | "FAILED" | "CONGESTION" | "CANCEL";

type RecordState = "single" | "dial" | "pending" | "bridge" | "finalized";

/** One CDR record of party A (times in microseconds), in `Sequence` order in the chain. */
interface CdrRecord {
  startUs: number;
  answerUs?: number;
  /** Set when the record was finalized (it may still change state afterwards, as in cdr.c). */
  endUs?: number;
  disposition?: Disposition;
  /** The uniqueid of party B, once the record has one. */
  partyB?: string;
  state: RecordState;
  bridge?: string;
}

/** What party A's records say about the whole call (times in microseconds). */
export interface CallerCdrSummary {
  /** The first record's start. */
  startUs: number;
  /** The first answer of any record; undefined when party A was never up. */
  answerUs?: number;
  /** The last record's end (undefined while a record is open). */
  endUs?: number;
  /** `ANSWERED` when any record is, else the last-ended posted record's; undefined while open. */
  disposition?: Disposition;
  /** Whether a record is (or, finalized now, would be) `ANSWERED`: for calls in progress. */
  connected: boolean;
}

/** Dial statuses that are progress, not an outcome (`dial_status_end()` in cdr.c). */
export const PROGRESS_STATUSES: ReadonlySet<string> = new Set([
  "RINGING",
  "PROCEEDING",
  "PROGRESS",
]);

/**
 * Party A's CDR records, built from the call's events in order. Feed every event of the
 * call with {@linkcode CallerCdr.observe}; read {@linkcode CallerCdr.summary}.
 */
export class CallerCdr {
  readonly #partyA: string;
  readonly #records: CdrRecord[] = [];
  readonly #causes = new Map<string, number>();
  #up = false;
  /** The bridge party A is in. */
  #bridge: string | undefined;
  #cause: number | undefined;

  /** `partyA` is the caller's uniqueid. */
  constructor(partyA: string) {
    this.#partyA = partyA;
  }

  /** Applies one event (events must come in time order). */
  observe(ev: ProjectionEvent): void {
    const f = ev.fields;
    const t = ev.timeUs;
    const own = f.get("uniqueid") === this.#partyA;
    if (own && this.#records.length === 0) this.#append(t);
    if (this.#records.length === 0) return;

    if (own) {
      const wasUp = this.#up;
      if (f.get("channelstatedesc") === "Up" || f.get("channelstate") === "6") this.#up = true;
      if (!wasUp && this.#up) this.#answerOpenRecords(t);
    }

    switch (ev.event) {
      case "Newexten":
        // A dialplan application started: a context/extension/priority change.
        if (own && (f.get("application") ?? "") !== "") this.#dialplanMoved(t);
        break;
      case "DialBegin":
        if (this.#isDialer(ev)) this.#dialBegin(t, f.get("destuniqueid"));
        break;
      case "DialEnd": {
        const status = f.get("dialstatus") ?? "";
        if (this.#isDialer(ev) && !PROGRESS_STATUSES.has(status)) {
          this.#dialEnd(t, f.get("destuniqueid"), status);
        }
        break;
      }
      case "BridgeEnter": {
        const bridge = f.get("bridgeuniqueid");
        if (!countsAsBridge(ev) || !isChannelId(bridge)) break;
        if (own) this.#bridgeEnter(t, bridge);
        else if (bridge === this.#bridge) this.#joinedByOther(t, bridge, f.get("uniqueid"));
        break;
      }
      case "BridgeLeave": {
        const bridge = f.get("bridgeuniqueid");
        if (!countsAsBridge(ev) || bridge === undefined) break;
        const leaver = f.get("uniqueid");
        if (own && this.#bridge === bridge) this.#bridge = undefined;
        for (const r of this.#records) {
          if (r.state !== "bridge" || r.bridge !== bridge) continue;
          if (own) this.#transition(r, "finalized", t);
          else if (leaver !== undefined && leaver === r.partyB) this.#finalize(r, t);
        }
        break;
      }
      case "Hangup": {
        const cause = Number.parseInt(f.get("cause") ?? "", 10);
        const uniqueid = f.get("uniqueid");
        if (uniqueid !== undefined && !Number.isNaN(cause)) this.#causes.set(uniqueid, cause);
        if (own) {
          this.#cause = Number.isNaN(cause) ? undefined : cause;
          for (const r of this.#records) this.#transition(r, "finalized", t);
        } else if (uniqueid !== undefined) {
          for (const r of this.#records) {
            if (r.partyB !== uniqueid) continue;
            if (r.state === "dial" || r.state === "bridge") this.#transition(r, "finalized", t);
            else this.#finalize(r, t);
          }
        }
        break;
      }
    }
  }

  /**
   * The call as party A's records span it: from the first record's start to the last
   * one's end, answered at the first answer, `ANSWERED` when any record is, else the
   * disposition of the record with a party B that ended last (the rows Asterisk posts by
   * default; ties go to the later record), else of the last record.
   */
  summary(): CallerCdrSummary | undefined {
    const records = this.#records;
    if (records.length === 0) return undefined;
    const answerUs = records.find((r) => r.answerUs !== undefined)?.answerUs;
    const last = records[records.length - 1];
    const open = records.some((r) => r.endUs === undefined);
    let disposition: Disposition | undefined;
    if (records.some((r) => r.disposition === "ANSWERED")) disposition = "ANSWERED";
    else {
      // The attempt that finished last: a parallel Dial's rows end out of Sequence order.
      let final: CdrRecord | undefined;
      for (const r of records) {
        if (r.partyB !== undefined && (final === undefined || r.endUs! >= final.endUs!)) final = r;
      }
      disposition = (final ?? last).disposition;
    }
    return {
      connected: records.some((r) =>
        r.disposition === "ANSWERED" || (r.disposition === undefined && r.answerUs !== undefined)
      ),
      startUs: records[0].startUs,
      answerUs,
      endUs: open ? undefined : Math.max(...records.map((r) => r.endUs!)),
      disposition: open ? undefined : disposition,
    };
  }

  /** DialBegin/DialEnd name party A as the caller, or (an Originate) as the dialed. */
  #isDialer(ev: ProjectionEvent): boolean {
    const caller = ev.fields.get("uniqueid");
    return isChannelId(caller)
      ? caller === this.#partyA
      : ev.fields.get("destuniqueid") === this.#partyA;
  }

  #append(t: number): CdrRecord {
    const record: CdrRecord = { startUs: t, state: "single" };
    if (this.#up) record.answerUs = t;
    this.#records.push(record);
    return record;
  }

  #answerOpenRecords(t: number): void {
    for (const r of this.#records) {
      if (r.state !== "finalized" && r.answerUs === undefined) r.answerUs = t;
    }
  }

  /** `process_party_a` with a changed context/extension/priority. */
  #dialplanMoved(t: number): void {
    let allRefused = true;
    for (const r of this.#records) {
      if (r.state === "finalized") continue;
      if (r.state === "pending") {
        if (r.partyB !== undefined) {
          this.#transition(r, "finalized", t);
          continue;
        }
        // Originated channel answered and now running dialplan: back to single, same start.
        r.state = "single";
      }
      allRefused = false;
    }
    if (allRefused) this.#append(t);
  }

  #dialBegin(t: number, dest: string | undefined): void {
    const peer = isChannelId(dest) && dest !== this.#partyA ? dest : undefined;
    let handled = false;
    for (const r of this.#records) {
      if (r.state === "single" && !handled) {
        r.partyB = peer;
        r.state = "dial";
        handled = true;
      } else if (r.state === "pending") {
        this.#transition(r, "finalized", t);
      }
    }
    if (!handled) {
      const record = this.#append(t);
      record.partyB = peer;
      record.state = "dial";
    }
  }

  #dialEnd(t: number, dest: string | undefined, status: string): void {
    const peer = isChannelId(dest) && dest !== this.#partyA ? dest : undefined;
    for (const r of this.#records) {
      if (r.state !== "dial") continue;
      if (r.partyB !== undefined && r.partyB !== peer) continue;
      r.disposition = dialStatusDisposition(status);
      if (r.disposition === "ANSWERED") r.state = "pending";
      else this.#transition(r, "finalized", t);
    }
  }

  #bridgeEnter(t: number, bridge: string): void {
    this.#bridge = bridge;
    let handled = false;
    for (const r of this.#records) {
      if (r.state === "single" || r.state === "dial" || r.state === "pending") {
        r.state = "bridge";
        r.bridge = bridge;
        handled = true;
      }
    }
    if (!handled) {
      const record = this.#append(t);
      record.state = "bridge";
      record.bridge = bridge;
    }
  }

  /**
   * Another channel entered party A's bridge (`bridge_candidate_process()`): party A,
   * never a dialed channel and the oldest, stays party A; a record without a party B takes
   * the newcomer (and is active again), one with another party B gets a new record beside
   * it (a transfer target swapped in, a Local channel optimized away).
   */
  #joinedByOther(t: number, bridge: string, other: string | undefined): void {
    if (!isChannelId(other)) return;
    const r = this.#records.find((r) => r.bridge === bridge);
    if (r === undefined || r.partyB === other) return;
    if (r.partyB === undefined) {
      r.partyB = other;
      r.endUs = undefined;
      return;
    }
    const record = this.#append(t);
    record.state = "bridge";
    record.bridge = bridge;
    record.partyB = other;
  }

  #transition(r: CdrRecord, state: RecordState, t: number): void {
    if (state === "finalized") this.#finalize(r, t);
    r.state = state;
  }

  /** `cdr_object_finalize()`: sets the end once, and a disposition if none was set. */
  #finalize(r: CdrRecord, t: number): void {
    if (r.endUs !== undefined) return;
    r.endUs = t;
    if (r.disposition !== undefined) return;
    if (r.answerUs !== undefined) r.disposition = "ANSWERED";
    else if (this.#cause) r.disposition = causeDisposition(this.#cause);
    else {
      const partyBCause = r.partyB === undefined ? undefined : this.#causes.get(r.partyB);
      r.disposition = partyBCause ? causeDisposition(partyBCause) : "FAILED";
    }
  }
}

/**
 * Bridges that count for CDRs: `filter_bridge_messages()` ignores holding bridges
 * (`BridgeWait`, a queue's music on hold) except parking lots.
 */
function countsAsBridge(ev: ProjectionEvent): boolean {
  const technology = (ev.fields.get("bridgetechnology") ?? "").toLowerCase();
  return technology !== "holding_bridge" ||
    (ev.fields.get("bridgetype") ?? "").toLowerCase() === "parking";
}

/**
 * `DialStatus` → disposition, as `dial_status_to_disposition()` in cdr.c, with DAMI's two
 * refinements: `CANCEL` (and app_dial's `ABORT`) stays `CANCEL` where Asterisk writes
 * `NO ANSWER` unless `canceldispositionenabled = yes`, and `CONGESTION` stays
 * `CONGESTION` where Asterisk writes `FAILED` unless `congestion = yes`.
 */
export function dialStatusDisposition(status: string): Disposition {
  switch (status) {
    case "ANSWER":
      return "ANSWERED";
    case "BUSY":
      return "BUSY";
    case "NOANSWER":
      return "NO ANSWER";
    case "CANCEL":
    case "ABORT":
      return "CANCEL";
    case "CONGESTION":
      return "CONGESTION";
    default: // CHANUNAVAIL, FAILED, INVALIDARGS, anything new
      return "FAILED";
  }
}

/**
 * Hangup cause → disposition, as `cdr_object_set_disposition()` in cdr.c: busy, no
 * route and unregistered are decided, normal clearing and no answer are `NO ANSWER`, and
 * every other cause leaves the record's disposition unset, which Asterisk prints as
 * `NO ANSWER`. Congestion (34) stays `CONGESTION` (Asterisk: `FAILED` unless
 * `congestion = yes`).
 */
export function causeDisposition(cause: number): Disposition {
  switch (cause) {
    case 17: // AST_CAUSE_BUSY
      return "BUSY";
    case 34: // AST_CAUSE_CONGESTION
      return "CONGESTION";
    case 3: // AST_CAUSE_NO_ROUTE_DESTINATION
    case 20: // AST_CAUSE_UNREGISTERED
      return "FAILED";
    default:
      return "NO ANSWER";
  }
}
