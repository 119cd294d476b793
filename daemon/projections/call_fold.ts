/**
 * Folds every event of one call into its `calls`, `call_legs`, `queue_calls` and
 * `queue_attempts` rows. Pure: the same events (in any order) and the same session gaps
 * always give the same rows, which is what makes an incremental run equal a rebuild.
 *
 * Rules (Asterisk 20):
 * - call id: the oldest linkedid the call's events name (uniqueids compared as
 *   `epoch.counter`); the caller (party A) is the leg whose uniqueid is the call id;
 * - answered, disposition, duration and billable seconds are those of the caller's CDR
 *   records as `main/cdr.c` builds them ({@linkcode CallerCdr}): answered when the
 *   caller's channel goes `Up` (a dialplan `Answer()` counts), the disposition of the
 *   caller's records, duration and billsec from the first record's start and first answer
 *   to the last record's end, truncated to whole seconds; without the caller's events
 *   (a call seen only in part), the first two-party bridge or `DialEnd ANSWER` answers it
 *   and the last `Hangup` ends it;
 * - end: the last `Hangup` of any leg.
 *
 * @module
 */
import {
  CallerCdr,
  causeDisposition,
  dialStatusDisposition,
  type Disposition,
  PROGRESS_STATUSES,
} from "./caller_cdr.ts";
import {
  compareEvents,
  compareUniqueids,
  endpointOf,
  eventNodes,
  isChannelId,
  linksCalls,
  type ProjectionEvent,
} from "./event.ts";

/** A span of time the daemon had no AMI session to a server (microseconds; end may be open). */
export interface SessionGap {
  readonly startUs: number;
  /** `Infinity` while no later session exists. */
  readonly endUs: number;
}

/** One `call_legs` row (times in microseconds). */
export interface LegRow {
  uniqueid: string;
  callId: string;
  linkedid: string | null;
  channel: string | null;
  endpoint: string | null;
  callerNum: string | null;
  callerName: string | null;
  context: string | null;
  exten: string | null;
  createdUs: number | null;
  answeredUs: number | null;
  hungupUs: number | null;
  cause: number | null;
  causeTxt: string | null;
  dialStatus: string | null;
}

/** One `calls` row (times in microseconds). */
export interface CallRow {
  callId: string;
  startedUs: number;
  answeredUs: number | null;
  endedUs: number | null;
  src: string | null;
  srcName: string | null;
  dst: string | null;
  context: string | null;
  srcEndpoint: string | null;
  answeredBy: string | null;
  disposition: Disposition | null;
  durationS: number | null;
  billsecS: number | null;
  hangupCause: number | null;
  transferred: boolean;
  queue: string | null;
  legs: number;
  complete: boolean;
}

/** One `queue_calls` row (times in microseconds). */
export interface QueueCallRow {
  uniqueid: string;
  callId: string;
  queue: string;
  caller: string | null;
  joinedUs: number;
  connectedUs: number | null;
  leftUs: number | null;
  agent: string | null;
  holdS: number | null;
  talkS: number | null;
  outcome: "answered" | "abandoned" | "timeout" | "unknown";
}

/** One `queue_attempts` row (times in microseconds). */
export interface QueueAttemptRow {
  uniqueid: string;
  callId: string;
  callerUniqueid: string;
  queue: string;
  agent: string;
  calledUs: number;
  ringMs: number | null;
  outcome: "connected" | "no-answer" | "dumped" | "cancelled" | null;
}

/** Everything one call projects to. */
export interface FoldedCall {
  call: CallRow;
  legs: LegRow[];
  queueCalls: QueueCallRow[];
  queueAttempts: QueueAttemptRow[];
}

interface Leg {
  uniqueid: string;
  linkedid?: string;
  channel?: string;
  callerNum?: string;
  callerName?: string;
  context?: string;
  exten?: string;
  /** Set once an extension other than `s` was seen: the dialed one. */
  dialedExten: boolean;
  createdUs?: number;
  estimatedCreatedUs?: number;
  firstSeenUs: number;
  answeredUs?: number;
  hungupUs?: number;
  cause?: number;
  causeTxt?: string;
  dialedStatus?: string;
  ranDialStatus?: string;
  sawNewchannel: boolean;
}

const MICROS = 1_000_000;

/**
 * Projects one call from all of its events (the projector groups them by the call graph,
 * `call_graph.ts`). `gaps` are the server's AMI session gaps.
 */
export function foldCall(
  events: readonly ProjectionEvent[],
  gaps: readonly SessionGap[],
): FoldedCall {
  const sorted = [...events].sort(compareEvents);
  const legs = new Map<string, Leg>();
  const sessions = new Set<string>();
  const callId = callIdOf(sorted);
  const partyA = new CallerCdr(callId);
  let bridgeAnswerUs: number | undefined;
  let bridgeAnswerers: string[] = [];
  let dialAnswerUs: number | undefined;
  let dialAnswerer: string | undefined;
  let lastDialStatus: string | undefined;
  let transferred = false;
  let queue: string | undefined;
  const bridgeMembers = new Map<string, string[]>();
  const queueFold = new QueueFold();

  const legOf = (uniqueid: string, timeUs: number): Leg => {
    let leg = legs.get(uniqueid);
    if (leg === undefined) {
      leg = { uniqueid, dialedExten: false, firstSeenUs: timeUs, sawNewchannel: false };
      legs.set(uniqueid, leg);
    }
    return leg;
  };

  for (const ev of sorted) {
    sessions.add(ev.sessionId);
    const f = ev.fields;
    partyA.observe(ev);
    const own = f.get("uniqueid");
    const leg = isChannelId(own) ? legOf(own, ev.timeUs) : undefined;
    if (leg !== undefined) observeOwnEvent(leg, ev);

    switch (ev.event) {
      case "DialBegin": {
        const dest = f.get("destuniqueid");
        if (isChannelId(dest)) {
          const d = legOf(dest, ev.timeUs);
          d.channel ??= f.get("destchannel");
        }
        break;
      }
      case "DialEnd": {
        const status = f.get("dialstatus") ?? "";
        const dest = f.get("destuniqueid");
        if (isChannelId(dest)) {
          const d = legOf(dest, ev.timeUs);
          d.channel ??= f.get("destchannel");
          d.dialedStatus = status;
        }
        if (leg !== undefined) leg.ranDialStatus = status;
        if (!PROGRESS_STATUSES.has(status)) lastDialStatus = status;
        if (status === "ANSWER" && dialAnswerUs === undefined) {
          dialAnswerUs = ev.timeUs;
          dialAnswerer = isChannelId(dest) ? dest : undefined;
        }
        break;
      }
      case "BridgeEnter": {
        if (leg === undefined || !linksCalls(ev)) break;
        const bridge = f.get("bridgeuniqueid")!;
        const members = bridgeMembers.get(bridge) ?? [];
        if (!members.includes(leg.uniqueid)) members.push(leg.uniqueid);
        bridgeMembers.set(bridge, members);
        if (bridgeAnswerUs === undefined && Number(f.get("bridgenumchannels") ?? "0") >= 2) {
          bridgeAnswerUs = ev.timeUs;
          bridgeAnswerers = [...members];
        }
        break;
      }
      case "LocalBridge": {
        for (const side of ["one", "two"]) {
          const id = f.get(`local${side}uniqueid`);
          if (isChannelId(id)) legOf(id, ev.timeUs).channel ??= f.get(`local${side}channel`);
        }
        break;
      }
      case "BlindTransfer":
      case "AttendedTransfer":
        if ((f.get("result") ?? "Success") === "Success") transferred = true;
        break;
      case "QueueCallerJoin":
        queue ??= f.get("queue");
        break;
    }
    queueFold.observe(ev);
  }

  const legList = [...legs.values()];
  const originator = legs.get(callId) ??
    [...legList].sort((a, b) =>
      (startOf(a) - startOf(b)) || compareUniqueids(a.uniqueid, b.uniqueid)
    )[0];

  let startedUs = Infinity;
  let endedUs: number | undefined;
  let allHungUp = legList.length > 0;
  let allCreated = true;
  for (const leg of legList) {
    startedUs = Math.min(startedUs, startOf(leg));
    if (leg.hungupUs === undefined) allHungUp = false;
    else endedUs = Math.max(endedUs ?? -Infinity, leg.hungupUs);
    if (!leg.sawNewchannel) allCreated = false;
  }
  if (!Number.isFinite(startedUs)) startedUs = sorted[0]?.timeUs ?? 0;

  // The caller's CDR records decide, as Asterisk's own Cdr rows do; without the caller's
  // events (a call recorded only in part) the bridge and the dial outcome stand in.
  const caller = partyA.summary();
  const callerClosed = caller?.endUs !== undefined;
  const answeredUs = caller !== undefined
    ? caller.answerUs ?? null
    : bridgeAnswerUs ?? dialAnswerUs ?? null;
  const answeredBy = answeredUs === null ? null : answererEndpoint(
    legs,
    originator?.uniqueid,
    bridgeAnswerers,
    dialAnswerer,
  );

  const connected = caller !== undefined
    ? caller.connected
    : answeredUs !== null || lastDialStatus === "ANSWER";
  const disposition: Disposition | null = !allHungUp
    ? (connected ? "ANSWERED" : null)
    : callerClosed
    ? caller.disposition ?? null
    : connected
    ? "ANSWERED"
    : lastDialStatus !== undefined
    ? dialStatusDisposition(lastDialStatus)
    : originator?.cause
    ? causeDisposition(originator.cause)
    : "FAILED";
  // Asterisk's duration and billsec span the caller's records; until every leg has hung
  // up (or without the caller's events) the legs' span stands in.
  // A caller first seen mid-call (after a reconnect) started before its first record here.
  const spanStartUs = allHungUp && callerClosed && legs.get(callId)?.sawNewchannel
    ? caller.startUs
    : startedUs;
  const spanEndUs = allHungUp && callerClosed ? caller.endUs : endedUs;

  const overlapsGap = gaps.some((g) =>
    startedUs < g.endUs && (allHungUp ? endedUs! : Infinity) > g.startUs
  );

  const call: CallRow = {
    callId,
    startedUs,
    answeredUs,
    endedUs: endedUs ?? null,
    src: originator?.callerNum ?? null,
    srcName: originator?.callerName ?? null,
    dst: originator?.exten ?? null,
    context: originator?.context ?? null,
    srcEndpoint: endpointOf(originator?.channel) ?? null,
    answeredBy,
    disposition,
    durationS: spanEndUs === undefined ? null : wholeSeconds(spanEndUs - spanStartUs),
    billsecS: spanEndUs === undefined
      ? null
      : answeredUs === null
      ? 0
      : wholeSeconds(spanEndUs - answeredUs),
    hangupCause: originator?.cause ?? null,
    transferred,
    queue: queue ?? null,
    legs: legList.length,
    complete: allHungUp && allCreated && sessions.size === 1 && !overlapsGap,
  };

  return {
    call,
    legs: legList.map((leg) => legRow(leg, callId)),
    queueCalls: queueFold.queueCalls(callId),
    queueAttempts: queueFold.attempts(callId),
  };
}

function observeOwnEvent(leg: Leg, ev: ProjectionEvent): void {
  const f = ev.fields;
  const channel = f.get("channel");
  if (ev.event === "Newchannel") {
    leg.sawNewchannel = true;
    leg.createdUs = ev.timeUs;
    if (channel) leg.channel = channel;
  } else if (ev.event === "Rename") {
    const renamed = f.get("newname");
    if (renamed) leg.channel = renamed;
  } else if (channel && leg.channel === undefined) {
    leg.channel = channel;
  }
  const linkedid = f.get("linkedid");
  if (isChannelId(linkedid)) leg.linkedid = linkedid;
  const num = f.get("calleridnum");
  if (leg.callerNum === undefined && isChannelId(num)) leg.callerNum = num;
  const name = f.get("calleridname");
  if (leg.callerName === undefined && isChannelId(name)) leg.callerName = name;
  const exten = f.get("exten");
  if (!leg.dialedExten && exten !== undefined && exten !== "") {
    if (exten !== "s") {
      leg.dialedExten = true;
      leg.exten = exten;
      leg.context = f.get("context") ?? leg.context;
    } else if (leg.exten === undefined) {
      leg.exten = exten;
      leg.context = f.get("context");
    }
  }
  if (
    leg.answeredUs === undefined &&
    (f.get("channelstatedesc") === "Up" || f.get("channelstate") === "6")
  ) {
    leg.answeredUs = ev.timeUs;
  }
  if (ev.event === "Hangup") {
    leg.hungupUs = ev.timeUs;
    const cause = Number.parseInt(f.get("cause") ?? "", 10);
    leg.cause = Number.isNaN(cause) ? undefined : cause;
    leg.causeTxt = f.get("cause-txt");
  }
  if (ev.event === "CoreShowChannel" && leg.estimatedCreatedUs === undefined) {
    // Duration is HH:MM:SS since the channel was created; list items carry no Timestamp.
    const match = /^(\d+):(\d\d):(\d\d)$/.exec(f.get("duration") ?? "");
    if (match !== null) {
      const seconds = Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
      leg.estimatedCreatedUs = ev.timeUs - seconds * MICROS;
    }
  }
}

function startOf(leg: Leg): number {
  return leg.createdUs ?? Math.min(leg.estimatedCreatedUs ?? Infinity, leg.firstSeenUs);
}

function legRow(leg: Leg, callId: string): LegRow {
  return {
    uniqueid: leg.uniqueid,
    callId,
    linkedid: leg.linkedid ?? null,
    channel: leg.channel ?? null,
    endpoint: endpointOf(leg.channel) ?? null,
    callerNum: leg.callerNum ?? null,
    callerName: leg.callerName ?? null,
    context: leg.context ?? null,
    exten: leg.exten ?? null,
    createdUs: leg.createdUs ?? leg.estimatedCreatedUs ?? leg.firstSeenUs,
    answeredUs: leg.answeredUs ?? null,
    hungupUs: leg.hungupUs ?? null,
    cause: leg.cause ?? null,
    causeTxt: leg.causeTxt ?? null,
    dialStatus: leg.dialedStatus ?? leg.ranDialStatus ?? null,
  };
}

/**
 * The endpoint that answered: a bridge partner of the originator that is not a Local
 * channel (Local channels are plumbing between two real parties), else any partner, else
 * the channel a `DialEnd ANSWER` named.
 */
function answererEndpoint(
  legs: ReadonlyMap<string, Leg>,
  originator: string | undefined,
  bridgeMembers: readonly string[],
  dialAnswerer: string | undefined,
): string | null {
  const partners = bridgeMembers.filter((id) => id !== originator)
    .map((id) => endpointOf(legs.get(id)?.channel))
    .filter((e): e is string => e !== undefined);
  const real = partners.find((e) => !e.startsWith("Local/"));
  const chosen = real ?? partners[0] ??
    (dialAnswerer === undefined ? undefined : endpointOf(legs.get(dialAnswerer)?.channel));
  return chosen ?? null;
}

/**
 * The call id: the oldest linkedid any event names, else (no linkedids at all) the oldest
 * channel.
 */
function callIdOf(events: readonly ProjectionEvent[]): string {
  let oldest: string | undefined;
  let oldestChannel: string | undefined;
  for (const ev of events) {
    const nodes = eventNodes(ev);
    for (const linkedid of nodes.linkedids) {
      if (oldest === undefined || compareUniqueids(linkedid, oldest) < 0) oldest = linkedid;
    }
    for (const channel of nodes.channels) {
      if (oldestChannel === undefined || compareUniqueids(channel, oldestChannel) < 0) {
        oldestChannel = channel;
      }
    }
  }
  return oldest ?? oldestChannel ?? "";
}

/** Whole seconds, truncated as `ast_tvdiff_ms(end, start) / 1000` in cdr.c. */
function wholeSeconds(micros: number): number {
  return Math.max(0, Math.trunc(micros / MICROS));
}

interface QueueStay {
  uniqueid: string;
  queue: string;
  caller?: string;
  joinedUs: number;
  connectedUs?: number;
  leftUs?: number;
  agent?: string;
  holdS?: number;
  talkS?: number;
  abandoned: boolean;
}

interface Attempt {
  uniqueid: string;
  callerUniqueid: string;
  queue: string;
  agent: string;
  calledUs: number;
  ringMs?: number;
  outcome?: QueueAttemptRow["outcome"];
}

/**
 * app_queue's events of one call → queue stays and member attempts. Units differ by event
 * (apps/app_queue.c, Asterisk 20): QueueCallerAbandon `HoldTime` (`time(NULL) - qe->start`),
 * AgentConnect `HoldTime` and `RingTime` (`(orig - to) / 1000`) and AgentComplete
 * `HoldTime`/`TalkTime` are seconds; AgentRingNoAnswer `RingTime` (`rnatime`) is ms.
 */
class QueueFold {
  #stays: QueueStay[] = [];
  #attempts = new Map<string, Attempt>();

  observe(ev: ProjectionEvent): void {
    const f = ev.fields;
    const uniqueid = f.get("uniqueid");
    const queue = f.get("queue");
    if (!isChannelId(uniqueid) || queue === undefined) return;
    const agent = f.get("membername") || f.get("interface") || "";
    const dest = f.get("destuniqueid");
    const attempt = isChannelId(dest) ? this.#attempts.get(dest) : undefined;
    switch (ev.event) {
      case "QueueCallerJoin":
        this.#stays.push({
          uniqueid,
          queue,
          caller: isChannelId(f.get("calleridnum")) ? f.get("calleridnum") : undefined,
          joinedUs: ev.timeUs,
          abandoned: false,
        });
        return;
      case "AgentCalled":
        if (isChannelId(dest) && attempt === undefined) {
          this.#attempts.set(dest, {
            uniqueid: dest,
            callerUniqueid: uniqueid,
            queue,
            agent,
            calledUs: ev.timeUs,
          });
        }
        return;
      case "AgentRingNoAnswer":
        if (attempt !== undefined) {
          attempt.outcome = "no-answer";
          attempt.ringMs = numberOrUndefined(f.get("ringtime"));
        }
        return;
      case "AgentDump":
        if (attempt !== undefined) attempt.outcome = "dumped";
        return;
    }
    const stay = this.#stayAt(uniqueid, queue, ev.timeUs);
    switch (ev.event) {
      case "AgentConnect": {
        if (attempt !== undefined) {
          attempt.outcome = "connected";
          const ringS = numberOrUndefined(f.get("ringtime"));
          attempt.ringMs = ringS === undefined ? undefined : ringS * 1000;
        }
        if (stay !== undefined && stay.connectedUs === undefined) {
          stay.connectedUs = ev.timeUs;
          stay.agent = agent || undefined;
          stay.holdS = numberOrUndefined(f.get("holdtime"));
        }
        break;
      }
      case "AgentComplete":
        if (stay !== undefined) {
          stay.talkS = numberOrUndefined(f.get("talktime"));
          stay.holdS ??= numberOrUndefined(f.get("holdtime"));
          stay.agent ??= agent || undefined;
        }
        break;
      case "QueueCallerAbandon":
        if (stay !== undefined) {
          stay.abandoned = true;
          stay.holdS = numberOrUndefined(f.get("holdtime"));
        }
        break;
      case "QueueCallerLeave":
        if (stay !== undefined && stay.leftUs === undefined) stay.leftUs = ev.timeUs;
        break;
    }
  }

  /** The caller's latest stay in `queue` that began at or before `timeUs`. */
  #stayAt(uniqueid: string, queue: string, timeUs: number): QueueStay | undefined {
    let found: QueueStay | undefined;
    for (const stay of this.#stays) {
      if (stay.uniqueid === uniqueid && stay.queue === queue && stay.joinedUs <= timeUs) {
        found = stay;
      }
    }
    return found;
  }

  queueCalls(callId: string): QueueCallRow[] {
    return this.#stays.map((s) => {
      const outcome = s.connectedUs !== undefined
        ? "answered"
        : s.abandoned
        ? "abandoned"
        : s.leftUs !== undefined
        ? "timeout"
        : "unknown";
      const holdS = s.holdS ??
        (s.leftUs === undefined ? undefined : wholeSeconds(s.leftUs - s.joinedUs));
      return {
        uniqueid: s.uniqueid,
        callId,
        queue: s.queue,
        caller: s.caller ?? null,
        joinedUs: s.joinedUs,
        connectedUs: s.connectedUs ?? null,
        leftUs: s.leftUs ?? null,
        agent: s.agent ?? null,
        holdS: holdS ?? null,
        talkS: s.talkS ?? null,
        outcome,
      };
    });
  }

  attempts(callId: string): QueueAttemptRow[] {
    return [...this.#attempts.values()].map((a) => {
      const stay = this.#stayAt(a.callerUniqueid, a.queue, a.calledUs);
      const over = stay !== undefined &&
        (stay.leftUs !== undefined || stay.connectedUs !== undefined);
      return {
        uniqueid: a.uniqueid,
        callId,
        callerUniqueid: a.callerUniqueid,
        queue: a.queue,
        agent: a.agent,
        calledUs: a.calledUs,
        ringMs: a.ringMs ?? null,
        outcome: a.outcome ?? (over ? "cancelled" : null),
      };
    });
  }
}

function numberOrUndefined(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}
