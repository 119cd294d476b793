/**
 * The AMI client: one TCP (or TLS) connection that sends actions, correlates their
 * answers by ActionID, and hands events to listeners.
 *
 * @example Events as DAMIData and as lossless messages
 * ```ts
 * import { DAMI } from "../mod.ts";
 * import { startFakeAmi } from "../tests/fake_ami_server.ts";
 * await using pbx = await startFakeAmi(); // a simulated Asterisk 20; use your PBX's address
 *
 * const dami = new DAMI({ hostname: pbx.hostname, port: pbx.port, logger: false });
 * const stored: string[] = [];
 * dami.onMessage((message) => void stored.push(message.headers.map(([k]) => k).join(",")));
 * await dami.connectAndLogin({ username: "dami", secret: "dami-secret", authType: "md5" });
 * const hangup = Promise.withResolvers<string>();
 * dami.on("Hangup", (data) => hangup.resolve(`${data.Channel} ${data.Cause}`));
 * await dami.listen();
 * const session = await pbx.session(0);
 * await session.send("Event: Hangup\r\nChannel: SIP/6001-00000001\r\nCause: 16\r\n\r\n");
 * console.log(await hangup.promise); // SIP/6001-00000001 16 (Cause is a number)
 * console.log(await dami.ping()); // true
 * dami.close();
 * console.log((await dami.closed).reason); // local
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";
import { setImmediate } from "node:timers";
import { type ActionData, encodeAction } from "./action.ts";
import { type DAMIData, toDAMIData } from "./data.ts";
import {
  DAMIActionError,
  DAMIClosedError,
  DAMIConnectError,
  type DAMIError,
  DAMIEventsDroppedError,
  DAMIInvalidInputError,
  DAMILoginError,
  DAMIMessageTooLargeError,
  DAMIProtocolError,
  DAMIStateError,
  DAMITimeoutError,
} from "./errors.ts";
import { type AmiMessage, headerValue } from "./message.ts";
import { AmiParser, DEFAULT_MAX_MESSAGE_BYTES, type EventBytesSink } from "./parser.ts";

/** Where log lines go; `console` fits. */
export interface DAMILogger {
  /** Detail for debugging (e.g. a response nobody waited for). */
  debug(message: string, ...args: unknown[]): void;
  /** Normal operation. */
  info(message: string, ...args: unknown[]): void;
  /** Something odd that DAMI handled (e.g. a list whose `ListItems` disagrees). */
  warn(message: string, ...args: unknown[]): void;
  /** Something lost or broken (a protocol error, events dropped, a throwing listener). */
  error(message: string, ...args: unknown[]): void;
}

/**
 * Resolves after the event loop has run the tasks that were waiting. The socket reader
 * calls it after each read: a read of a socket whose data is already buffered completes
 * without a turn of the event loop, so a reader that only awaited its reads kept other
 * tasks (`setImmediate`, other sockets' callbacks, such as the database driver's) waiting
 * for as long as the peer flooded: up to a second for the daemon's commits in a burst.
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Options of {@linkcode DAMI}. */
export interface DAMIOptions {
  /** Asterisk host. */
  hostname: string;
  /** AMI port.
   * @default {5038} */
  port?: number;
  /** `true` logs to the console, `false` is silent, or pass a logger.
   * @default {false} */
  logger?: boolean | DAMILogger;
  /** Connect with TLS (Asterisk `tlsenable`, usually port 5039).
   * @default {false} */
  tls?: boolean;
  /** PEM CA certificates to trust for TLS, besides the system store. */
  caCerts?: string[];
  /** Give up connecting after this long.
   * @default {10000} */
  connectTimeoutMs?: number;
  /** Default time an action may take to be answered completely.
   * @default {10000} */
  actionTimeoutMs?: number;
  /** Events held while nobody called `listen()`; past it they are dropped and `listen()` says so.
   * @default {10000} */
  maxBufferedEvents?: number;
  /** Largest message accepted from the server (a cap on memory).
   * @default {4194304} */
  maxMessageBytes?: number;
  /** Size of the socket read buffer. 64 KiB measured fastest with the least memory (bench/).
   * @default {65536} */
  readBufferBytes?: number;
  /**
   * For recorders: offered every event as its wire bytes before it is parsed (see
   * {@linkcode EventBytesSink}). An event the sink takes (returns true) is counted but
   * neither parsed nor delivered to `onMessage`, `on()` or an action; one it declines
   * is parsed and delivered as usual. The sink must decline events whose answers or
   * listeners the application needs (an event with an `ActionID`, for instance).
   */
  eventBytes?: EventBytesSink;
}

/** Credentials and login options of {@linkcode DAMI.connectAndLogin}. */
export interface DAMILoginOptions {
  /** The manager user (a `[section]` of Asterisk's manager.conf). */
  username: string;
  /** Its `secret`. Never logged, never in an error message. */
  secret: string;
  /**
   * `md5` asks for a `Challenge` and sends `Key = md5(challenge + secret)`, so the
   * secret never crosses the wire; `plain` sends it as `Secret` (the original DAMI's
   * behaviour, one round trip less; use it over TLS or loopback).
   * @default {"plain"} */
  authType?: "plain" | "md5";
  /** The `Events` event mask: `on`, `off`, or a class list such as `call,agent`.
   * @default {"on"} */
  events?: string;
}

/** Options of one action. */
export interface ActionOptions {
  /** Time allowed for the complete answer (response, list items, OriginateResponse). */
  timeoutMs?: number;
}

/** The complete answer to an action, as lossless messages. */
export interface ActionAnswer {
  /** The ActionID the action was sent with (given or generated). */
  actionId: string;
  /** The `Response:` message. */
  response: AmiMessage;
  /** List items (`EventList: start` actions), or the `OriginateResponse` of an async Originate. */
  items: AmiMessage[];
  /** The event with `EventList: Complete`, for list actions. */
  complete?: AmiMessage;
}

/** Why and how the connection ended. */
export interface DAMICloseInfo {
  /**
   * `eof`: the server closed the connection; `error`: a socket error; `local`:
   * `close()`; `logoff`: after `logoff()`; `protocol`: the server broke the protocol
   * (see `error`).
   */
  reason: "eof" | "error" | "local" | "logoff" | "protocol";
  /** What happened, for a log line. */
  message: string;
  /** Bytes of an unfinished message discarded at close (a truncated last event is never delivered). */
  discardedBytes: number;
  /**
   * With reason `protocol`: what the server broke. A {@linkcode DAMIMessageTooLargeError}
   * means one message was dropped unseen (past `maxMessageBytes`): a loss to record.
   */
  error?: DAMIProtocolError;
}

/** A listener of events. */
export type DAMIListener = (data: DAMIData) => void;

/** The callback form of {@linkcode DAMI.to}: receives the same answer the promise resolves to. */
export type DAMICallback = (result: DAMIData[]) => void;

interface Pending {
  action: string;
  actionId: string;
  resolve: (answer: ActionAnswer) => void;
  reject: (error: DAMIError) => void;
  /** `performance.now()` past which the action times out. */
  deadline: number;
  timeoutMs: number;
  response?: AmiMessage;
  items: AmiMessage[];
  /** Waiting for list items after `EventList: start`. */
  list: boolean;
  /** Async Originate: waiting for `OriginateResponse`. */
  originate: boolean;
}

const SILENT: DAMILogger = { debug() {}, info() {}, warn() {}, error() {} };

/** A client of the Asterisk Manager Interface. */
export class DAMI {
  #options: Required<Omit<DAMIOptions, "caCerts" | "logger" | "eventBytes">> & {
    caCerts?: string[];
  };
  #eventBytes: EventBytesSink | undefined;
  #log: DAMILogger;
  #conn: Deno.Conn | undefined;
  #parser: AmiParser | undefined;
  #pending = new Map<string, Pending>();
  #idPrefix = `dami-${crypto.randomUUID().slice(0, 8)}-`;
  #idCounter = 0;
  #listeners = new Map<string, Set<DAMIListener>>();
  /** `once` wrapper → the listener it wraps, so `off(listener)` finds it. */
  #onceWrapped = new WeakMap<DAMIListener, DAMIListener>();
  #messageHooks: Array<(message: AmiMessage) => void> = [];
  #listening = false;
  #held: AmiMessage[] = [];
  #droppedBeforeListen = 0;
  #writing: Promise<void> = Promise.resolve();
  /** The write waiting for the one in flight; later actions join it. */
  #batch: { conn: Deno.Conn; chunks: Uint8Array[]; written: Promise<void> } | undefined;
  #closed: Promise<DAMICloseInfo> | undefined;
  #resolveClosed: ((info: DAMICloseInfo) => void) | undefined;
  #closeInfo: DAMICloseInfo | undefined;
  #loggingOff = false;
  /** Cancels the `connect()` in progress. */
  #connecting: AbortController | undefined;
  /** The timer of the earliest action deadline, and that deadline. */
  #timeouts: ReturnType<typeof setTimeout> | undefined;
  #timeoutsAt = Infinity;

  /** A client for `options.hostname`; nothing happens until {@linkcode DAMI.connect}. */
  constructor(options: DAMIOptions) {
    this.#options = {
      hostname: options.hostname,
      port: options.port ?? 5038,
      tls: options.tls ?? false,
      caCerts: options.caCerts,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      actionTimeoutMs: options.actionTimeoutMs ?? 10_000,
      maxBufferedEvents: options.maxBufferedEvents ?? 10_000,
      maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      readBufferBytes: options.readBufferBytes ?? 64 * 1024,
    };
    this.#eventBytes = options.eventBytes;
    this.#log = options.logger === true
      ? console
      : options.logger === false || options.logger === undefined
      ? SILENT
      : options.logger;
  }

  /**
   * The underlying socket, while connected (kept from the original DAMI). Reading it
   * steals bytes from DAMI's reader and desynchronises the stream; writing to it can
   * interleave with an action being written; closing it ends the session without a
   * reason. Use it to inspect addresses (`conn.remoteAddr`) or socket options only.
   * Send with {@linkcode DAMI.to} and close with {@linkcode DAMI.close}.
   */
  get conn(): Deno.Conn | undefined {
    return this.#conn;
  }

  /** The server's greeting, e.g. `Asterisk Call Manager/9.0.0`. */
  get banner(): string | undefined {
    return this.#parser?.banner;
  }

  /** True between a successful connect and the end of the connection. */
  get connected(): boolean {
    return this.#conn !== undefined && this.#closeInfo === undefined;
  }

  /** Actions sent and not yet settled. */
  get pendingActions(): number {
    return this.#pending.size;
  }

  /** Events received in this connection so far. */
  get eventCount(): number {
    return this.#parser?.eventCount ?? 0;
  }

  /** Settles when the connection ends, with why. */
  get closed(): Promise<DAMICloseInfo> {
    if (this.#closed === undefined) {
      return Promise.resolve({ reason: "local", message: "never connected", discardedBytes: 0 });
    }
    return this.#closed;
  }

  /**
   * Registers a hook that receives every parsed message (events and responses) in
   * arrival order, synchronously from the reader, before correlation and dispatch.
   * This is the lossless stream the daemon stores. Returns a function that removes it.
   */
  onMessage(hook: (message: AmiMessage) => void): () => void {
    this.#messageHooks.push(hook);
    return () => {
      this.#messageHooks = this.#messageHooks.filter((h) => h !== hook);
    };
  }

  /**
   * Opens the connection (no login). Rejects with {@linkcode DAMIConnectError} when no
   * connection can be opened (refused, unreachable, TLS, `connectTimeoutMs`), with
   * {@linkcode DAMIStateError} while another `connect()` is pending or the client is
   * connected, and with {@linkcode DAMIClosedError} when `close()` is called meanwhile
   * (`close()` wins: no socket is kept).
   */
  async connect(): Promise<void> {
    if (this.#connecting !== undefined) {
      throw new DAMIStateError("connect() is already in progress; await it instead");
    }
    if (this.connected) {
      throw new DAMIStateError("already connected; close() first or create a new DAMI");
    }
    const { hostname, port, tls, caCerts, connectTimeoutMs } = this.#options;
    const cancel = new AbortController();
    this.#connecting = cancel;
    const timeout = AbortSignal.timeout(connectTimeoutMs);
    const signal = AbortSignal.any([cancel.signal, timeout]);
    // An attempt in flight may ignore the signal (TLS takes none): the race below stops
    // waiting for it, and a socket that still arrives is closed at once.
    const connecting: Promise<Deno.Conn> = tls
      ? Deno.connectTls({ hostname, port, caCerts }).then(handshaken)
      : Deno.connect({ hostname, port, signal });
    let conn: Deno.Conn;
    try {
      conn = await untilAborted(connecting, signal);
    } catch (error) {
      connecting.then((late) => late.close(), () => {});
      if (cancel.signal.aborted) throw abandoned(hostname, port);
      if (timeout.aborted) {
        throw new DAMIConnectError(
          `connecting to ${hostname}:${port} took longer than ${connectTimeoutMs} ms`,
          true,
        );
      }
      throw new DAMIConnectError(
        `cannot connect to ${hostname}:${port}: ${(error as Error).message}`,
        false,
        { cause: error },
      );
    } finally {
      this.#connecting = undefined;
    }
    if (cancel.signal.aborted) {
      conn.close();
      throw abandoned(hostname, port);
    }
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    this.#conn = conn;
    this.#closeInfo = undefined;
    this.#loggingOff = false;
    this.#parser = new AmiParser({
      maxMessageBytes: this.#options.maxMessageBytes,
      eventBytes: this.#eventBytes,
    });
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#readLoop(conn, this.#parser);
  }

  /**
   * Connects and logs in. Refused credentials reject with {@linkcode DAMILoginError}
   * and the connection is closed (Asterisk closes it too).
   */
  async connectAndLogin(login: DAMILoginOptions): Promise<DAMIData> {
    await this.connect();
    try {
      const fields: ActionData = { Username: login.username };
      if (login.authType === "md5") {
        const challenge = await this.toMessages("Challenge", { AuthType: "MD5" });
        const value = headerValue(challenge.response, "Challenge");
        if (value === undefined) throw new DAMILoginError("the server sent no MD5 challenge");
        fields.AuthType = "MD5";
        fields.Key = createHash("md5").update(value + login.secret).digest("hex");
      } else {
        fields.Secret = login.secret;
      }
      if (login.events !== undefined) fields.Events = login.events;
      const answer = await this.toMessages("Login", fields);
      return toDAMIData(answer.response);
    } catch (error) {
      this.close();
      if (error instanceof DAMIActionError) {
        const message = headerValue(error.response, "Message") ?? "refused";
        throw new DAMILoginError(
          `login as "${login.username}" to ${this.#options.hostname}:${this.#options.port} failed: ${message}`,
        );
      }
      throw error;
    }
  }

  /**
   * Starts dispatching events to listeners. Events that arrived before are delivered
   * first, in order. Rejects (after delivering) if some were dropped past `maxBufferedEvents`.
   */
  listen(): Promise<void> {
    this.#listening = true;
    const held = this.#held;
    this.#held = [];
    for (const message of held) this.#dispatch(message);
    const dropped = this.#droppedBeforeListen;
    this.#droppedBeforeListen = 0;
    if (dropped > 0) {
      return Promise.reject(
        new DAMIEventsDroppedError(
          `${dropped} events arrived before listen() past the bound of ${this.#options.maxBufferedEvents} and were dropped; call listen() sooner or raise maxBufferedEvents`,
          dropped,
        ),
      );
    }
    return Promise.resolve();
  }

  /** Calls `listener` for every event named `event` (case-insensitive); `"*"` for all. */
  on(event: string, listener: DAMIListener): void {
    const key = event.toLowerCase();
    let set = this.#listeners.get(key);
    if (set === undefined) this.#listeners.set(key, set = new Set());
    set.add(listener);
  }

  /** Removes a listener added with `on` or `once`. */
  off(event: string, listener: DAMIListener): void {
    const set = this.#listeners.get(event.toLowerCase());
    if (set === undefined || set.delete(listener)) return;
    for (const registered of set) {
      if (this.#onceWrapped.get(registered) === listener) {
        set.delete(registered);
        return;
      }
    }
  }

  /** Like `on`, for the next such event only. */
  once(event: string, listener: DAMIListener): void {
    const wrapper: DAMIListener = (data) => {
      this.off(event, wrapper);
      listener(data);
    };
    this.#onceWrapped.set(wrapper, listener);
    this.on(event, wrapper);
  }

  /**
   * Sends an action and resolves to its whole answer: the response, then for list
   * actions every item and the `...Complete` event, for an async Originate the
   * `OriginateResponse`. `Response: Error` rejects with {@linkcode DAMIActionError}.
   * Both `to(action, data, options)` and the original `to(action, data, cb, options)`
   * work; `cb`, when given, also receives the answer.
   *
   * @example Options without a callback
   * ```ts
   * import { DAMI } from "../mod.ts";
   * import { startFakeAmi } from "../tests/fake_ami_server.ts";
   * await using pbx = await startFakeAmi(); // a simulated Asterisk 20
   * const dami = new DAMI({ hostname: pbx.hostname, port: pbx.port });
   * await dami.connectAndLogin({ username: "dami", secret: "dami-secret" });
   * const [response, ...peers] = await dami.to("SIPPeers", {}, { timeoutMs: 5000 });
   * console.log(response.Response, peers.length); // Success 4 (3 PeerEntry, PeerlistComplete)
   * dami.close();
   * ```
   */
  to(action: string, data?: ActionData, options?: ActionOptions): Promise<DAMIData[]>;
  /** The original DAMI form: `cb` also receives the answer. */
  to(
    action: string,
    data?: ActionData,
    cb?: DAMICallback,
    options?: ActionOptions,
  ): Promise<DAMIData[]>;
  async to(
    action: string,
    data: ActionData = {},
    cbOrOptions?: DAMICallback | ActionOptions,
    options: ActionOptions = {},
  ): Promise<DAMIData[]> {
    let cb: DAMICallback | undefined;
    if (typeof cbOrOptions === "function") cb = cbOrOptions;
    else if (cbOrOptions !== undefined) options = cbOrOptions;
    const answer = await this.toMessages(action, data, options);
    const result = [answer.response, ...answer.items];
    if (answer.complete !== undefined) result.push(answer.complete);
    const converted = result.map(toDAMIData);
    if (action.toLowerCase() === "command" && !("Output" in converted[0])) {
      converted[0].Output = [];
    }
    cb?.(converted);
    return converted;
  }

  /** Like {@linkcode DAMI.to}, resolving to the lossless messages. */
  toMessages(
    action: string,
    data: ActionData = {},
    options: ActionOptions = {},
  ): Promise<ActionAnswer> {
    const conn = this.#conn;
    if (conn === undefined || this.#closeInfo !== undefined) {
      return Promise.reject(new DAMIClosedError(`cannot send ${action}: not connected`));
    }
    let actionId: string | undefined;
    for (const [key, value] of Object.entries(data)) {
      if (key.toLowerCase() === "actionid" && value !== undefined) actionId = String(value);
    }
    if (actionId === undefined) {
      // Skip ids a caller chose themselves that happen to equal a generated one.
      do actionId = this.#idPrefix + (++this.#idCounter).toString(36); while (
        this.#pending.has(actionId)
      );
    } else if (this.#pending.has(actionId)) {
      return Promise.reject(
        new DAMIInvalidInputError(`ActionID "${actionId}" is already in use by a pending action`),
      );
    }
    let bytes: Uint8Array;
    try {
      bytes = encodeAction(action, data, actionId);
    } catch (error) {
      return Promise.reject(error);
    }
    const originate = action.toLowerCase() === "originate" && isTrue(data.Async ?? data.async);
    let timeoutMs = options.timeoutMs ?? this.#options.actionTimeoutMs;
    if (originate && options.timeoutMs === undefined) {
      // The OriginateResponse comes after the callee answers or the dial times out.
      timeoutMs += Number(data.Timeout ?? data.timeout ?? 30_000) || 30_000;
    }
    const id = actionId;
    return new Promise<ActionAnswer>((resolve, reject) => {
      const pending: Pending = {
        action,
        actionId: id,
        resolve,
        reject,
        items: [],
        list: false,
        originate,
        deadline: performance.now() + timeoutMs,
        timeoutMs,
      };
      this.#pending.set(id, pending);
      this.#armTimeouts(pending.deadline);
      this.#write(conn, bytes).catch((error) => {
        this.#settle(
          pending,
          new DAMIClosedError(`cannot send ${action}: ${(error as Error).message}`, {
            cause: error,
          }),
        );
      });
    });
  }

  /** Sends `Ping`; true when `Pong` came back in time, false otherwise. Never rejects. */
  async ping(options: ActionOptions = {}): Promise<boolean> {
    try {
      const answer = await this.toMessages("Ping", {}, options);
      return headerValue(answer.response, "Response")?.toLowerCase() === "success";
    } catch {
      return false;
    }
  }

  /** Sends `Logoff`, waits for `Goodbye` and the server closing the socket, then closes. */
  async logoff(options: ActionOptions = { timeoutMs: 2000 }): Promise<void> {
    if (!this.connected) return;
    this.#loggingOff = true;
    try {
      await this.toMessages("Logoff", {}, options);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.closed,
        new Promise((resolve) => (timer = setTimeout(resolve, options.timeoutMs ?? 2000))),
      ]);
      clearTimeout(timer);
    } catch {
      // Already closed or no Goodbye: close below regardless.
    } finally {
      this.#end("logoff", "logged off", 0);
    }
  }

  /**
   * Closes the connection now, or abandons a pending `connect()`. Pending actions
   * reject with {@linkcode DAMIClosedError}.
   */
  close(): void {
    this.#connecting?.abort();
    this.#end("local", "closed by the client", 0);
  }

  async #readLoop(conn: Deno.Conn, parser: AmiParser): Promise<void> {
    const buf = new Uint8Array(this.#options.readBufferBytes);
    const messages: AmiMessage[] = [];
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) {
          this.#end(
            this.#loggingOff ? "logoff" : "eof",
            "the server closed the connection",
            parser.bufferedBytes,
          );
          return;
        }
        messages.length = 0;
        let failure: unknown;
        try {
          parser.push(buf.subarray(0, n), messages);
        } catch (error) {
          failure = error;
        }
        // Messages completed before an oversized one are whole: they are delivered.
        for (let i = 0; i < messages.length; i++) {
          // A hook or listener may have closed the connection: the rest of the read is dropped.
          if (this.#closeInfo !== undefined) return;
          this.#receive(messages[i]);
        }
        if (failure !== undefined) throw failure;
        await yieldToEventLoop();
      }
    } catch (error) {
      if (this.#closeInfo !== undefined) return;
      if (error instanceof DAMIProtocolError) {
        this.#log.error(`AMI protocol error from ${this.#options.hostname}: ${error.message}`);
        const discarded = error instanceof DAMIMessageTooLargeError
          ? error.discardedBytes
          : parser.bufferedBytes;
        this.#end("protocol", error.message, discarded, error);
      } else {
        this.#end("error", (error as Error).message, parser.bufferedBytes);
      }
    }
  }

  #receive(message: AmiMessage): void {
    const hooks = this.#messageHooks;
    for (let i = 0; i < hooks.length; i++) {
      try {
        hooks[i](message);
      } catch (error) {
        this.#log.error(`onMessage hook threw: ${(error as Error).message}`);
      }
    }
    if (message.kind === "response") {
      const id = headerValue(message, "ActionID");
      const pending = id === undefined ? undefined : this.#pending.get(id);
      if (pending === undefined || pending.response !== undefined) {
        this.#log.debug(`response for no pending action (ActionID ${id ?? "none"})`);
        return;
      }
      this.#onResponse(pending, message);
      return;
    }
    if (message.kind === "event" && this.#pending.size > 0) {
      const id = headerValue(message, "ActionID");
      const pending = id === undefined ? undefined : this.#pending.get(id);
      if (pending !== undefined && pending.response !== undefined) {
        if (pending.list) {
          if (isListEnd(message)) this.#completeList(pending, message);
          else pending.items.push(message);
          return;
        }
        if (pending.originate && headerValue(message, "Event") === "OriginateResponse") {
          pending.items.push(message);
          this.#settle(pending, undefined);
          return;
        }
      }
    }
    if (message.kind !== "event") {
      this.#log.warn(`message that is neither event nor response ignored by dispatch`);
      return;
    }
    if (this.#listening) this.#dispatch(message);
    else if (this.#held.length < this.#options.maxBufferedEvents) this.#held.push(message);
    else {
      if (this.#droppedBeforeListen === 0) {
        this.#log.error(
          `more than ${this.#options.maxBufferedEvents} events before listen(): dropping until it is called`,
        );
      }
      this.#droppedBeforeListen++;
    }
  }

  #onResponse(pending: Pending, message: AmiMessage): void {
    pending.response = message;
    const response = headerValue(message, "Response")?.toLowerCase();
    if (response === "error") {
      const text = headerValue(message, "Message") ?? "Response: Error";
      this.#settle(pending, new DAMIActionError(pending.action, text, message));
      return;
    }
    // res_fax answers `EventList: Start`; everything else `start`.
    if (headerValue(message, "EventList")?.toLowerCase() === "start") {
      pending.list = true;
      return;
    }
    if (pending.originate && response === "success") return;
    this.#settle(pending, undefined);
  }

  #completeList(pending: Pending, complete: AmiMessage): void {
    const listItems = headerValue(complete, "ListItems");
    if (listItems !== undefined && Number(listItems) !== pending.items.length) {
      this.#log.warn(
        `${pending.action} (ActionID ${pending.actionId}): ListItems says ${listItems}, received ${pending.items.length}`,
      );
    }
    this.#settle(pending, undefined, complete);
  }

  /**
   * One timer for every pending action, set for the earliest deadline: a timer per
   * action cost a timer op and a map entry each, a third of the time of a burst of
   * 10,000 actions.
   */
  #armTimeouts(deadline: number): void {
    if (deadline >= this.#timeoutsAt) return;
    if (this.#timeouts !== undefined) clearTimeout(this.#timeouts);
    this.#timeoutsAt = deadline;
    this.#timeouts = setTimeout(
      () => this.#expire(),
      Math.max(0, Math.ceil(deadline - performance.now())),
    );
  }

  #expire(): void {
    this.#timeouts = undefined;
    this.#timeoutsAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const pending of [...this.#pending.values()]) {
      if (pending.deadline <= now) {
        this.#settle(
          pending,
          new DAMITimeoutError(
            `${pending.action} (ActionID ${pending.actionId}) got no complete answer within ${pending.timeoutMs} ms`,
            pending.actionId,
          ),
        );
      } else if (pending.deadline < next) next = pending.deadline;
    }
    if (next !== Infinity) this.#armTimeouts(next);
  }

  /** The one place a pending action ends: exactly once, entry freed, timer cleared when idle. */
  #settle(pending: Pending, error: DAMIError | undefined, complete?: AmiMessage): void {
    if (this.#pending.get(pending.actionId) !== pending) return;
    this.#pending.delete(pending.actionId);
    if (this.#pending.size === 0 && this.#timeouts !== undefined) {
      clearTimeout(this.#timeouts);
      this.#timeouts = undefined;
      this.#timeoutsAt = Infinity;
    }
    if (error !== undefined) pending.reject(error);
    else {
      pending.resolve({
        actionId: pending.actionId,
        response: pending.response!,
        items: pending.items,
        complete,
      });
    }
  }

  #dispatch(message: AmiMessage): void {
    const listeners = this.#listeners;
    if (listeners.size === 0) return;
    // An event's first header is `Event` (that is what made it an event).
    const name = message.headers[0][1];
    const all = listeners.get("*");
    // Only "*" registered: no need to lowercase every event's name.
    const specific = listeners.size > (all === undefined ? 0 : 1)
      ? listeners.get(name.toLowerCase())
      : undefined;
    if ((specific === undefined || specific.size === 0) && (all === undefined || all.size === 0)) {
      return;
    }
    const data = toDAMIData(message);
    if (specific !== undefined && specific.size > 0) this.#call(specific, data, name);
    if (all !== undefined && all.size > 0) this.#call(all, data, name);
  }

  #call(listeners: Set<DAMIListener>, data: DAMIData, name: string): void {
    // The listeners registered now, even if one adds or removes listeners while they run.
    const snapshot = listeners.size === 1 ? [listeners.values().next().value!] : [...listeners];
    for (let i = 0; i < snapshot.length; i++) {
      try {
        snapshot[i](data);
      } catch (error) {
        this.#log.error(`listener for ${name} threw: ${(error as Error).message}`);
      }
    }
  }

  #write(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
    // Writes are chained so two actions never interleave on a partial write. Actions
    // queued while a write is in flight go out together in the next one: a burst of
    // 10k actions costs a few writes, not 10k.
    const batch = this.#batch;
    if (batch !== undefined && batch.conn === conn) {
      batch.chunks.push(bytes);
      return batch.written;
    }
    const next: { conn: Deno.Conn; chunks: Uint8Array[]; written: Promise<void> } = {
      conn,
      chunks: [bytes],
      written: this.#writing.then(async () => {
        if (this.#batch === next) this.#batch = undefined;
        const data = next.chunks.length === 1 ? next.chunks[0] : concatBytes(next.chunks);
        let offset = 0;
        while (offset < data.length) offset += await conn.write(data.subarray(offset));
      }),
    };
    this.#batch = next;
    this.#writing = next.written.catch(() => {});
    return next.written;
  }

  #end(
    reason: DAMICloseInfo["reason"],
    message: string,
    discardedBytes: number,
    cause?: DAMIProtocolError,
  ): void {
    if (this.#closeInfo !== undefined) return;
    const info: DAMICloseInfo = cause === undefined
      ? { reason, message, discardedBytes }
      : { reason, message, discardedBytes, error: cause };
    this.#closeInfo = info;
    try {
      this.#conn?.close();
    } catch {
      // Already closed by the peer.
    }
    const error = new DAMIClosedError(`connection closed (${reason}): ${message}`);
    for (const pending of [...this.#pending.values()]) this.#settle(pending, error);
    this.#resolveClosed?.(info);
  }
}

/** The TLS connection once its handshake is done, so certificate errors surface at connect. */
async function handshaken(conn: Deno.TlsConn): Promise<Deno.TlsConn> {
  try {
    await conn.handshake();
    return conn;
  } catch (error) {
    conn.close();
    throw error;
  }
}

function abandoned(hostname: string, port: number): DAMIClosedError {
  return new DAMIClosedError(`connecting to ${hostname}:${port} abandoned: close() was called`);
}

/** `promise`, or a rejection as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function concatBytes(chunks: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function isTrue(value: unknown): boolean {
  if (value === true) return true;
  if (typeof value !== "string") return false;
  const v = value.toLowerCase();
  return v === "true" || v === "yes" || v === "1" || v === "on";
}

function isListEnd(message: AmiMessage): boolean {
  return headerValue(message, "EventList")?.toLowerCase() === "complete";
}
