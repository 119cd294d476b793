/**
 * One `ami_events` row as the projector sees it, and what it says about the call graph.
 *
 * @module
 */

/** An event row, with its headers keyed in lower case (AMI keys are case-insensitive). */
export interface ProjectionEvent {
  /** `ami_events.id`. */
  readonly id: bigint;
  readonly server: string;
  readonly sessionId: string;
  readonly seq: number;
  /** Event time in microseconds since the epoch: its `Timestamp` header, else `received_at`. */
  readonly timeUs: number;
  /** The `Event:` value. */
  readonly event: string;
  /** `ami_events.uniqueid`, as the store extracted it. */
  readonly uniqueid: string | null;
  /** Every header, lower-cased key → first value. */
  readonly fields: ReadonlyMap<string, string>;
}

/** An `ami_events` row as selected by the projector. */
export interface EventRow {
  id: bigint;
  server: string;
  sessionId: string;
  seq: number;
  /** `received_at` in microseconds since the epoch. */
  receivedUs: number;
  event: string;
  uniqueid: string | null;
  /** The `fields` jsonb: header → value, or → values in order when repeated. */
  fields: Record<string, string | string[]>;
}

/** Events that build calls, legs and queue calls. Everything else is skipped. */
export const CALL_EVENTS: readonly string[] = [
  "Newchannel",
  "Newstate",
  "NewCallerid",
  "Rename",
  "Hangup",
  "DialBegin",
  "DialEnd",
  "BridgeEnter",
  // The caller's CDR records: leaving a bridge ends one, a new dialplan application
  // after a finalized one starts the next (see caller_cdr.ts).
  "BridgeLeave",
  "Newexten",
  "LocalBridge",
  "BlindTransfer",
  "AttendedTransfer",
  "Pickup",
  "QueueCallerJoin",
  "QueueCallerLeave",
  "QueueCallerAbandon",
  "AgentCalled",
  "AgentConnect",
  "AgentComplete",
  "AgentRingNoAnswer",
  "AgentDump",
  // A poll after a reconnect: the channel's Linkedid and a creation time estimate.
  "CoreShowChannel",
];

/** Events that carry an endpoint's availability. */
export const ENDPOINT_EVENTS: readonly string[] = [
  "PeerEntry",
  "PeerStatus",
  "ContactStatus",
  "ContactStatusDetail",
  "EndpointList",
  "DeviceStateChange",
];

/** Every event the projector reads. */
export const PROJECTED_EVENTS: readonly string[] = [...CALL_EVENTS, ...ENDPOINT_EVENTS];

/** Header names repeat millions of times: lower-case each once (bounded: keys can embed names). */
const lowerCaseKeys = new Map<string, string>();

function lowerKey(key: string): string {
  let lower = lowerCaseKeys.get(key);
  if (lower === undefined) {
    if (lowerCaseKeys.size > 10_000) lowerCaseKeys.clear();
    lower = key.toLowerCase();
    lowerCaseKeys.set(key, lower);
  }
  return lower;
}

/** Builds the projector's view of a row. */
export function toProjectionEvent(row: EventRow): ProjectionEvent {
  const fields = new Map<string, string>();
  for (const key in row.fields) {
    const value = row.fields[key];
    const lower = lowerKey(key);
    if (!fields.has(lower)) fields.set(lower, Array.isArray(value) ? value[0] ?? "" : value);
  }
  return {
    id: row.id,
    server: row.server,
    sessionId: row.sessionId,
    seq: row.seq,
    timeUs: timestampMicros(fields.get("timestamp")) ?? row.receivedUs,
    event: row.event,
    uniqueid: row.uniqueid,
    fields,
  };
}

/**
 * `Timestamp: 1795663687.205511` (epoch seconds with microseconds, written when
 * `timestampevents = yes`) in microseconds; undefined when absent or malformed.
 */
export function timestampMicros(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+)(?:\.(\d{1,6}))?$/.exec(value.trim());
  if (match === null) return undefined;
  return Number(match[1]) * 1_000_000 + Number((match[2] ?? "").padEnd(6, "0"));
}

/** Orders events by time, then by their place in the session, then by id. */
export function compareEvents(a: ProjectionEvent, b: ProjectionEvent): number {
  if (a.timeUs !== b.timeUs) return a.timeUs - b.timeUs;
  if (a.sessionId === b.sessionId && a.seq !== b.seq) return a.seq - b.seq;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Whether a header value names a channel. Asterisk writes `<unknown>` (e.g. a failed
 * Originate's `Uniqueid`) or nothing when there is none.
 */
export function isChannelId(value: string | undefined): value is string {
  return value !== undefined && value !== "" && value !== "<unknown>";
}

/**
 * Orders Asterisk uniqueids by age. A uniqueid is `[systemname-]epoch.counter`: compared
 * as text, `1795663687.100` would sort before `1795663687.42`.
 */
export function compareUniqueids(a: string, b: string): number {
  const ma = /^(.*?)(\d+)\.(\d+)$/.exec(a);
  const mb = /^(.*?)(\d+)\.(\d+)$/.exec(b);
  if (ma === null || mb === null) {
    if (ma !== mb) return ma === null ? 1 : -1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  const epoch = Number(ma[2]) - Number(mb[2]);
  if (epoch !== 0) return epoch;
  const counter = Number(ma[3]) - Number(mb[3]);
  if (counter !== 0) return counter;
  return ma[1] < mb[1] ? -1 : ma[1] > mb[1] ? 1 : 0;
}

/** Prefix of a bridge node in the call graph (bridge ids and uniqueids never collide). */
export const BRIDGE_NODE_PREFIX = "bridge:";

/** The call-graph nodes an event names, and which of them are channels (legs). */
export interface EventNodes {
  /** Channel uniqueids the event names (its own and `Dest`/`Local`/transfer ones). */
  readonly channels: string[];
  /** Linkedids the event names. */
  readonly linkedids: string[];
  /** `bridge:<id>` when the event puts a channel into a bridge that links calls. */
  readonly bridge?: string;
}

/**
 * Every call-graph node one event names. All of them belong to the same call: a channel
 * and its linkedid, a dialer and the dialed, the two halves of a Local channel, the
 * parties of a transfer, a channel and the bridge it enters.
 */
export function eventNodes(event: ProjectionEvent): EventNodes {
  const known = nodesOf.get(event);
  if (known !== undefined) return known;
  const channels: string[] = [];
  const linkedids: string[] = [];
  for (const [key, value] of event.fields) {
    const kind = keyKind(key);
    if (kind === KeyKind.Other || !isChannelId(value)) continue;
    const list = kind === KeyKind.Channel ? channels : linkedids;
    if (!list.includes(value)) list.push(value);
  }
  const bridge = event.event === "BridgeEnter" && linksCalls(event)
    ? BRIDGE_NODE_PREFIX + event.fields.get("bridgeuniqueid")
    : undefined;
  const nodes = bridge === undefined ? { channels, linkedids } : { channels, linkedids, bridge };
  nodesOf.set(event, nodes);
  return nodes;
}

/** An event is read for its nodes several times per batch: work them out once. */
const nodesOf = new WeakMap<ProjectionEvent, EventNodes>();

const enum KeyKind {
  Other,
  Channel,
  Linkedid,
}

const keyKinds = new Map<string, KeyKind>();

/** `destuniqueid` names a channel, `destlinkedid` a linkedid; `bridgeuniqueid` neither. */
function keyKind(lowerKey: string): KeyKind {
  let kind = keyKinds.get(lowerKey);
  if (kind === undefined) {
    if (keyKinds.size > 10_000) keyKinds.clear();
    // BridgeUniqueid and the transfer events' *BridgeUniqueid name bridges, not channels.
    kind = lowerKey.endsWith("uniqueid") && !lowerKey.includes("bridge")
      ? KeyKind.Channel
      : lowerKey.endsWith("linkedid")
      ? KeyKind.Linkedid
      : KeyKind.Other;
    keyKinds.set(lowerKey, kind);
  }
  return kind;
}

/**
 * Whether channels meeting in this bridge belong to one call. Holding bridges (parking,
 * `BridgeWait`) and conferences (softmix, `ConfBridge`) gather unrelated callers.
 */
export function linksCalls(event: ProjectionEvent): boolean {
  const id = event.fields.get("bridgeuniqueid");
  if (!isChannelId(id)) return false;
  const type = (event.fields.get("bridgetype") ?? "").toLowerCase();
  const technology = (event.fields.get("bridgetechnology") ?? "").toLowerCase();
  return type !== "holding" && technology !== "softmix" && technology !== "holding_bridge";
}

/** `SIP/6001-00000011` → `SIP/6001`; `Local/100@internal-00000003;1` → `Local/100@internal`. */
export function endpointOf(channel: string | undefined): string | undefined {
  if (channel === undefined || channel === "") return undefined;
  const match = /^(.+)-[0-9a-f]+(?:;\d)?$/i.exec(channel);
  return match === null ? channel : match[1];
}
