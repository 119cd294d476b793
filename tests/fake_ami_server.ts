/**
 * A fake Asterisk 20 Manager Interface server for tests: it behaves as the recorded
 * conversations in `tests/fixtures/` show, and can misbehave on purpose.
 *
 * What it does like Asterisk 20.20.1 (main/manager.c):
 * - greets with `Asterisk Call Manager/9.0.0\r\n`;
 * - before login answers only Login, Logoff and Challenge; anything else gets
 *   `Response: Error` / `Message: Permission denied`;
 * - Login plain (`Secret`) or MD5 (`Challenge` with `AuthType: MD5` gives
 *   `Challenge: <digits>`, then `Key` = md5(challenge + secret)); success answers
 *   `Message: Authentication accepted` with `FullyBooted` (no ActionID) and
 *   `SuccessfulAuth` in the same write; failure waits `authFailDelayMs`, answers
 *   `Message: Authentication failed` and closes; `allowMultipleLogin: false` gives
 *   `Login Already In Use`;
 * - Ping answers `Ping: Pong` and `Timestamp`, no `Message`; Logoff answers
 *   `Response: Goodbye` / `Thanks for all the fish.` and closes;
 * - Command answers modern `Output:` lines, or Asterisk 13's `Response: Follows` body
 *   ending in `--END COMMAND--` (`commandStyle: "follows"`);
 * - list and status actions (SIPPeers, CoreShowChannels, QueueStatus, Status,
 *   DeviceStateList, DBGet, CoreSettings, ...) are answered with the bytes recorded in
 *   the fixtures (ActionID substituted); PJSIPShowEndpoints with a synthesized list;
 *   an unknown action with Asterisk's `Invalid/unknown command` error.
 *
 * Scripting and fault injection: `handle(action, handler)` overrides any action;
 * `session.send()` pushes any bytes; `setPingMode("silent")` keeps the connection up
 * but stops answering Ping (half-open peer); `session.pauseReading()` stops reading the
 * client; `session.cut(text)` sends a partial message and closes; `chunking` splits every
 * write into random or 1-byte pieces; `writeTimeoutMs` closes a session whose client
 * does not read (Asterisk's `writetimeout`); `restart()` sends `Shutdown`, drops every
 * session and refuses connections for a while; `replay` plays a fixture's server bytes
 * with their real chunk boundaries (or re-chunked) in answer to the client's writes.
 *
 * @example
 * ```ts ignore
 * import { startFakeAmi } from "./fake_ami_server.ts";
 * import { DAMI } from "../mod.ts";
 * await using server = await startFakeAmi({ authFailDelayMs: 0 });
 * server.handle("Originate", (action) => action.respond("Success", { Message: "Originate successfully queued" }));
 * const dami = new DAMI({ hostname: server.hostname, port: server.port });
 * await dami.connectAndLogin({ username: "dami", secret: "dami-secret" });
 * const session = await server.session(0);
 * await session.send("Event: Hangup\r\nChannel: SIP/100-00000001\r\n\r\n");
 * dami.close();
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";
import {
  byteChunks,
  concatBytes,
  type FixtureName,
  loadFixture,
  messageTexts,
  rechunk,
  seededRandom,
} from "./fixtures.ts";
import { type AmiFields, amiTimestamp, formatAmiMessage } from "../demo/ami_wire.ts";

/** How the server answers `Ping`: normally, not at all (half-open peer), or by closing. */
export type PingMode = "pong" | "silent" | "close";

/** How every write is split into separate socket writes. */
export interface Chunking {
  /** `whole`: one write per send; `random`: pieces of 1..maxChunk bytes; `bytes`: 1-byte pieces.
   * @default {"whole"} */
  mode: "whole" | "random" | "bytes";
  /** Seed of the PRNG for `random` (each session derives its own from it).
   * @default {1} */
  seed?: number;
  /** Largest random piece.
   * @default {64} */
  maxChunk?: number;
}

/** Replaying a recorded conversation instead of the built-in behaviour. */
export interface ReplayOptions {
  /** Which fixture's `in` bytes to play. */
  fixture: FixtureName;
  /** `real`: the recorded TCP reads, one write each; `random` / `bytes`: re-chunked.
   * @default {"real"} */
  chunking?: "real" | "random" | "bytes";
  /** Seed for `random`.
   * @default {1} */
  seed?: number;
  /** Largest random piece.
   * @default {64} */
  maxChunk?: number;
  /**
   * Replace the fixture's ActionIDs with the ones the client actually sent (matched by
   * the order of writes), so a client that generates its own ids gets its answers.
   * With the fixture's ids the bytes are unchanged.
   * @default {true} */
  rewriteActionIds?: boolean;
}

/** Options of {@linkcode startFakeAmi}. */
export interface FakeAmiOptions {
  /** Interface to listen on.
   * @default {"127.0.0.1"} */
  hostname?: string;
  /** Port; 0 picks a free one.
   * @default {0} */
  port?: number;
  /** Greeting line, without CRLF.
   * @default {"Asterisk Call Manager/9.0.0"} */
  banner?: string;
  /** The AMI user.
   * @default {"dami"} */
  username?: string;
  /** The AMI user's secret.
   * @default {"dami-secret"} */
  secret?: string;
  /** The MD5 challenge handed out (Asterisk reuses one per session).
   * @default {"482454724"} */
  challenge?: string;
  /** Delay before a refused login is answered (Asterisk sleeps 1 s); use 0 in tests.
   * @default {1000} */
  authFailDelayMs?: number;
  /** `false`: a second login of a user already logged in gets `Login Already In Use`.
   * @default {true} */
  allowMultipleLogin?: boolean;
  /** `modern` (Asterisk 14+: `Output:` headers) or `follows` (Asterisk 13: raw body).
   * @default {"modern"} */
  commandStyle?: "modern" | "follows";
  /** CLI command → output lines, added to the ones recorded in `commands.jsonl`. */
  commands?: Record<string, string[]>;
  /** How Ping is answered.
   * @default {"pong"} */
  pingMode?: PingMode;
  /** How writes are split.
   * @default {{ mode: "whole" }} */
  chunking?: Chunking;
  /** Close a session whose write to the client takes longer than this (0: never).
   * @default {0} */
  writeTimeoutMs?: number;
  /** Keep every received action in `session.actions` (turn off for floods of millions).
   * @default {true} */
  recordActions?: boolean;
  /** Delay between an async Originate's response and its `OriginateResponse`.
   * @default {5} */
  originateDelayMs?: number;
  /** Serve TLS with this PEM certificate and key. */
  tls?: { cert: string; key: string };
  /** Replay a fixture instead of behaving like Asterisk. */
  replay?: ReplayOptions;
}

/** One action as the server received it. */
export interface FakeAction {
  /** The `Action` header's value as sent (`""` when missing). */
  readonly name: string;
  /** The `ActionID`, when the client sent one. */
  readonly actionId: string | undefined;
  /** Every header in order, original case. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The exact bytes of the action, terminating blank line included. */
  readonly raw: Uint8Array;
  /** First value of `key`, case-insensitive. */
  get(key: string): string | undefined;
  /** Every value of `key`, in order. */
  getAll(key: string): string[];
  /** Text of a response to this action: `Response`, `ActionID` (when sent), then `fields`. */
  respond(response: string, fields?: AmiFields): string;
  /** Text of an event carrying this action's `ActionID` (a list item, `OriginateResponse`). */
  event(name: string, fields?: AmiFields): string;
}

/** Headers of a message to send: an object (arrays repeat the key) or ordered pairs. */
export type { AmiFields };
export { formatAmiMessage };

/**
 * Answers one action. Return the text to send (sent in order with the answers to the
 * other actions of the same read), or nothing to stay silent; use `session` to send
 * later events, close, or misbehave.
 */
export type FakeAmiHandler = (
  action: FakeAction,
  session: FakeAmiSession,
) => string | undefined | void | Promise<string | undefined | void>;

/** A running fake server. */
export interface FakeAmi {
  /** Address clients connect to. */
  readonly hostname: string;
  /** Port clients connect to (stays the same across `restart()`). */
  readonly port: number;
  /** Every session accepted so far, in order (closed ones included). */
  readonly sessions: readonly FakeAmiSession[];
  /** Connections accepted so far. */
  readonly connections: number;
  /** Sessions still connected. */
  readonly openSessions: FakeAmiSession[];
  /** The `index`-th session (0-based), waiting for that connection if needed. */
  session(index: number): Promise<FakeAmiSession>;
  /** Overrides how `action` (case-insensitive) is answered; `undefined` restores the default. */
  handle(action: string, handler: FakeAmiHandler | undefined): void;
  /** Changes how Ping is answered, for every session. */
  setPingMode(mode: PingMode): void;
  /** Changes how writes are split, for every session. */
  setChunking(chunking: Chunking): void;
  /** Sends `text` to every logged-in session whose event mask is not `off`. */
  broadcast(text: string | Uint8Array): Promise<void>;
  /** Stops accepting: new connections are refused until `startListening()`. */
  stopListening(): void;
  /** Accepts connections again, on the same port. */
  startListening(): void;
  /**
   * A PBX restart: `Event: Shutdown` (`Restart: True`) to every logged-in session,
   * every session closed, connections refused for `downMs`, then accepted again.
   */
  restart(options?: { downMs?: number; shutdownEvent?: boolean }): Promise<void>;
  /** Stops listening and closes every session. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function pairsOf(fields: AmiFields | undefined): Array<readonly [string, string]> {
  if (fields === undefined) return [];
  if (Array.isArray(fields)) return [...fields as ReadonlyArray<readonly [string, string]>];
  const pairs: Array<readonly [string, string]> = [];
  for (const [k, v] of Object.entries(fields)) {
    if (Array.isArray(v)) { for (const item of v) pairs.push([k, String(item)]); }
    else pairs.push([k, String(v)]);
  }
  return pairs;
}

class ReceivedAction implements FakeAction {
  readonly name: string;
  readonly actionId: string | undefined;
  readonly headers: Array<[string, string]>;
  readonly raw: Uint8Array;

  constructor(headers: Array<[string, string]>, raw: Uint8Array) {
    this.headers = headers;
    this.raw = raw;
    this.name = this.get("Action") ?? "";
    this.actionId = this.get("ActionID");
  }

  get(key: string): string | undefined {
    const wanted = key.toLowerCase();
    for (const [k, v] of this.headers) if (k.toLowerCase() === wanted) return v;
    return undefined;
  }

  getAll(key: string): string[] {
    const wanted = key.toLowerCase();
    return this.headers.filter(([k]) => k.toLowerCase() === wanted).map(([, v]) => v);
  }

  respond(response: string, fields?: AmiFields): string {
    const id = this.actionId === undefined ? "" : `ActionID: ${this.actionId}\r\n`;
    return `Response: ${response}\r\n${id}` + formatAmiMessage(pairsOf(fields));
  }

  event(name: string, fields?: AmiFields): string {
    const id = this.actionId === undefined ? "" : `ActionID: ${this.actionId}\r\n`;
    return `Event: ${name}\r\n${id}` + formatAmiMessage(pairsOf(fields));
  }
}

/** Splits the client's bytes into actions (blank-line framed; bare LF accepted, as Asterisk does). */
class ActionReader {
  #pending = new Uint8Array(0);

  push(chunk: Uint8Array): FakeAction[] {
    let data = chunk;
    if (this.#pending.length > 0) {
      data = new Uint8Array(this.#pending.length + chunk.length);
      data.set(this.#pending);
      data.set(chunk, this.#pending.length);
    }
    const actions: FakeAction[] = [];
    let messageStart = 0;
    let lineStart = 0;
    for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, i + 1)) {
      const blankStart = lineStart;
      const blank = i === lineStart || (i === lineStart + 1 && data[lineStart] === 13);
      lineStart = i + 1;
      if (!blank) continue;
      if (blankStart > messageStart) {
        const raw = data.slice(messageStart, i + 1);
        const headers: Array<[string, string]> = [];
        for (const line of decoder.decode(raw).split("\n")) {
          const text = line.endsWith("\r") ? line.slice(0, -1) : line;
          if (text === "") continue;
          const colon = text.indexOf(":");
          if (colon === -1) headers.push([text, ""]);
          else {
            const value = text.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1;
            headers.push([text.slice(0, colon), text.slice(value)]);
          }
        }
        if (headers.length > 0) actions.push(new ReceivedAction(headers, raw));
      }
      messageStart = i + 1;
    }
    this.#pending = data.slice(messageStart);
    return actions;
  }
}

function delay(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));
}

/** Actions whose answers are built in code rather than taken from a recording. */
const BUILT_IN = new Set([
  "login",
  "logoff",
  "challenge",
  "ping",
  "command",
  "events",
  "originate",
  "pjsipshowendpoints",
]);

/**
 * Recorded answers, by lower-case action name: the messages carrying the action's
 * ActionID, in order, with the ActionID they were recorded with. First recording wins.
 */
function recordedAnswers(): Map<string, { actionId: string; texts: string[] }> {
  const answers = new Map<string, { actionId: string; texts: string[] }>();
  for (const name of ["lists-and-errors", "queue-call", "sip-calls"] as const) {
    const fixture = loadFixture(name);
    const messages = messageTexts(fixture.inBytes);
    for (const out of fixture.outChunks) {
      const action = new ActionReader().push(out)[0];
      const key = action.name.toLowerCase();
      if (action.actionId === undefined || BUILT_IN.has(key) || answers.has(key)) continue;
      const idLine = `\r\nActionID: ${action.actionId}\r\n`;
      const texts = messages.filter((m) => m.includes(idLine));
      if (texts.length > 0 && !texts[0].startsWith("Response: Error")) {
        answers.set(key, { actionId: action.actionId, texts });
      }
    }
  }
  return answers;
}

/** Output lines of the commands recorded in `commands.jsonl`. */
function recordedCommands(): Map<string, string[]> {
  const commands = new Map<string, string[]>();
  const fixture = loadFixture("commands");
  const messages = messageTexts(fixture.inBytes).map((m) =>
    new ActionReader().push(encoder.encode(m))[0]
  );
  for (const out of fixture.outChunks) {
    const action = new ActionReader().push(out)[0];
    const command = action.get("Command");
    if (action.name !== "Command" || command === undefined) continue;
    const answer = messages.find((m) => m.actionId === action.actionId);
    if (answer === undefined || answer.get("Response") !== "Success") continue;
    commands.set(command, answer.getAll("Output"));
  }
  return commands;
}

let recorded: Map<string, { actionId: string; texts: string[] }> | undefined;
let recordedCli: Map<string, string[]> | undefined;

/** One client connection to the fake server. */
export class FakeAmiSession {
  /** Ordinal of this connection on its server, from 0. */
  readonly id: number;
  /** Every action received, in order (unless the server's `recordActions` is false). */
  readonly actions: FakeAction[] = [];
  /** Actions received so far. */
  actionCount = 0;
  /** True once Login succeeded. */
  loggedIn = false;
  /** The user that logged in. */
  username: string | undefined;
  /** Event mask given at login or by the Events action (`on`, `off`, class list). */
  eventMask = "on";
  /** Filters added with the Filter action, in order. */
  readonly filters: string[] = [];
  /** The challenge handed out by `Challenge`, if any. */
  challenge: string | undefined;
  /** Bytes read from the client so far. */
  bytesReceived = 0;
  /** Bytes written to the client so far. */
  bytesSent = 0;
  /** False: every action is read and recorded but none is answered (a hung PBX). */
  answering = true;
  /** True when a write outlasted `writeTimeoutMs` and the session was closed for it. */
  writeTimedOut = false;
  /** Settles when the connection is closed (by either side). */
  readonly closed: Promise<void>;

  #conn: Deno.Conn;
  #server: FakeAmiServer;
  #random: () => number;
  #writeChain: Promise<void> = Promise.resolve();
  #isClosed = false;
  #resolveClosed!: () => void;
  #paused: { promise: Promise<void>; resume: () => void } | undefined;
  #actionWaiters: Array<(action: FakeAction) => boolean> = [];

  /** @internal Created by the server for each accepted connection. */
  constructor(id: number, conn: Deno.Conn, server: FakeAmiServer, seed: number) {
    this.id = id;
    this.#conn = conn;
    this.#server = server;
    this.#random = seededRandom(seed + id);
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /** True once the connection is closed. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /**
   * Sends bytes as they are (split per the server's chunking), after whatever was sent
   * before. Resolves when written; never rejects (a closed session drops the bytes).
   */
  send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    const next = this.#writeChain.then(() => this.#writeAll(bytes));
    this.#writeChain = next;
    return next;
  }

  /** Sends `partial` (e.g. half an event) and closes: a connection cut mid-message. */
  async cut(partial: string | Uint8Array): Promise<void> {
    await this.send(partial);
    this.abort();
  }

  /** Closes after everything queued has been written. */
  async close(): Promise<void> {
    await this.#writeChain;
    this.abort();
  }

  /** Closes now. */
  abort(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    this.#paused?.resume();
    this.#resolveClosed();
  }

  /** Stops reading the client's bytes (they pile up in the kernel, then the client's writes block). */
  pauseReading(): void {
    if (this.#paused !== undefined) return;
    let resume!: () => void;
    const promise = new Promise<void>((resolve) => (resume = resolve));
    this.#paused = { promise, resume };
  }

  /** Reads again after `pauseReading()`. */
  resumeReading(): void {
    const paused = this.#paused;
    this.#paused = undefined;
    paused?.resume();
  }

  /** The next action received after this call (optionally the next one named `name`). */
  nextAction(name?: string): Promise<FakeAction> {
    return new Promise((resolve) => {
      const waiter = (action: FakeAction) => {
        if (name !== undefined && action.name.toLowerCase() !== name.toLowerCase()) return false;
        resolve(action);
        return true;
      };
      this.#actionWaiters.push(waiter);
    });
  }

  /** @internal The read loop: frames actions, answers them in order. */
  async run(): Promise<void> {
    const reader = new ActionReader();
    const buf = new Uint8Array(64 * 1024);
    await this.send(`${this.#server.banner}\r\n`);
    try {
      while (!this.#isClosed) {
        if (this.#paused !== undefined) await this.#paused.promise;
        if (this.#isClosed) break;
        const n = await this.#conn.read(buf);
        if (n === null) break;
        this.bytesReceived += n;
        const actions = reader.push(buf.subarray(0, n));
        let batch = "";
        for (const action of actions) {
          this.#record(action);
          if (!this.answering) continue;
          const answer = this.#server.answer(action, this);
          if (answer instanceof Promise) {
            if (batch !== "") this.send(batch);
            batch = "";
            const late = await answer;
            if (typeof late === "string" && late !== "") this.send(late);
          } else if (typeof answer === "string") batch += answer;
        }
        if (batch !== "") this.send(batch);
      }
    } catch {
      // Reset or closed locally.
    }
    await this.#writeChain;
    this.abort();
  }

  /** @internal Replays a fixture: waits for each recorded client write, then plays what followed. */
  async replay(options: ReplayOptions): Promise<void> {
    const fixture = loadFixture(options.fixture);
    const rewrite = options.rewriteActionIds ?? true;
    const ids = new Map<string, string>();
    const reader = new ActionReader();
    const queue: FakeAction[] = [];
    let wake: (() => void) | undefined;
    let eof = false;
    const buf = new Uint8Array(64 * 1024);
    const readLoop = (async () => {
      try {
        while (!this.#isClosed) {
          const n = await this.#conn.read(buf);
          if (n === null) break;
          this.bytesReceived += n;
          for (const action of reader.push(buf.subarray(0, n))) {
            this.#record(action);
            queue.push(action);
          }
          wake?.();
        }
      } catch {
        // Closed.
      }
      eof = true;
      wake?.();
    })();
    const random = seededRandom(options.seed ?? 1);
    let segment: Uint8Array[] = [];
    const flush = async () => {
      if (segment.length === 0) return;
      const chunks = rewrite && ids.size > 0 ? rewriteIds(segment, ids) : segment;
      segment = [];
      const mode = options.chunking ?? "real";
      const whole = concatBytes(chunks);
      const pieces = mode === "real"
        ? chunks
        : mode === "bytes"
        ? byteChunks(whole)
        : rechunk(whole, random, { maxChunk: options.maxChunk ?? 64 });
      for (const piece of pieces) {
        await this.#writeAll(piece, true);
        // A macrotask between recorded reads, so they tend to arrive as separate reads.
        if (mode === "real") await delay(1);
      }
    };
    for (const entry of fixture.entries) {
      if (this.#isClosed) break;
      if (entry.dir === "in") {
        segment.push(entry.bytes);
        continue;
      }
      await flush();
      if (entry.dir === "close") break;
      while (queue.length === 0 && !eof) await new Promise<void>((resolve) => (wake = resolve));
      const sent = queue.shift();
      if (sent === undefined) break;
      const recordedId = new ActionReader().push(entry.bytes)[0]?.actionId;
      if (recordedId !== undefined && sent.actionId !== undefined && recordedId !== sent.actionId) {
        ids.set(recordedId, sent.actionId);
      }
    }
    await flush();
    this.abort();
    await readLoop;
  }

  #record(action: FakeAction): void {
    this.actionCount++;
    if (this.#server.recordActions) this.actions.push(action);
    if (this.#actionWaiters.length > 0) {
      this.#actionWaiters = this.#actionWaiters.filter((waiter) => !waiter(action));
    }
  }

  async #writeAll(bytes: Uint8Array, unchunked = false): Promise<void> {
    if (this.#isClosed) return;
    const pieces = unchunked ? [bytes] : this.#server.split(bytes, this.#random);
    const timeoutMs = this.#server.writeTimeoutMs;
    try {
      for (const piece of pieces) {
        let offset = 0;
        while (offset < piece.length) {
          const writing = this.#conn.write(piece.subarray(offset));
          if (timeoutMs <= 0) offset += await writing;
          else {
            let timer: ReturnType<typeof setTimeout> | undefined;
            const timedOut = new Promise<null>((resolve) => {
              timer = setTimeout(() => resolve(null), timeoutMs);
            });
            const n = await Promise.race([writing, timedOut]);
            clearTimeout(timer);
            if (n === null) {
              // Asterisk's writetimeout: the client did not read; the session is dropped.
              this.writeTimedOut = true;
              writing.catch(() => {});
              this.abort();
              return;
            }
            offset += n;
          }
        }
        this.bytesSent += piece.length;
      }
    } catch {
      this.abort();
    }
  }
}

/**
 * Replaces the values of `ActionID: <recorded>` lines by the client's ids. Works on the
 * bytes (a chunk may end inside a UTF-8 character) and keeps every chunk boundary where
 * it falls, shifted by the length change of the replacements before it.
 */
function rewriteIds(chunks: Uint8Array[], ids: Map<string, string>): Uint8Array[] {
  const bytes = concatBytes(chunks);
  // One char per byte, so string offsets are byte offsets.
  let binary = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  const replacements: Array<{ start: number; end: number; value: string }> = [];
  for (const match of binary.matchAll(/(^|\n)ActionID: ([^\r\n]*)\r?\n/g)) {
    const id = ids.get(decoder.decode(Uint8Array.from(match[2], (c) => c.charCodeAt(0))));
    if (id === undefined) continue;
    const start = match.index + match[1].length + "ActionID: ".length;
    const value = String.fromCharCode(...encoder.encode(id));
    replacements.push({ start, end: start + match[2].length, value });
  }
  let rewritten = "";
  let last = 0;
  for (const r of replacements) {
    rewritten += binary.slice(last, r.start) + r.value;
    last = r.end;
  }
  rewritten += binary.slice(last);
  const moved = (offset: number) => {
    let delta = 0;
    for (const r of replacements) {
      if (offset >= r.end) delta += r.value.length - (r.end - r.start);
      else if (offset > r.start) {
        return r.start + delta + Math.min(offset - r.start, r.value.length);
      }
    }
    return offset + delta;
  };
  const out: Uint8Array[] = [];
  let from = 0;
  let offset = 0;
  for (const chunk of chunks) {
    offset += chunk.length;
    const to = moved(offset);
    if (to > from) out.push(Uint8Array.from(rewritten.slice(from, to), (c) => c.charCodeAt(0)));
    from = Math.max(from, to);
  }
  return out;
}

/** @internal The server behind {@linkcode FakeAmi}. */
class FakeAmiServer implements FakeAmi {
  readonly hostname: string;
  port: number;
  readonly banner: string;
  readonly sessions: FakeAmiSession[] = [];
  writeTimeoutMs: number;
  readonly recordActions: boolean;
  #options: FakeAmiOptions;
  #listener: Deno.Listener | undefined;
  #acceptLoop: Promise<void> = Promise.resolve();
  #sessionLoops = new Set<Promise<void>>();
  #handlers = new Map<string, FakeAmiHandler>();
  #pingMode: PingMode;
  #chunking: Chunking;
  #sessionWaiters: Array<() => boolean> = [];
  #closed = false;
  #timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(options: FakeAmiOptions) {
    this.#options = options;
    this.hostname = options.hostname ?? "127.0.0.1";
    this.port = options.port ?? 0;
    this.banner = options.banner ?? "Asterisk Call Manager/9.0.0";
    this.writeTimeoutMs = options.writeTimeoutMs ?? 0;
    this.recordActions = options.recordActions ?? true;
    this.#pingMode = options.pingMode ?? "pong";
    this.#chunking = options.chunking ?? { mode: "whole" };
  }

  get connections(): number {
    return this.sessions.length;
  }

  get openSessions(): FakeAmiSession[] {
    return this.sessions.filter((s) => !s.isClosed);
  }

  session(index: number): Promise<FakeAmiSession> {
    if (this.sessions[index] !== undefined) return Promise.resolve(this.sessions[index]);
    return new Promise((resolve) => {
      const check = () => {
        if (this.sessions[index] === undefined) return false;
        resolve(this.sessions[index]);
        return true;
      };
      this.#sessionWaiters.push(check);
    });
  }

  handle(action: string, handler: FakeAmiHandler | undefined): void {
    if (handler === undefined) this.#handlers.delete(action.toLowerCase());
    else this.#handlers.set(action.toLowerCase(), handler);
  }

  setPingMode(mode: PingMode): void {
    this.#pingMode = mode;
  }

  setChunking(chunking: Chunking): void {
    this.#chunking = chunking;
  }

  async broadcast(text: string | Uint8Array): Promise<void> {
    await Promise.all(
      this.openSessions.filter((s) => s.loggedIn && s.eventMask.toLowerCase() !== "off").map((s) =>
        s.send(text)
      ),
    );
  }

  startListening(): void {
    if (this.#listener !== undefined || this.#closed) return;
    const { tls } = this.#options;
    const listener = tls === undefined
      ? Deno.listen({ hostname: this.hostname, port: this.port })
      : Deno.listenTls({ hostname: this.hostname, port: this.port, cert: tls.cert, key: tls.key });
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#acceptLoop = this.#accept(listener);
  }

  stopListening(): void {
    const listener = this.#listener;
    this.#listener = undefined;
    try {
      listener?.close();
    } catch {
      // Already closed.
    }
  }

  async restart(options: { downMs?: number; shutdownEvent?: boolean } = {}): Promise<void> {
    if (options.shutdownEvent ?? true) {
      await this.broadcast(formatAmiMessage({
        Event: "Shutdown",
        Privilege: "system,all",
        Timestamp: amiTimestamp(),
        Shutdown: "Cleanly",
        Restart: "True",
      }));
    }
    this.stopListening();
    await this.#acceptLoop;
    await Promise.all(this.openSessions.map((s) => s.close()));
    await delay(options.downMs ?? 100);
    this.startListening();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.stopListening();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const session of this.sessions) session.abort();
    await this.#acceptLoop;
    await Promise.all([...this.#sessionLoops]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal Splits one write per the current chunking. */
  split(bytes: Uint8Array, random: () => number): Uint8Array[] {
    const { mode, maxChunk } = this.#chunking;
    if (mode === "bytes") return byteChunks(bytes);
    if (mode === "random") return rechunk(bytes, random, { maxChunk: maxChunk ?? 64 });
    return [bytes];
  }

  /** @internal Runs `fn` after `ms` unless the server closes first. */
  later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  async #accept(listener: Deno.Listener): Promise<void> {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      if (this.#closed) {
        conn.close();
        return;
      }
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      const session = new FakeAmiSession(
        this.sessions.length,
        conn,
        this,
        this.#chunking.seed ?? 1,
      );
      this.sessions.push(session);
      this.#sessionWaiters = this.#sessionWaiters.filter((waiter) => !waiter());
      const replay = this.#options.replay;
      const loop = (replay === undefined ? session.run() : session.replay(replay)).catch(() => {});
      this.#sessionLoops.add(loop);
      loop.then(() => this.#sessionLoops.delete(loop));
    }
  }

  /** @internal Asterisk's dispatch: auth gate, scripted handler, built-in behaviour. */
  answer(action: FakeAction, session: FakeAmiSession): ReturnType<FakeAmiHandler> {
    const key = action.name.toLowerCase();
    if (action.name === "") {
      return formatAmiMessage([
        ["Response", "Error"],
        ...(action.actionId === undefined ? [] : [["ActionID", action.actionId] as const]),
        ["Message", "Missing action in request"],
      ]);
    }
    // main/manager.c:7076-7085: only these before authentication.
    if (!session.loggedIn && key !== "login" && key !== "logoff" && key !== "challenge") {
      return action.respond("Error", { Message: "Permission denied" });
    }
    const handler = this.#handlers.get(key);
    if (handler !== undefined) return handler(action, session);
    switch (key) {
      case "login":
        return this.#login(action, session);
      case "challenge":
        if (action.get("AuthType")?.toLowerCase() !== "md5") {
          return action.respond("Error", { Message: "Must specify AuthType" });
        }
        session.challenge ??= this.#options.challenge ?? "482454724";
        return action.respond("Success", { Challenge: session.challenge });
      case "logoff":
        session.send(action.respond("Goodbye", { Message: "Thanks for all the fish." }));
        session.close();
        return undefined;
      case "ping":
        if (this.#pingMode === "silent") return undefined;
        if (this.#pingMode === "close") {
          session.abort();
          return undefined;
        }
        return action.respond("Success", { Ping: "Pong", Timestamp: amiTimestamp() });
      case "command":
        return this.#command(action);
      case "events": {
        const mask = action.get("EventMask") ?? "";
        session.eventMask = mask;
        const off = mask.toLowerCase() === "off";
        return action.respond("Success", { Events: off ? "Off" : "On" });
      }
      case "filter": {
        const filter = action.get("Filter");
        if (filter !== undefined) session.filters.push(filter);
        return action.respond("Success", { Message: "Success" });
      }
      case "originate":
        return this.#originate(action, session);
      case "pjsipshowendpoints":
        return pjsipEndpoints(action);
    }
    recorded ??= recordedAnswers();
    const canned = recorded.get(key);
    if (canned !== undefined) {
      const idLine = `\r\nActionID: ${canned.actionId}\r\n`;
      const mine = action.actionId === undefined ? "\r\n" : `\r\nActionID: ${action.actionId}\r\n`;
      return canned.texts.map((t) => t.replaceAll(idLine, mine)).join("");
    }
    return action.respond("Error", {
      Message:
        `Invalid/unknown command: ${action.name}. Use Action: ListCommands to show available commands.`,
    }) + formatAmiMessage({
      Event: "RequestBadFormat",
      Privilege: "security,all",
      Timestamp: amiTimestamp(),
      Severity: "Error",
      Service: "AMI",
      EventVersion: "1",
      RequestType: `Action: ${action.name}`,
      AccountID: session.username ?? "",
    });
  }

  #login(action: FakeAction, session: FakeAmiSession): string | Promise<undefined> {
    const username = this.#options.username ?? "dami";
    const secret = this.#options.secret ?? "dami-secret";
    const failDelay = this.#options.authFailDelayMs ?? 1000;
    const refuse = async (message: string) => {
      await delay(failDelay);
      await session.send(action.respond("Error", { Message: message }));
      await session.close();
      return undefined;
    };
    if (
      this.#options.allowMultipleLogin === false &&
      this.openSessions.some((s) =>
        s !== session && s.loggedIn && s.username === action.get("Username")
      )
    ) {
      return refuse("Login Already In Use");
    }
    let ok = action.get("Username") === username;
    if (action.get("AuthType")?.toLowerCase() === "md5") {
      const key = session.challenge === undefined
        ? undefined
        : createHash("md5").update(session.challenge + secret).digest("hex");
      ok &&= key !== undefined && action.get("Key") === key;
    } else {
      ok &&= action.get("Secret") === secret;
    }
    if (!ok) return refuse("Authentication failed");
    session.loggedIn = true;
    session.username = username;
    const events = action.get("Events");
    if (events !== undefined) session.eventMask = events;
    const now = new Date().toISOString().replace("Z", "+0000");
    return action.respond("Success", { Message: "Authentication accepted" }) +
      formatAmiMessage({
        Event: "FullyBooted",
        Privilege: "system,all",
        Uptime: 30,
        LastReload: 30,
        Status: "Fully Booted",
      }) +
      formatAmiMessage({
        Event: "SuccessfulAuth",
        Privilege: "security,all",
        Timestamp: amiTimestamp(),
        EventTV: now,
        Severity: "Informational",
        Service: "AMI",
        EventVersion: "1",
        AccountID: username,
        SessionID: `0x${(0x7fde60006cb0 + session.id).toString(16)}`,
        LocalAddress: `IPV4/TCP/${this.hostname}/${this.port}`,
        RemoteAddress: `IPV4/TCP/127.0.0.1/${40000 + session.id}`,
        UsingPassword: "0",
        SessionTV: now,
      });
  }

  #command(action: FakeAction): string {
    const command = action.get("Command");
    if (command === undefined) return action.respond("Error", { Message: "No command provided" });
    recordedCli ??= recordedCommands();
    const lines = this.#options.commands?.[command] ?? recordedCli.get(command);
    const words = command.split(" ");
    const output = lines ??
      [`No such command '${command}' (type 'core show help ${
        words.slice(0, 2).join(" ")
      }' for other possible commands)`];
    if (this.#options.commandStyle === "follows") {
      // Asterisk 13: raw CLI text after the headers, then --END COMMAND--.
      const head = action.respond("Follows", { Privilege: "Command" }).slice(0, -2);
      const body = output.map((line) => line + "\n").join("");
      return `${head}${body}--END COMMAND--\r\n\r\n`;
    }
    return action.respond(lines === undefined ? "Error" : "Success", {
      Message: "Command output follows",
      Output: output,
    });
  }

  #originate(action: FakeAction, session: FakeAmiSession): string {
    const async = /^(true|yes|1|on)$/i.test(action.get("Async") ?? "");
    const channel = action.get("Channel") ?? "";
    if (channel === "") return action.respond("Error", { Message: "Channel not specified" });
    const response = action.respond("Success", { Message: "Originate successfully queued" });
    if (!async) return response;
    this.later(this.#options.originateDelayMs ?? 5, () => {
      session.send(action.event("OriginateResponse", {
        Privilege: "call,all",
        Timestamp: amiTimestamp(),
        Response: "Success",
        Channel: `${channel}-00000001;1`,
        Application: action.get("Application") ?? "",
        Data: action.get("Data") ?? "",
        Reason: "4",
        Uniqueid: `${Math.floor(Date.now() / 1000)}.${session.id + 1}`,
        CallerIDNum: "<unknown>",
        CallerIDName: "<unknown>",
      }));
    });
    return response;
  }
}

/** Asterisk 21+ (chan_pjsip) endpoint list; chan_sip's SIPPeers is gone there. */
function pjsipEndpoints(action: FakeAction): string {
  const endpoints = [
    ["6001", "6001", "6001", "Not in use", "0"],
    ["6002", "6002", "", "Unavailable", "0"],
    ["trunk", "trunk", "trunk/sip:127.0.0.1:5071", "Not in use", "0"],
  ];
  let text = action.respond("Success", {
    EventList: "start",
    Message: "A listing of Endpoints follows, presence status will follow",
  });
  for (const [name, aor, contacts, state, active] of endpoints) {
    text += action.event("EndpointList", {
      ObjectType: "endpoint",
      ObjectName: name,
      Transport: "transport-udp",
      Aor: aor,
      Auths: "",
      OutboundAuths: "",
      Contacts: contacts,
      DeviceState: state,
      ActiveChannels: active,
    });
  }
  return text + action.event("EndpointListComplete", {
    EventList: "Complete",
    ListItems: endpoints.length,
  });
}

/** Starts a fake AMI server on a free port (see the module doc for what it does). */
export async function startFakeAmi(options: FakeAmiOptions = {}): Promise<FakeAmi> {
  const server = new FakeAmiServer(options);
  server.startListening();
  await Promise.resolve();
  return server;
}
