/**
 * A simulated PBX for `deno task demo`, the tests and the benchmarks: an AMI server on
 * 127.0.0.1 that behaves like Asterisk 20 towards an AMI client (banner, plain and MD5 login,
 * Ping, Filter, Events, Logoff, CoreShowChannels, PJSIPShowEndpoints, QueueStatus) and
 * produces call traffic with the event sequences real Asterisk writes (modelled on
 * `tests/fixtures/sip-calls.jsonl` and `queue-call.jsonl`): answered, busy, no-answer,
 * cancelled and queue calls (answered or abandoned), plus a flapping endpoint. Traffic
 * starts when the first client logs in, with a short answered call, so that a new user
 * sees a whole call within seconds.
 *
 * It is a demonstration, not a test double: `tests/fake_ami_server.ts` is the one with
 * fault injection.
 *
 * @example
 * ```ts ignore
 * import { SimulatedPbx } from "./simulated_pbx.ts";
 * const pbx = await SimulatedPbx.start();
 * console.log(`AMI on ${pbx.hostname}:${pbx.port}, user ${pbx.username}`);
 * await pbx.close();
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";
import { AmiParser } from "../dami/parser.ts";
import { type AmiMessage, headerValue } from "../dami/message.ts";
import { amiTimestamp, formatAmiMessage as format } from "./ami_wire.ts";

type Headers = Array<readonly [string, string]>;

/** Options of {@linkcode SimulatedPbx.start}. */
export interface SimulatedPbxOptions {
  /** Port to listen on; 0 picks a free one.
   * @default {0} */
  port?: number;
  /** Whether the port may be another, free one when `port` is taken.
   * @default {false} */
  anyPortIfTaken?: boolean;
  /** The AMI user.
   * @default {"dami"} */
  username?: string;
  /** Its secret.
   * @default {a random one} */
  secret?: string;
  /** Mean time between new calls.
   * @default {4000} */
  callEveryMs?: number;
  /** Source of randomness (scenario choice, durations).
   * @default {Math.random} */
  random?: () => number;
}

const STATE_DESC: Record<number, string> = {
  0: "Down",
  4: "Ring",
  5: "Ringing",
  6: "Up",
  7: "Busy",
};

/** The extensions of the simulated office: number, name. */
const EXTENSIONS: ReadonlyArray<readonly [string, string]> = [
  ["6001", "Alice Martin"],
  ["6002", "Bruno Keller"],
  ["6003", "Chloe Dubois"],
  ["6004", "Dmitri Ivanov"],
  ["6005", "Emma Rossi"],
  ["6006", "Farid Haddad"],
];
/** Members of the `support` queue. */
const AGENTS = ["6001", "6002", "6003"];
const QUEUE = "support";

interface Channel {
  name: string;
  uniqueid: string;
  linkedid: string;
  state: number;
  cidNum: string;
  cidName: string;
  connNum: string;
  connName: string;
  context: string;
  exten: string;
  priority: number;
  app: string;
  appData: string;
  createdAt: number;
  bridge?: string;
}

interface Session {
  conn: Deno.Conn;
  loggedIn: boolean;
  mask: string;
  include: RegExp[];
  exclude: RegExp[];
  challenge?: string;
  writing: Promise<void>;
  closed: boolean;
}

const encoder = new TextEncoder();

/** An in-process AMI server with simulated call traffic. */
export class SimulatedPbx {
  /** Address to connect to. */
  readonly hostname = "127.0.0.1";
  /** Port to connect to. */
  readonly port: number;
  /** The AMI user. */
  readonly username: string;
  /** Its secret. */
  readonly secret: string;
  #listener: Deno.Listener;
  #sessions = new Set<Session>();
  #channels = new Map<string, Channel>();
  #random: () => number;
  #callEveryMs: number;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #closed = false;
  #uniqueCounter = 100;
  #channelCounter = 0x20;
  #callsStarted = 0;
  #callsEnded = 0;
  #unreachable = new Set<string>(["6006"]);
  #queueWaiting: string[] = [];
  #trafficStarted = false;

  private constructor(listener: Deno.Listener, options: SimulatedPbxOptions) {
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.username = options.username ?? "dami";
    this.secret = options.secret ?? crypto.randomUUID();
    this.#random = options.random ?? Math.random;
    this.#callEveryMs = options.callEveryMs ?? 4000;
  }

  /** Starts listening and producing traffic. */
  static start(options: SimulatedPbxOptions = {}): Promise<SimulatedPbx> {
    let listener: Deno.Listener;
    try {
      listener = Deno.listen({ hostname: "127.0.0.1", port: options.port ?? 0 });
    } catch (error) {
      if (!(options.anyPortIfTaken && error instanceof Deno.errors.AddrInUse)) throw error;
      listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    }
    const pbx = new SimulatedPbx(listener, options);
    pbx.#accept();
    return Promise.resolve(pbx);
  }

  /** The first login starts the traffic: the first call at once, a short answered one. */
  #startTraffic(): void {
    if (this.#trafficStarted) return;
    this.#trafficStarted = true;
    this.#later(300, () => {
      this.#callsStarted++;
      this.#dialCall("ANSWER", { ringMs: 500, talkMs: 1500 }).catch(() => {})
        .finally(() => this.#callsEnded++);
      this.#scheduleNextCall(this.#between(this.#callEveryMs / 2, this.#callEveryMs));
    });
    this.#later(45_000, () => this.#flapEndpoint());
  }

  /** Calls started so far. */
  get callsStarted(): number {
    return this.#callsStarted;
  }

  /** Calls finished so far. */
  get callsEnded(): number {
    return this.#callsEnded;
  }

  /** Stops traffic, closes every session and the listener. */
  close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const session of this.#sessions) this.#drop(session);
    return Promise.resolve();
  }

  // ---- AMI server ----

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      const session: Session = {
        conn,
        loggedIn: false,
        mask: "on",
        include: [],
        exclude: [],
        writing: Promise.resolve(),
        closed: false,
      };
      this.#sessions.add(session);
      this.#write(session, "Asterisk Call Manager/9.0.0\r\n");
      this.#serve(session);
    }
  }

  async #serve(session: Session): Promise<void> {
    const parser = new AmiParser({ expectBanner: false });
    const buf = new Uint8Array(16 * 1024);
    try {
      while (!session.closed) {
        const n = await session.conn.read(buf);
        if (n === null) break;
        for (const action of parser.push(buf.subarray(0, n))) this.#answer(session, action);
      }
    } catch {
      // Client gone or protocol abuse: drop it like Asterisk does.
    }
    this.#drop(session);
  }

  #drop(session: Session): void {
    if (session.closed) return;
    session.closed = true;
    this.#sessions.delete(session);
    session.writing.finally(() => {
      try {
        session.conn.close();
      } catch {
        // Already closed.
      }
    });
  }

  #write(session: Session, text: string): void {
    if (session.closed) return;
    const bytes = encoder.encode(text);
    session.writing = session.writing.then(async () => {
      let offset = 0;
      while (offset < bytes.length) offset += await session.conn.write(bytes.subarray(offset));
    }).catch(() => this.#drop(session));
  }

  #answer(session: Session, action: AmiMessage): void {
    const name = (headerValue(action, "Action") ?? "").toLowerCase();
    const id = headerValue(action, "ActionID");
    const idHeader: Headers = id === undefined ? [] : [["ActionID", id]];
    const respond = (response: string, fields: Headers = []) =>
      this.#write(session, format([["Response", response], ...idHeader, ...fields]));
    if (!session.loggedIn && name !== "login" && name !== "challenge" && name !== "logoff") {
      respond("Error", [["Message", "Permission denied"]]);
      return;
    }
    switch (name) {
      case "challenge":
        session.challenge ??= String(100_000_000 + Math.floor(this.#random() * 899_999_999));
        return respond("Success", [["Challenge", session.challenge]]);
      case "login":
        return this.#login(session, action, respond);
      case "logoff":
        respond("Goodbye", [["Message", "Thanks for all the fish."]]);
        return this.#drop(session);
      case "ping":
        return respond("Success", [["Ping", "Pong"], ["Timestamp", amiTimestamp()]]);
      case "events": {
        session.mask = headerValue(action, "EventMask") ?? "on";
        return respond("Success", [["Events", session.mask === "off" ? "Off" : "On"]]);
      }
      case "filter": {
        const filter = headerValue(action, "Filter") ?? "";
        try {
          const exclude = filter.startsWith("!");
          const regex = new RegExp(exclude ? filter.slice(1) : filter);
          (exclude ? session.exclude : session.include).push(regex);
          return respond("Success", [["Message", "Success"]]);
        } catch {
          return respond("Error", [["Message", "Filter Not Added"]]);
        }
      }
      case "coreshowchannels":
        return this.#list(
          session,
          idHeader,
          "Channels will follow",
          "CoreShowChannelsComplete",
          [
            ...this.#channels.values(),
          ].map((c) => [
            ["Event", "CoreShowChannel"],
            ...idHeader,
            ...channelHeaders(c),
            ["Application", c.app],
            ["ApplicationData", c.appData],
            ["Duration", duration(Date.now() - c.createdAt)],
            ["BridgeId", c.bridge ?? ""],
          ]),
        );
      case "pjsipshowendpoints":
        return this.#list(
          session,
          idHeader,
          "A listing of Endpoints follows, presence status will follow",
          "EndpointListComplete",
          [...EXTENSIONS.map(([ext]) => ext), "trunk"].map((ext) => [
            ["Event", "EndpointList"],
            ...idHeader,
            ["ObjectType", "endpoint"],
            ["ObjectName", ext],
            ["Transport", "transport-udp"],
            ["Aor", ext],
            ["Auths", ext === "trunk" ? "" : ext],
            ["OutboundAuths", ""],
            ["Contacts", this.#unreachable.has(ext) ? "" : `${ext}/sip:${ext}@${address(ext)}`],
            ["DeviceState", this.#deviceState(ext)],
            ["ActiveChannels", String(this.#channelsOf(ext).length)],
          ]),
        );
      case "queuestatus":
        return this.#list(session, idHeader, "Queue status will follow", "QueueStatusComplete", [
          [
            ["Event", "QueueParams"],
            ["Queue", QUEUE],
            ["Max", "0"],
            ["Strategy", "ringall"],
            ["Calls", String(this.#queueWaiting.length)],
            ["Holdtime", "0"],
            ["TalkTime", "0"],
            ["Completed", "0"],
            ["Abandoned", "0"],
            ["ServiceLevel", "0"],
            ["ServicelevelPerf", "0.0"],
            ["ServicelevelPerf2", "0.0"],
            ["Weight", "0"],
            ...idHeader,
          ],
          ...AGENTS.map((agent): Headers => [
            ["Event", "QueueMember"],
            ["Queue", QUEUE],
            ["Name", `PJSIP/${agent}`],
            ["Location", `PJSIP/${agent}`],
            ["StateInterface", `PJSIP/${agent}`],
            ["Membership", "static"],
            ["Penalty", "0"],
            ["CallsTaken", "0"],
            ["LastCall", "0"],
            ["LastPause", "0"],
            ["LoginTime", String(Math.floor(Date.now() / 1000) - 3600)],
            ["InCall", this.#channelsOf(agent).length > 0 ? "1" : "0"],
            ["Status", this.#channelsOf(agent).length > 0 ? "2" : "1"],
            ["Paused", "0"],
            ["PausedReason", ""],
            ["Wrapuptime", "0"],
            ...idHeader,
          ]),
        ]);
      default:
        return respond("Error", [[
          "Message",
          `Invalid/unknown command: ${
            headerValue(action, "Action") ?? ""
          }. Use Action: ListCommands to show available commands.`,
        ]]);
    }
  }

  #login(session: Session, action: AmiMessage, respond: (r: string, f?: Headers) => void): void {
    const user = headerValue(action, "Username");
    let ok = user === this.username;
    if (headerValue(action, "AuthType")?.toLowerCase() === "md5") {
      const expected = session.challenge === undefined
        ? undefined
        : createHash("md5").update(session.challenge + this.secret).digest("hex");
      ok &&= expected !== undefined && headerValue(action, "Key") === expected;
    } else {
      ok &&= headerValue(action, "Secret") === this.secret;
    }
    if (!ok) {
      // main/manager.c:3385-3389: a refused login waits 1 s, answers, and hangs up.
      this.#later(1000, () => {
        respond("Error", [["Message", "Authentication failed"]]);
        this.#drop(session);
      });
      return;
    }
    session.loggedIn = true;
    this.#startTraffic();
    session.mask = headerValue(action, "Events") ?? "on";
    respond("Success", [["Message", "Authentication accepted"]]);
    this.#write(
      session,
      format([
        ["Event", "FullyBooted"],
        ["Privilege", "system,all"],
        ["Uptime", "3600"],
        ["LastReload", "3600"],
        ["Status", "Fully Booted"],
      ]),
    );
  }

  #list(session: Session, idHeader: Headers, message: string, end: string, items: Headers[]) {
    let text = format([
      ["Response", "Success"],
      ...idHeader,
      ["EventList", "start"],
      ["Message", message],
    ]);
    for (const item of items) text += format(item);
    text += format([
      ["Event", end],
      ...idHeader,
      ["EventList", "Complete"],
      ["ListItems", String(items.length)],
    ]);
    this.#write(session, text);
  }

  /** Sends an event to every logged-in session whose mask and filters let it through. */
  #emit(event: string, privilege: string, headers: Headers): void {
    const text = format([
      ["Event", event],
      ["Privilege", privilege],
      ["Timestamp", amiTimestamp()],
      ...headers,
    ]);
    const classes = privilege.split(",").filter((c) => c !== "all");
    for (const session of this.#sessions) {
      if (!session.loggedIn || !passesMask(session.mask, classes)) continue;
      if (session.include.length > 0 && !session.include.some((r) => r.test(text))) continue;
      if (session.exclude.some((r) => r.test(text))) continue;
      this.#write(session, text);
    }
  }

  // ---- call traffic ----

  #later(ms: number, fn: () => void): void {
    if (this.#closed) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#closed) fn();
    }, ms);
    this.#timers.add(timer);
  }

  #wait(ms: number): Promise<boolean> {
    return new Promise((resolve) => this.#later(ms, () => resolve(true)));
  }

  #between(min: number, max: number): number {
    return Math.round(min + this.#random() * (max - min));
  }

  #pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.#random() * items.length)];
  }

  #scheduleNextCall(ms: number): void {
    this.#later(ms, () => {
      this.#startCall();
      this.#scheduleNextCall(this.#between(this.#callEveryMs / 2, this.#callEveryMs * 1.5));
    });
  }

  #startCall(): void {
    const r = this.#random();
    const call = r < 0.45
      ? this.#dialCall("ANSWER")
      : r < 0.55
      ? this.#dialCall("BUSY")
      : r < 0.67
      ? this.#dialCall("NOANSWER")
      : r < 0.72
      ? this.#dialCall("CANCEL")
      : this.#queueCall(this.#random() < 0.75);
    this.#callsStarted++;
    call.catch(() => {}).finally(() => this.#callsEnded++);
  }

  #nextUniqueid(): string {
    return `${Math.floor(Date.now() / 1000)}.${this.#uniqueCounter++}`;
  }

  #newChannel(
    tech: string,
    cidNum: string,
    cidName: string,
    context: string,
    exten: string,
    linkedid?: string,
  ): Channel {
    const uniqueid = this.#nextUniqueid();
    const channel: Channel = {
      name: `PJSIP/${tech}-${(this.#channelCounter++).toString(16).padStart(8, "0")}`,
      uniqueid,
      linkedid: linkedid ?? uniqueid,
      state: 0,
      cidNum,
      cidName,
      connNum: "<unknown>",
      connName: "<unknown>",
      context,
      exten,
      priority: 1,
      app: "",
      appData: "",
      createdAt: Date.now(),
    };
    this.#channels.set(channel.uniqueid, channel);
    this.#emit("Newchannel", "call,all", channelHeaders(channel));
    return channel;
  }

  #setState(channel: Channel, state: number): void {
    channel.state = state;
    this.#emit("Newstate", "call,all", channelHeaders(channel));
  }

  #exten(channel: Channel, app: string, appData: string): void {
    channel.app = app;
    channel.appData = appData;
    this.#emit("Newexten", "dialplan,all", [
      ...channelHeaders(channel),
      ["Extension", channel.exten],
      ["Application", app],
      ["AppData", appData],
    ]);
    channel.priority++;
  }

  #varSet(channel: Channel, variable: string, value: string): void {
    this.#emit("VarSet", "dialplan,all", [
      ...channelHeaders(channel),
      ["Variable", variable],
      ["Value", value],
    ]);
  }

  #device(ext: string): void {
    this.#emit("DeviceStateChange", "call,all", [
      ["Device", `PJSIP/${ext}`],
      ["State", this.#deviceState(ext).toUpperCase().replaceAll(" ", "_")],
    ]);
  }

  #hangup(channel: Channel, cause: number, causeTxt: string): void {
    this.#emit("SoftHangupRequest", "call,all", [...channelHeaders(channel), [
      "Cause",
      String(cause),
    ]]);
    this.#channels.delete(channel.uniqueid);
    this.#emit("Hangup", "call,all", [
      ...channelHeaders(channel),
      ["Cause", String(cause)],
      ["Cause-txt", causeTxt],
    ]);
  }

  #dial(caller: Channel, callee: Channel, event: string, status?: string): void {
    this.#emit(event, "call,all", [
      ...channelHeaders(caller),
      ...channelHeaders(callee).map(([k, v]) => [`Dest${k}`, v] as const),
      ...(event === "DialBegin" ? [["DialString", calleeExt(callee)] as const] : []),
      ...(status === undefined ? [] : [["DialStatus", status] as const]),
    ]);
  }

  #bridge(a: Channel, b: Channel): string {
    const id = crypto.randomUUID();
    const bridgeHeaders = (n: number): Headers => [
      ["BridgeUniqueid", id],
      ["BridgeType", "basic"],
      ["BridgeTechnology", "simple_bridge"],
      ["BridgeCreator", "<unknown>"],
      ["BridgeName", "<unknown>"],
      ["BridgeNumChannels", String(n)],
      ["BridgeVideoSourceMode", "none"],
    ];
    this.#emit("BridgeCreate", "call,all", bridgeHeaders(0));
    b.bridge = id;
    this.#emit("BridgeEnter", "call,all", [...bridgeHeaders(1), ...channelHeaders(b)]);
    a.bridge = id;
    this.#emit("BridgeEnter", "call,all", [...bridgeHeaders(2), ...channelHeaders(a)]);
    return id;
  }

  #unbridge(a: Channel, b: Channel, id: string): void {
    const bridgeHeaders = (n: number): Headers => [
      ["BridgeUniqueid", id],
      ["BridgeType", "basic"],
      ["BridgeTechnology", "native_rtp"],
      ["BridgeCreator", "<unknown>"],
      ["BridgeName", "<unknown>"],
      ["BridgeNumChannels", String(n)],
      ["BridgeVideoSourceMode", "none"],
    ];
    this.#emit("BridgeLeave", "call,all", [...bridgeHeaders(1), ...channelHeaders(a)]);
    this.#emit("BridgeLeave", "call,all", [...bridgeHeaders(0), ...channelHeaders(b)]);
    this.#emit("BridgeDestroy", "call,all", bridgeHeaders(0));
    a.bridge = undefined;
    b.bridge = undefined;
  }

  #cdr(a: Channel, b: Channel | undefined, answeredAt: number | undefined, disposition: string) {
    const end = Date.now();
    this.#emit("Cdr", "cdr,all", [
      ["AccountCode", ""],
      ["Source", a.cidNum],
      ["Destination", a.exten],
      ["DestinationContext", a.context],
      ["CallerID", `"${a.cidName}" <${a.cidNum}>`],
      ["Channel", a.name],
      ["DestinationChannel", b?.name ?? ""],
      ["LastApplication", a.app],
      ["LastData", a.appData],
      ["StartTime", cdrTime(a.createdAt)],
      ["AnswerTime", answeredAt === undefined ? "" : cdrTime(answeredAt)],
      ["EndTime", cdrTime(end)],
      ["Duration", String(Math.round((end - a.createdAt) / 1000))],
      [
        "BillableSeconds",
        String(answeredAt === undefined ? 0 : Math.round((end - answeredAt) / 1000)),
      ],
      ["Disposition", disposition],
      ["AMAFlags", "DOCUMENTATION"],
      ["UniqueID", a.uniqueid],
      ["UserField", ""],
      ["Linkedid", a.linkedid],
    ]);
  }

  /** A caller: an outside number on the trunk to the main line, or an internal extension. */
  #caller(): { channel: Channel; target: string } {
    const free = EXTENSIONS.filter(([ext]) =>
      this.#channelsOf(ext).length === 0 && !this.#unreachable.has(ext)
    );
    if (this.#random() < 0.6 || free.length < 2) {
      const number = `+1555${this.#between(1_000_000, 9_999_999)}`;
      const channel = this.#newChannel("trunk", number, number, "from-trunk", "100");
      return { channel, target: this.#target() };
    }
    const [ext, name] = this.#pick(free);
    const target = this.#target(ext);
    return { channel: this.#newChannel(ext, ext, name, "from-internal", target), target };
  }

  /** Who is called: now and then an extension that is offline (CHANUNAVAIL). */
  #target(except?: string): string {
    const candidates = EXTENSIONS.map(([e]) => e).filter((e) =>
      e !== except && (this.#random() < 0.1 || !this.#unreachable.has(e))
    );
    return candidates.length > 0 ? this.#pick(candidates) : EXTENSIONS[0][0];
  }

  async #dialCall(
    outcome: "ANSWER" | "BUSY" | "NOANSWER" | "CANCEL",
    durations: { ringMs?: number; talkMs?: number } = {},
  ): Promise<void> {
    const { channel: a, target } = this.#caller();
    this.#setState(a, 4);
    this.#exten(a, "NoOp", `call to ${target}`);
    this.#exten(a, "Dial", `PJSIP/${target},20`);
    const name = EXTENSIONS.find(([e]) => e === target)?.[1] ?? target;
    const b = this.#newChannel(target, "<unknown>", "<unknown>", "from-internal", "s", a.linkedid);
    b.connNum = a.cidNum;
    b.connName = a.cidName;
    b.exten = a.exten;
    b.app = "AppDial";
    b.appData = "(Outgoing Line)";
    this.#dial(a, b, "DialBegin");
    const busy = outcome === "BUSY" || this.#channelsOf(target).length > 1 ||
      this.#unreachable.has(target);
    if (busy) {
      await this.#wait(this.#between(100, 400));
      const unavailable = this.#unreachable.has(target);
      this.#hangup(b, unavailable ? 20 : 17, unavailable ? "Subscriber absent" : "User busy");
      this.#dial(a, b, "DialEnd", unavailable ? "CHANUNAVAIL" : "BUSY");
      this.#varSet(a, "DIALSTATUS", unavailable ? "CHANUNAVAIL" : "BUSY");
      this.#exten(a, "Hangup", "");
      this.#cdr(a, b, undefined, unavailable ? "FAILED" : "BUSY");
      this.#hangup(a, unavailable ? 20 : 17, unavailable ? "Subscriber absent" : "User busy");
      return;
    }
    this.#setState(b, 5);
    this.#device(target);
    this.#dial(a, b, "DialState", "RINGING");
    if (outcome === "NOANSWER" || outcome === "CANCEL") {
      await this.#wait(
        outcome === "NOANSWER" ? this.#between(8000, 12000) : this.#between(2000, 6000),
      );
      this.#hangup(b, 16, "Normal Clearing");
      this.#dial(a, b, "DialEnd", outcome);
      this.#device(target);
      this.#varSet(a, "DIALSTATUS", outcome);
      this.#cdr(a, b, undefined, "NO ANSWER");
      if (outcome === "NOANSWER") this.#hangup(a, 19, "User alerting, no answer");
      else this.#hangup(a, 16, "Normal Clearing");
      return;
    }
    await this.#wait(durations.ringMs ?? this.#between(1500, 6000));
    b.cidNum = target;
    b.cidName = name;
    this.#setState(b, 6);
    this.#dial(a, b, "DialEnd", "ANSWER");
    this.#setState(a, 6);
    const answeredAt = Date.now();
    const bridge = this.#bridge(a, b);
    this.#device(target);
    await this.#wait(durations.talkMs ?? this.#between(4000, 30000));
    const callerHangsUp = this.#random() < 0.5;
    this.#emit("HangupRequest", "call,all", [
      ...channelHeaders(callerHangsUp ? a : b),
      ["Cause", "16"],
    ]);
    this.#unbridge(callerHangsUp ? a : b, callerHangsUp ? b : a, bridge);
    this.#cdr(a, b, answeredAt, "ANSWERED");
    this.#hangup(callerHangsUp ? a : b, 16, "Normal Clearing");
    this.#hangup(callerHangsUp ? b : a, 16, "Normal Clearing");
    this.#device(target);
  }

  async #queueCall(answered: boolean): Promise<void> {
    const number = `+1555${this.#between(1_000_000, 9_999_999)}`;
    const a = this.#newChannel("trunk", number, number, "from-trunk", "200");
    this.#setState(a, 4);
    this.#exten(a, "Answer", "");
    this.#setState(a, 6);
    this.#exten(a, "Queue", `${QUEUE},,,,60`);
    this.#queueWaiting.push(a.uniqueid);
    const joinedAt = Date.now();
    this.#emit("QueueCallerJoin", "agent,all", [
      ...channelHeaders(a),
      ["Queue", QUEUE],
      ["Position", String(this.#queueWaiting.length)],
      ["Count", String(this.#queueWaiting.length)],
    ]);
    const leave = () => {
      const position = this.#queueWaiting.indexOf(a.uniqueid) + 1;
      this.#queueWaiting = this.#queueWaiting.filter((u) => u !== a.uniqueid);
      this.#emit("QueueCallerLeave", "agent,all", [
        ...channelHeaders(a),
        ["Queue", QUEUE],
        ["Position", String(position)],
        ["Count", String(this.#queueWaiting.length)],
      ]);
      return position;
    };
    await this.#wait(this.#between(1000, 4000));
    const agent = this.#pick(AGENTS);
    const b = this.#newChannel(agent, "<unknown>", "<unknown>", "from-internal", "s", a.linkedid);
    b.connNum = a.cidNum;
    b.connName = a.cidName;
    b.exten = a.exten;
    b.app = "AppQueue";
    b.appData = "(Outgoing Line)";
    const member: Headers = [
      ["Queue", QUEUE],
      ["Interface", `PJSIP/${agent}`],
      ["MemberName", `PJSIP/${agent}`],
    ];
    const agentEvent = (event: string, extra: Headers) =>
      this.#emit(event, "agent,all", [
        ...channelHeaders(a),
        ...channelHeaders(b).map(([k, v]) => [`Dest${k}`, v] as const),
        ...member,
        ...extra,
      ]);
    agentEvent("AgentCalled", []);
    this.#dial(a, b, "DialBegin");
    this.#setState(b, 5);
    this.#device(agent);
    this.#dial(a, b, "DialState", "RINGING");
    const ringStart = Date.now();
    if (!answered) {
      await this.#wait(this.#between(4000, 12000));
      this.#hangup(b, 16, "Normal Clearing");
      this.#dial(a, b, "DialEnd", "CANCEL");
      this.#device(agent);
      const position = this.#queueWaiting.indexOf(a.uniqueid) + 1;
      this.#emit("QueueCallerAbandon", "agent,all", [
        ...channelHeaders(a),
        ["Queue", QUEUE],
        ["Position", String(position)],
        ["OriginalPosition", "1"],
        ["HoldTime", String(Math.round((Date.now() - joinedAt) / 1000))],
      ]);
      leave();
      this.#cdr(a, undefined, a.createdAt, "ANSWERED");
      this.#hangup(a, 16, "Normal Clearing");
      return;
    }
    await this.#wait(this.#between(1500, 5000));
    b.cidNum = agent;
    b.cidName = EXTENSIONS.find(([e]) => e === agent)?.[1] ?? agent;
    this.#setState(b, 6);
    this.#dial(a, b, "DialEnd", "ANSWER");
    leave();
    const holdTime = String(Math.round((Date.now() - joinedAt) / 1000));
    agentEvent("AgentConnect", [
      ["HoldTime", holdTime],
      ["RingTime", String(Math.round((Date.now() - ringStart) / 1000))],
    ]);
    const answeredAt = Date.now();
    const bridge = this.#bridge(a, b);
    this.#device(agent);
    await this.#wait(this.#between(5000, 40000));
    this.#emit("HangupRequest", "call,all", [...channelHeaders(a), ["Cause", "16"]]);
    this.#unbridge(a, b, bridge);
    agentEvent("AgentComplete", [
      ["HoldTime", holdTime],
      ["TalkTime", String(Math.round((Date.now() - answeredAt) / 1000))],
      ["Reason", "caller"],
    ]);
    this.#cdr(a, b, a.createdAt, "ANSWERED");
    this.#hangup(b, 16, "Normal Clearing");
    this.#hangup(a, 16, "Normal Clearing");
    this.#device(agent);
  }

  /** Endpoint 6005 drops off the network now and then, as phones do. */
  #flapEndpoint(): void {
    const ext = "6005";
    const down = !this.#unreachable.has(ext);
    if (down) this.#unreachable.add(ext);
    else this.#unreachable.delete(ext);
    this.#emit("ContactStatus", "system,all", [
      ["URI", `sip:${ext}@${address(ext)}`],
      ["ContactStatus", down ? "Unreachable" : "Reachable"],
      ["AOR", ext],
      ["EndpointName", ext],
      ["RoundtripUsec", down ? "0" : String(this.#between(800, 4000))],
    ]);
    this.#later(this.#between(30_000, 90_000), () => this.#flapEndpoint());
  }

  #channelsOf(ext: string): Channel[] {
    return [...this.#channels.values()].filter((c) => c.name.startsWith(`PJSIP/${ext}-`));
  }

  #deviceState(ext: string): string {
    if (this.#unreachable.has(ext)) return "Unavailable";
    const channels = this.#channelsOf(ext);
    if (channels.length === 0) return "Not in use";
    return channels.some((c) => c.state === 5) ? "Ringing" : "In use";
  }
}

function channelHeaders(c: Channel): Headers {
  return [
    ["Channel", c.name],
    ["ChannelState", String(c.state)],
    ["ChannelStateDesc", STATE_DESC[c.state] ?? "Unknown"],
    ["CallerIDNum", c.cidNum],
    ["CallerIDName", c.cidName],
    ["ConnectedLineNum", c.connNum],
    ["ConnectedLineName", c.connName],
    ["Language", "en"],
    ["AccountCode", ""],
    ["Context", c.context],
    ["Exten", c.exten],
    ["Priority", String(c.priority)],
    ["Uniqueid", c.uniqueid],
    ["Linkedid", c.linkedid],
  ];
}

function calleeExt(c: Channel): string {
  return c.name.slice("PJSIP/".length, c.name.lastIndexOf("-"));
}

function passesMask(mask: string, classes: string[]): boolean {
  const m = mask.toLowerCase();
  if (m === "off") return false;
  if (m === "on" || /^\d+$/.test(m)) return true;
  const allowed = m.split(",");
  return classes.some((c) => allowed.includes(c));
}

function cdrTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace("T", " ");
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

function address(ext: string): string {
  return ext === "trunk" ? "203.0.113.10:5060" : `192.168.1.${Number(ext) % 100 + 100}:5060`;
}
