/**
 * The PBXs now, folded from committed events: per server the channels up, the calls in
 * progress (channels grouped by linkedid) with their parties, the queues (callers
 * waiting, members with state, pause and whether in a call) and the endpoints' states.
 *
 * - Channels: `Newchannel`, `Newstate`, `NewCallerid`, `NewConnectedLine`, `Rename`,
 *   `BridgeEnter` / `BridgeLeave`, `Hangup`, and `CoreShowChannel` list items (their
 *   `Duration` dates a channel that was up before the session). At
 *   `CoreShowChannelsComplete`, a channel the list did not name and that was known before
 *   the list started is gone (its `Hangup` was missed).
 * - Queues: `QueueCallerJoin` / `QueueCallerLeave` / `QueueCallerAbandon`,
 *   `QueueMemberStatus` / `Added` / `Removed` / `Pause`, `AgentCalled` / `AgentConnect` /
 *   `AgentComplete`, and the `QueueStatus` list items (`QueueParams` starts a queue
 *   afresh, `QueueMember` and `QueueEntry` fill it; `Wait` dates a caller).
 * - Endpoints: `PeerStatus`, `ContactStatus`, `PeerEntry` (SIPPeers),
 *   `EndpointList` (PJSIPShowEndpoints), `DeviceStateChange` of a SIP/PJSIP/IAX2 device.
 * - `Shutdown`, or the first event of a new AMI session of a server, clears that
 *   server: the PBX restarted or the daemon reconnected, and the on-connect snapshot
 *   actions (`CoreShowChannels`, `QueueStatus`) rebuild it.
 *
 * Times come from the events' `received_at`, so a rebuild from the log at start gives the
 * same state as following live. Field names are matched case-insensitively (Asterisk
 * spells `Uniqueid` and `UniqueID` in different events).
 *
 * @module
 */

/** One event as the live state needs it. */
export interface LiveEvent {
  readonly id: number;
  readonly server: string;
  readonly session_id: string;
  /** ISO 8601. */
  readonly received_at: string;
  readonly event: string;
  readonly fields: Readonly<Record<string, string | string[]>>;
}

/** A channel up. */
export interface LiveChannel {
  channel: string;
  uniqueid: string;
  linkedid: string;
  state: string;
  caller_num: string | null;
  caller_name: string | null;
  connected_num: string | null;
  connected_name: string | null;
  context: string | null;
  exten: string | null;
  bridge: string | null;
  /** When it was created (ISO 8601). */
  since: string;
}

/** A caller waiting in a queue. */
export interface LiveQueueCaller {
  channel: string;
  uniqueid: string;
  caller_num: string | null;
  caller_name: string | null;
  position: number;
  /** When it joined the queue (ISO 8601). */
  joined_at: string;
}

/** A member of a queue. */
export interface LiveQueueMember {
  interface: string;
  name: string;
  /** `not in use`, `in use`, `busy`, `unavailable`, `ringing`, ... (device state). */
  state: string;
  paused: boolean;
  paused_reason: string | null;
  in_call: boolean;
  calls_taken: number | null;
}

/** A queue. */
export interface LiveQueue {
  name: string;
  callers: LiveQueueCaller[];
  members: Record<string, LiveQueueMember>;
}

/** An endpoint's last known state. */
export interface LiveEndpoint {
  name: string;
  state: string;
  /** The event that said so. */
  source: string;
  updated_at: string;
}

interface ServerState {
  session: string;
  as_of: number;
  channels: Map<string, LiveChannel>;
  queues: Map<string, LiveQueue>;
  endpoints: Map<string, LiveEndpoint>;
  /** CoreShowChannels lists in progress: ActionID → first item id and uniqueids named. */
  listings: Map<string, { first: number; seen: Set<string> }>;
}

/** One change of the state: the new value of an entity, or null when it is gone. */
export interface LiveChange {
  server: string;
  kind: "server" | "channel" | "call" | "queue" | "endpoint";
  key: string;
  value: unknown;
}

/** A call in progress: the channels of one linkedid. */
export interface LiveCall {
  /** The linkedid: what `calls.call_id` will be once the call is projected. */
  call_id: string;
  linkedid: string;
  /** When its first channel was created (ISO 8601). */
  started_at: string;
  since: string;
  parties: LiveChannel[];
}

/** AST_DEVICE_* (include/asterisk/devicestate.h), the `Status` of queue members. */
const DEVICE_STATES = [
  "unknown",
  "not in use",
  "in use",
  "busy",
  "invalid",
  "unavailable",
  "ringing",
  "ring in use",
  "on hold",
];

/** The events that change the state (besides a new session); others only move `as_of`. */
export const LIVE_EVENTS: ReadonlySet<string> = new Set([
  "Shutdown",
  "Newchannel",
  "Newstate",
  "NewCallerid",
  "NewConnectedLine",
  "CoreShowChannel",
  "CoreShowChannelsComplete",
  "Rename",
  "BridgeEnter",
  "BridgeLeave",
  "Hangup",
  "QueueParams",
  "QueueEntry",
  "QueueCallerJoin",
  "QueueCallerLeave",
  "QueueCallerAbandon",
  "QueueMember",
  "QueueMemberStatus",
  "QueueMemberAdded",
  "QueueMemberPause",
  "QueueMemberRemoved",
  "AgentConnect",
  "AgentComplete",
  "PeerStatus",
  "ContactStatus",
  "PeerEntry",
  "EndpointList",
  "DeviceStateChange",
]);

/** A case-insensitive view of an event's fields. */
function fieldReader(fields: LiveEvent["fields"]): (name: string) => string | undefined {
  const lower = new Map<string, string>();
  for (const [key, value] of Object.entries(fields)) {
    const k = key.toLowerCase();
    if (!lower.has(k)) lower.set(k, Array.isArray(value) ? value[0] : value);
  }
  return (name) => lower.get(name.toLowerCase());
}

/** `<unknown>` and empty mean none. */
function known(value: string | undefined): string | null {
  return value === undefined || value === "" || value === "<unknown>" ? null : value;
}

function secondsBefore(iso: string, seconds: number): string {
  return new Date(Date.parse(iso) - seconds * 1000).toISOString();
}

/** `HH:MM:SS` (CoreShowChannel `Duration`) in seconds. */
function hms(text: string | undefined): number {
  const m = /^(\d+):(\d\d):(\d\d)$/.exec(text ?? "");
  return m === null ? 0 : Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
}

/** The live state; feed it events in id order with {@linkcode LiveState.apply}. */
export class LiveState {
  #servers = new Map<string, ServerState>();
  #asOf = 0;
  /** Entities changed since the last {@linkcode LiveState.takeChanges}, in order. */
  #changes = new Map<string, Omit<LiveChange, "value">>();

  /** The id of the last event applied. */
  get asOf(): number {
    return this.#asOf;
  }

  /**
   * Whether {@linkcode LiveState.apply} must see this event in full: it is one of
   * {@linkcode LIVE_EVENTS} or opens a new session of its server. Otherwise
   * {@linkcode LiveState.pass} is enough (and spares parsing its fields).
   */
  needs(server: string, sessionId: string, event: string): boolean {
    return LIVE_EVENTS.has(event) || this.#servers.get(server)?.session !== sessionId;
  }

  /** Moves `as_of` over an event that changes nothing (see {@linkcode LiveState.needs}). */
  pass(id: number, server: string): void {
    if (id <= this.#asOf) return;
    this.#asOf = id;
    const s = this.#servers.get(server);
    if (s !== undefined) s.as_of = id;
  }

  /** Applies one event (ids increasing). */
  apply(event: LiveEvent): void {
    if (event.id <= this.#asOf) return;
    this.#asOf = event.id;
    let s = this.#servers.get(event.server);
    const f = fieldReader(event.fields);
    const name = event.event;
    if (s === undefined || s.session !== event.session_id || name === "Shutdown") {
      if (s !== undefined) this.#clear(s);
      s = {
        session: event.session_id,
        as_of: event.id,
        channels: new Map(),
        queues: new Map(),
        endpoints: new Map(),
        listings: new Map(),
      };
      this.#servers.set(event.server, s);
      this.#changed(event.server, "server", event.server);
    }
    s.as_of = event.id;
    switch (name) {
      case "Newchannel":
      case "Newstate":
      case "NewCallerid":
      case "NewConnectedLine":
      case "CoreShowChannel":
        this.#upsertChannel(event, s, f);
        break;
      case "Rename": {
        const ch = s.channels.get(f("Uniqueid") ?? "");
        if (ch !== undefined) {
          ch.channel = f("Newname") ?? ch.channel;
          this.#channelChanged(event.server, ch);
        }
        break;
      }
      case "BridgeEnter":
      case "BridgeLeave": {
        const ch = s.channels.get(f("Uniqueid") ?? "");
        if (ch !== undefined) {
          ch.bridge = name === "BridgeEnter" ? known(f("BridgeUniqueid")) : null;
          this.#channelChanged(event.server, ch);
        }
        break;
      }
      case "Hangup": {
        const uniqueid = f("Uniqueid") ?? "";
        const ch = s.channels.get(uniqueid);
        if (ch !== undefined) this.#removeChannel(event.server, s, ch);
        break;
      }
      case "CoreShowChannelsComplete": {
        const listing = s.listings.get(f("ActionID") ?? "");
        if (listing === undefined) break;
        s.listings.delete(f("ActionID") ?? "");
        for (const ch of [...s.channels.values()]) {
          if (!listing.seen.has(ch.uniqueid) && this.#createdBefore(ch, listing.first)) {
            this.#removeChannel(event.server, s, ch);
          }
        }
        break;
      }
      case "QueueParams": {
        const queue = { name: f("Queue") ?? "", callers: [], members: {} };
        s.queues.set(queue.name, queue);
        this.#changed(event.server, "queue", queue.name);
        break;
      }
      case "QueueEntry":
      case "QueueCallerJoin": {
        const queue = this.#queue(s, f("Queue"));
        const uniqueid = f("Uniqueid") ?? "";
        queue.callers = queue.callers.filter((c) => c.uniqueid !== uniqueid);
        queue.callers.push({
          channel: f("Channel") ?? "",
          uniqueid,
          caller_num: known(f("CallerIDNum")),
          caller_name: known(f("CallerIDName")),
          position: Number(f("Position") ?? queue.callers.length + 1),
          joined_at: secondsBefore(event.received_at, Number(f("Wait") ?? 0)),
        });
        queue.callers.sort((a, b) => a.position - b.position);
        this.#changed(event.server, "queue", queue.name);
        break;
      }
      case "QueueCallerLeave":
      case "QueueCallerAbandon": {
        const queue = this.#queue(s, f("Queue"));
        const uniqueid = f("Uniqueid");
        const gone = queue.callers.find((c) => c.uniqueid === uniqueid);
        if (gone !== undefined) {
          queue.callers = queue.callers.filter((c) => c !== gone);
          for (const c of queue.callers) if (c.position > gone.position) c.position--;
        }
        this.#changed(event.server, "queue", queue.name);
        break;
      }
      case "QueueMember":
      case "QueueMemberStatus":
      case "QueueMemberAdded":
      case "QueueMemberPause": {
        const queue = this.#queue(s, f("Queue"));
        const iface = f("Interface") ?? f("Location") ?? f("StateInterface") ?? "";
        const old = queue.members[iface];
        const status = f("Status");
        const paused = f("Paused");
        queue.members[iface] = {
          interface: iface,
          name: f("MemberName") ?? f("Name") ?? old?.name ?? iface,
          state: status === undefined ? old?.state ?? "unknown" : DEVICE_STATES[Number(status)] ??
            status,
          paused: paused === undefined ? old?.paused ?? false : paused === "1",
          paused_reason: paused === "0"
            ? null
            : known(f("PausedReason") ?? f("Reason")) ?? old?.paused_reason ?? null,
          in_call: f("InCall") === undefined ? old?.in_call ?? false : f("InCall") === "1",
          calls_taken: f("CallsTaken") === undefined
            ? old?.calls_taken ?? null
            : Number(f("CallsTaken")),
        };
        this.#changed(event.server, "queue", queue.name);
        break;
      }
      case "QueueMemberRemoved": {
        const queue = this.#queue(s, f("Queue"));
        delete queue.members[f("Interface") ?? ""];
        this.#changed(event.server, "queue", queue.name);
        break;
      }
      case "AgentConnect":
      case "AgentComplete": {
        const queue = this.#queue(s, f("Queue"));
        const iface = f("Interface") ?? "";
        // A member known only from these events (no QueueStatus yet) is added.
        queue.members[iface] ??= {
          interface: iface,
          name: f("MemberName") ?? iface,
          state: "unknown",
          paused: false,
          paused_reason: null,
          in_call: false,
          calls_taken: null,
        };
        queue.members[iface].in_call = name === "AgentConnect";
        this.#changed(event.server, "queue", queue.name);
        break;
      }
      case "PeerStatus":
        this.#endpoint(event, s, f("Peer"), f("PeerStatus"));
        break;
      case "ContactStatus":
        this.#endpoint(
          event,
          s,
          f("EndpointName") === undefined ? undefined : `PJSIP/${f("EndpointName")}`,
          f("ContactStatus"),
        );
        break;
      case "PeerEntry":
        this.#endpoint(event, s, `${f("Channeltype") ?? "SIP"}/${f("ObjectName")}`, f("Status"));
        break;
      case "EndpointList":
        this.#endpoint(event, s, `PJSIP/${f("ObjectName")}`, f("DeviceState"));
        break;
      case "DeviceStateChange": {
        const device = f("Device") ?? "";
        if (/^(SIP|PJSIP|IAX2)\/[^-]+$/.test(device)) this.#endpoint(event, s, device, f("State"));
        break;
      }
    }
  }

  /** The changes since the last call (one per entity, its latest value). */
  takeChanges(): LiveChange[] {
    const changes: LiveChange[] = [];
    for (const change of this.#changes.values()) {
      const s = this.#servers.get(change.server);
      let value: unknown = null;
      if (s === undefined) value = null;
      else if (change.kind === "server") value = { session_id: s.session };
      else if (change.kind === "channel") value = s.channels.get(change.key) ?? null;
      else if (change.kind === "call") value = this.#call(s, change.key);
      else if (change.kind === "queue") {
        const q = s.queues.get(change.key);
        value = q === undefined ? null : { ...q, members: Object.values(q.members) };
      } else value = s.endpoints.get(change.key) ?? null;
      changes.push({ ...change, value });
    }
    this.#changes.clear();
    return changes;
  }

  /** The whole state, with durations and waits computed at `now`. */
  snapshot(now = Date.now()): { as_of: number; servers: Record<string, unknown> } {
    const servers: Record<string, unknown> = {};
    for (const server of [...this.#servers.keys()].sort()) {
      servers[server] = this.serverSnapshot(server, now);
    }
    return { as_of: this.#asOf, servers };
  }

  /** One server's state (empty when unknown), durations and waits computed at `now`. */
  serverSnapshot(server: string, now = Date.now()): Record<string, unknown> {
    const s = this.#servers.get(server);
    if (s === undefined) {
      return { session_id: null, as_of: null, channels: [], calls: [], queues: [], endpoints: [] };
    }
    const age = (iso: string) => Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
    return {
      session_id: s.session,
      as_of: s.as_of,
      channels: [...s.channels.values()].map((c) => ({ ...c, duration_s: age(c.since) })),
      calls: this.#calls(s).map((c) => ({ ...c, duration_s: age(c.since) })),
      queues: [...s.queues.values()].map((q) => ({
        name: q.name,
        callers: q.callers.map((c) => ({ ...c, wait_s: age(c.joined_at) })),
        members: Object.values(q.members),
      })),
      endpoints: [...s.endpoints.values()],
    };
  }

  #calls(s: ServerState): LiveCall[] {
    const byLinkedid = new Map<string, LiveCall>();
    for (const ch of s.channels.values()) this.#addToCall(byLinkedid, ch);
    return [...byLinkedid.values()];
  }

  #addToCall(calls: Map<string, LiveCall>, ch: LiveChannel): void {
    let call = calls.get(ch.linkedid);
    if (call === undefined) {
      call = {
        call_id: ch.linkedid,
        linkedid: ch.linkedid,
        started_at: ch.since,
        since: ch.since,
        parties: [],
      };
      calls.set(ch.linkedid, call);
    }
    call.parties.push(ch);
    if (ch.since < call.since) call.since = call.started_at = ch.since;
  }

  #call(s: ServerState, linkedid: string): LiveCall | null {
    const calls = new Map<string, LiveCall>();
    for (const ch of s.channels.values()) if (ch.linkedid === linkedid) this.#addToCall(calls, ch);
    return calls.get(linkedid) ?? null;
  }

  #createdBefore(ch: LiveChannel, id: number): boolean {
    return (this.#createdAt.get(ch) ?? 0) < id;
  }

  #createdAt = new WeakMap<LiveChannel, number>();

  #upsertChannel(event: LiveEvent, s: ServerState, f: (name: string) => string | undefined) {
    const uniqueid = f("Uniqueid");
    if (uniqueid === undefined) return;
    let ch = s.channels.get(uniqueid);
    if (ch === undefined) {
      if (event.event === "Hangup") return;
      ch = {
        channel: f("Channel") ?? "",
        uniqueid,
        linkedid: f("Linkedid") ?? uniqueid,
        state: "",
        caller_num: null,
        caller_name: null,
        connected_num: null,
        connected_name: null,
        context: null,
        exten: null,
        bridge: null,
        since: secondsBefore(event.received_at, hms(f("Duration"))),
      };
      s.channels.set(uniqueid, ch);
      this.#createdAt.set(ch, event.id);
    }
    ch.channel = f("Channel") ?? ch.channel;
    ch.linkedid = f("Linkedid") ?? ch.linkedid;
    ch.state = f("ChannelStateDesc") ?? ch.state;
    ch.caller_num = known(f("CallerIDNum")) ?? ch.caller_num;
    ch.caller_name = known(f("CallerIDName")) ?? ch.caller_name;
    ch.connected_num = known(f("ConnectedLineNum")) ?? ch.connected_num;
    ch.connected_name = known(f("ConnectedLineName")) ?? ch.connected_name;
    ch.context = known(f("Context")) ?? ch.context;
    ch.exten = known(f("Exten")) ?? ch.exten;
    if (event.event === "CoreShowChannel") {
      ch.bridge = known(f("BridgeId")) ?? ch.bridge;
      const actionId = f("ActionID") ?? "";
      let listing = s.listings.get(actionId);
      if (listing === undefined) {
        listing = { first: event.id, seen: new Set() };
        s.listings.set(actionId, listing);
      }
      listing.seen.add(uniqueid);
    }
    this.#channelChanged(event.server, ch);
  }

  #removeChannel(server: string, s: ServerState, ch: LiveChannel): void {
    s.channels.delete(ch.uniqueid);
    this.#changed(server, "channel", ch.uniqueid);
    this.#changed(server, "call", ch.linkedid);
  }

  #channelChanged(server: string, ch: LiveChannel): void {
    this.#changed(server, "channel", ch.uniqueid);
    this.#changed(server, "call", ch.linkedid);
  }

  #queue(s: ServerState, name: string | undefined): LiveQueue {
    const key = name ?? "";
    let queue = s.queues.get(key);
    if (queue === undefined) {
      queue = { name: key, callers: [], members: {} };
      s.queues.set(key, queue);
    }
    return queue;
  }

  #endpoint(event: LiveEvent, s: ServerState, name: string | undefined, state: string | undefined) {
    if (name === undefined || state === undefined || name.endsWith("/undefined")) return;
    const endpoint = { name, state, source: event.event, updated_at: event.received_at };
    s.endpoints.set(name, endpoint);
    this.#changed(event.server, "endpoint", name);
  }

  #clear(s: ServerState): void {
    s.channels.clear();
    s.queues.clear();
    s.endpoints.clear();
  }

  #changed(server: string, kind: LiveChange["kind"], key: string): void {
    const id = `${server}\0${kind}\0${key}`;
    if (kind === "server") {
      // Everything of the server is gone: its earlier entity changes are moot.
      for (const [k, c] of this.#changes) if (c.server === server) this.#changes.delete(k);
    }
    this.#changes.delete(id); // re-inserted last: changes keep the order they happened in
    this.#changes.set(id, { server, kind, key });
  }
}
