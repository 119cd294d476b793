/**
 * The PostgreSQL wire protocol in front of one PGlite: many clients (the daemon's own
 * connections, `psql`, `deno task query`, Grafana) share PGlite's single backend.
 *
 * PGlite is one session. `@electric-sql/pglite-socket` 0.2.17 multiplexes clients per
 * message, which breaks the extended protocol: the `Parse` of one client and the
 * `Bind` of another interleave on the one unnamed statement, and two clients that name
 * a prepared statement alike (pgx, Grafana's driver, names them by the SQL's hash)
 * collide. So this server hands the backend to one client at a time, from its first
 * message until the backend reports `ReadyForQuery` idle (outside a transaction): a
 * query, a whole extended-protocol exchange or a whole transaction runs alone. (Copy
 * messages sent after their COPY ended, which PostgreSQL ignores, take nothing.) Named
 * statements and portals are renamed per client (`c7_name`), so they never collide, and
 * dropped when the client leaves. A client that leaves inside a transaction is rolled
 * back; one that holds a transaction open and idle past
 * {@linkcode WireServerOptions.idleInTransactionMs} is disconnected (SQLSTATE `25P03`,
 * as PostgreSQL's `idle_in_transaction_session_timeout`), so that a forgotten `BEGIN`
 * in a `psql` session cannot stop the daemon from writing.
 *
 * What is shared, unlike a real server: session settings (`SET`), and statements a
 * client prepares with SQL `PREPARE`. A running query cannot be cancelled (PGlite has
 * no second process to signal); a `CancelRequest` is ignored.
 *
 * @module
 */
import type { PGlite } from "@electric-sql/pglite";

/** Options of {@linkcode WireServer}. */
export interface WireServerOptions {
  /**
   * A client idle inside a transaction for longer, while the store is needed, is
   * disconnected and its transaction rolled back.
   * @default {10000}
   */
  idleInTransactionMs?: number;
  /**
   * Largest message a client may send (a `CopyData` chunk, a query text); a larger one
   * ends its connection.
   * @default {67108864}
   */
  maxMessageBytes?: number;
  /**
   * Largest `COPY FROM STDIN` (statement and data), held whole before PGlite runs it.
   * @default {268435456}
   */
  maxCopyBytes?: number;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;

/** Serves PGlite to any number of TCP clients, one exchange at a time. */
export class WireServer {
  #db: PGlite;
  #idleInTransactionMs: number;
  #maxMessageBytes: number;
  #maxCopyBytes: number;
  #holder: Client | undefined;
  #waiting: Array<{ client: Client; grant: () => void }> = [];
  #clients = new Set<Client>();
  #listeners = new Set<Deno.Listener>();
  #nextId = 1;
  #closed = false;

  constructor(db: PGlite, options: WireServerOptions = {}) {
    this.#db = db;
    this.#idleInTransactionMs = options.idleInTransactionMs ?? 10_000;
    this.#maxMessageBytes = options.maxMessageBytes ?? 64 * 1024 * 1024;
    this.#maxCopyBytes = options.maxCopyBytes ?? 256 * 1024 * 1024;
  }

  /** Accepts clients on `listener` until {@linkcode close}. */
  async serve(listener: Deno.Listener): Promise<void> {
    this.#listeners.add(listener);
    try {
      for await (const conn of listener) {
        if (this.#closed) {
          conn.close();
          break;
        }
        const client = new Client(this.#nextId++, conn);
        this.#clients.add(client);
        this.#session(client).finally(() => this.#clients.delete(client));
      }
    } catch {
      // The listener was closed.
    } finally {
      this.#listeners.delete(listener);
    }
  }

  /** Number of connected clients. */
  get clients(): number {
    return this.#clients.size;
  }

  /** Stops accepting, disconnects every client (rolling back their transactions). */
  async close(): Promise<void> {
    this.#closed = true;
    for (const listener of this.#listeners) {
      try {
        listener.close();
      } catch {
        // already closed
      }
    }
    const sessions = [...this.#clients].map((client) => client.done);
    for (const client of this.#clients) client.close();
    await Promise.all(sessions);
  }

  async #session(client: Client): Promise<void> {
    try {
      if (!await this.#startup(client)) return;
      for (;;) {
        const message = await this.#next(client);
        if (message === undefined || message[0] === 0x58 /* Terminate */) return;
        // Outside a COPY (whose data `#withCopyData` collects) PostgreSQL ignores copy
        // messages and answers nothing, so no ReadyForQuery would ever give the backend
        // back: taken for one, it would stay with this idle client. postgres.js 3.4.9
        // sends a CopyFail after every COPY (when its copy stream is destroyed); after a
        // COPY that failed, it comes after the ROLLBACK.
        if (isCopyMessage(message)) continue;
        if (this.#holder !== client) await this.#acquire(client);
        const renamed = client.rename(message);
        const copy = client.startsCopyIn(message);
        if (copy !== undefined) {
          await this.#run(client, await this.#withCopyData(client, renamed, copy), true);
          continue;
        }
        // Messages the client already sent with it (an extended-protocol exchange is five)
        // run as one input: one call into PGlite and one answer instead of five.
        const batch = [renamed];
        for (;;) {
          const more = client.takeBuffered((m) =>
            m[0] !== 0x58 /* Terminate */ && client.startsCopyIn(m) === undefined
          );
          if (more === undefined) break;
          if (!isCopyMessage(more)) batch.push(client.rename(more));
        }
        await this.#run(client, batch.length === 1 ? renamed : concat(batch));
      }
    } catch {
      // The client went away or broke the protocol: its connection ends.
    } finally {
      await this.#cleanUp(client);
      client.close();
      client.finish();
    }
  }

  /** Reads SSL/GSS requests and the startup packet; runs the startup. False: no session. */
  async #startup(client: Client): Promise<boolean> {
    for (;;) {
      const length = await client.readInt32();
      if (length === undefined) return false;
      if (length < 8 || length > 10_000) return false;
      const body = await client.readExactly(length - 4);
      if (body === undefined) return false;
      const code = new DataView(body.buffer, body.byteOffset).getInt32(0);
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        await client.write(new TextEncoder().encode("N"));
        continue;
      }
      if (code === CANCEL_REQUEST) return false;
      if (code !== PROTOCOL_3) return false;
      const packet = new Uint8Array(length);
      new DataView(packet.buffer).setInt32(0, length);
      packet.set(body, 4);
      await this.#acquire(client);
      await this.#run(client, packet);
      return true;
    }
  }

  /**
   * The client's next message. While it holds the backend inside a transaction, waiting
   * is bounded: past the limit the client is told why and disconnected.
   */
  async #next(client: Client): Promise<Uint8Array | undefined> {
    const reading = client.readMessage(this.#maxMessageBytes);
    if (this.#holder !== client) return await reading;
    reading.catch(() => {}); // awaited below unless the client is disconnected first
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const idle = new Promise<"idle">((resolve) => {
        timer = setTimeout(() => resolve("idle"), this.#idleInTransactionMs);
      });
      const first = await Promise.race([reading, idle]).finally(() => clearTimeout(timer));
      if (first !== "idle") return first;
      if (this.#waiting.length === 0) continue;
      await client.write(errorResponse(
        "FATAL",
        "25P03",
        `terminating connection: idle in a transaction for more than ${this.#idleInTransactionMs} ms while the embedded store was needed`,
      )).catch(() => {});
      return undefined;
    }
  }

  /**
   * PGlite's backend reads a `COPY FROM STDIN`'s data from the same input as the
   * statement and blocks when it is not there, while a client sends the data only after
   * the `CopyInResponse`. So the server answers `CopyInResponse` itself (text format,
   * `columns` columns), collects every `CopyData` up to the client's `CopyDone` (or
   * `CopyFail`), and runs statement and data as one input; the backend's own
   * `CopyInResponse` is then left out of the answer. A statement that fails before
   * reading (no such table) answers with its error after the data, which the backend
   * discards.
   */
  async #withCopyData(client: Client, statement: Uint8Array, columns: number): Promise<Uint8Array> {
    const response = new Uint8Array(1 + 4 + 1 + 2 + 2 * columns);
    const view = new DataView(response.buffer);
    response[0] = 0x47;
    view.setInt32(1, response.length - 1);
    view.setInt16(6, columns);
    await client.write(response);
    const parts = [statement];
    let bytes = statement.length;
    for (;;) {
      const message = await this.#next(client);
      if (message === undefined) throw new Error("client left during COPY");
      bytes += message.length;
      if (bytes > this.#maxCopyBytes) throw new Error(`COPY of more than ${bytes} bytes refused`);
      parts.push(message);
      if (message[0] === 0x63 /* CopyDone */ || message[0] === 0x66 /* CopyFail */) break;
    }
    const input = new Uint8Array(bytes);
    let offset = 0;
    for (const part of parts) {
      input.set(part, offset);
      offset += part.length;
    }
    return input;
  }

  #acquire(client: Client): Promise<void> {
    if (this.#holder === undefined) {
      this.#holder = client;
      return Promise.resolve();
    }
    return new Promise((grant) => this.#waiting.push({ client, grant }));
  }

  #release(client: Client): void {
    if (this.#holder !== client) return;
    const next = this.#waiting.shift();
    this.#holder = next?.client;
    next?.grant();
  }

  /** Runs one message on the backend and sends the answer; releases at idle. */
  async #run(client: Client, message: Uint8Array, answeredCopyIn = false): Promise<void> {
    let chunks: Uint8Array[] = [];
    await this.#db.execProtocolRawStream(message, {
      onRawData: (data) => chunks.push(data.slice()),
    });
    if (answeredCopyIn) chunks = withoutCopyInResponse(chunks);
    const status = readyStatus(chunks);
    if (status !== undefined) client.status = status;
    try {
      await client.write(chunks.length === 1 ? chunks[0] : concat(chunks));
    } finally {
      if (status === "I") this.#release(client);
    }
  }

  /** Rolls back what a leaving client left open and drops its statements. */
  async #cleanUp(client: Client): Promise<void> {
    this.#waiting = this.#waiting.filter((w) => w.client !== client);
    if (this.#holder !== client && client.statements.size === 0) return;
    if (this.#holder !== client) await this.#acquire(client);
    try {
      // A Sync ends an extended-protocol exchange the client left unfinished.
      if (client.status !== "I") await this.#quiet(new Uint8Array([0x53, 0, 0, 0, 4]));
      if (this.#db.isInTransaction()) await this.#quiet(simpleQuery("ROLLBACK"));
      for (const name of client.statements) {
        await this.#quiet(simpleQuery(`DEALLOCATE "${name.replaceAll('"', '""')}"`));
      }
    } catch {
      // The store is closing.
    } finally {
      this.#release(client);
    }
  }

  async #quiet(message: Uint8Array): Promise<void> {
    await this.#db.execProtocolRawStream(message, { onRawData: () => {} });
  }
}

/** One TCP client: buffered reads of whole messages, and its renamed statements. */
class Client {
  readonly id: number;
  readonly statements = new Set<string>();
  /** Statements (by the client's name) and portals that run a `COPY FROM STDIN`. */
  #copyStatements = new Map<string, number>();
  #copyPortals = new Map<string, number>();
  /** Transaction status of its last `ReadyForQuery`: `I`, `T` or `E`. */
  status = "I";
  readonly done: Promise<void>;
  finish!: () => void;
  #conn: Deno.Conn;
  #buffer = new Uint8Array(65536);
  /** Unread bytes are `#buffer[#start, #end)`. */
  #start = 0;
  #end = 0;
  #closed = false;
  #prefix: string;

  constructor(id: number, conn: Deno.Conn) {
    this.id = id;
    this.#conn = conn;
    this.#prefix = `c${id}_`;
    this.done = new Promise((resolve) => (this.finish = resolve));
    try {
      (conn as Deno.TcpConn).setNoDelay(true);
    } catch {
      // not TCP
    }
  }

  /** Reads until `bytes` unread bytes are buffered; false at end of stream. */
  async #fill(bytes: number): Promise<boolean> {
    while (this.#end - this.#start < bytes) {
      const unread = this.#end - this.#start;
      if (this.#end === this.#buffer.length || this.#buffer.length - this.#start < bytes) {
        // Move the unread bytes to the front, into a larger buffer when they need one.
        const size = Math.max(bytes, unread + 65536);
        const next = size <= this.#buffer.length
          ? this.#buffer
          : new Uint8Array(Math.max(size, this.#buffer.length * 2));
        next.set(this.#buffer.subarray(this.#start, this.#end), 0);
        this.#buffer = next;
        this.#start = 0;
        this.#end = unread;
      }
      const n = await this.#conn.read(this.#buffer.subarray(this.#end));
      if (n === null) return false;
      this.#end += n;
    }
    return true;
  }

  #take(bytes: number): Uint8Array {
    const taken = this.#buffer.slice(this.#start, this.#start + bytes);
    this.#start += bytes;
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      // A large message (COPY data) grew the buffer: do not keep it for the idle client.
      if (this.#buffer.length > 1024 * 1024) this.#buffer = new Uint8Array(65536);
    }
    return taken;
  }

  async readInt32(): Promise<number | undefined> {
    if (!await this.#fill(4)) return undefined;
    return new DataView(this.#take(4).buffer).getInt32(0);
  }

  async readExactly(bytes: number): Promise<Uint8Array | undefined> {
    if (!await this.#fill(bytes)) return undefined;
    return this.#take(bytes);
  }

  /** A whole typed message (type byte, length, body), or undefined at end of stream. */
  async readMessage(maxBytes: number): Promise<Uint8Array | undefined> {
    if (!await this.#fill(5)) return undefined;
    const length = new DataView(this.#buffer.buffer).getInt32(this.#start + 1);
    if (length < 4 || length + 1 > maxBytes) {
      throw new Error(`message of ${length + 1} bytes refused`);
    }
    if (!await this.#fill(length + 1)) return undefined;
    return this.#take(length + 1);
  }

  /**
   * The next message when it is already whole in the buffer and `accept` takes it;
   * otherwise nothing is consumed.
   */
  takeBuffered(accept: (message: Uint8Array) => boolean): Uint8Array | undefined {
    if (this.#end - this.#start < 5) return undefined;
    const length = new DataView(this.#buffer.buffer).getInt32(this.#start + 1);
    if (length < 4 || this.#end - this.#start < length + 1) return undefined;
    const message = this.#buffer.subarray(this.#start, this.#start + length + 1);
    if (!accept(message)) return undefined;
    return this.#take(length + 1);
  }

  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }

  /**
   * When running `message` makes the backend wait for `CopyData`: the number of columns
   * copied (those of the statement's column list; 0 when it has none, which no client we
   * know of reads). Undefined for any other message.
   */
  startsCopyIn(message: Uint8Array): number | undefined {
    if (message[0] === 0x51 /* Query */) return copyColumns(cstring(message, 5)[0]);
    if (message[0] !== 0x45 /* Execute */) return undefined;
    return this.#copyPortals.get(cstring(message, 5)[0]);
  }

  /** The message with its statement and portal names made this client's own. */
  rename(message: Uint8Array): Uint8Array {
    switch (message[0]) {
      case 0x50: { // Parse: statement name, query, parameter types
        const [name, rest] = cstring(message, 5);
        const copy = copyColumns(cstring(message, rest)[0]);
        if (copy === undefined) this.#copyStatements.delete(name);
        else this.#copyStatements.set(name, copy);
        if (name === "") return message;
        this.statements.add(this.#prefix + name);
        return rebuild(message[0], [this.#prefix + name], message.subarray(rest));
      }
      case 0x42: { // Bind: portal name, statement name, ...
        const [portal, afterPortal] = cstring(message, 5);
        const [statement, rest] = cstring(message, afterPortal);
        const copy = this.#copyStatements.get(statement);
        if (copy === undefined) this.#copyPortals.delete(portal);
        else this.#copyPortals.set(portal, copy);
        if (portal === "" && statement === "") return message;
        return rebuild(
          message[0],
          [this.#own(portal), this.#own(statement)],
          message.subarray(rest),
        );
      }
      case 0x44: // Describe: 'S' or 'P', name
      case 0x43: { // Close: 'S' or 'P', name
        const kind = message[5];
        const [name, rest] = cstring(message, 6);
        if (name === "") return message;
        if (message[0] === 0x43 && kind === 0x53) this.statements.delete(this.#prefix + name);
        return rebuild(
          message[0],
          [String.fromCharCode(kind) + this.#own(name)],
          message.subarray(rest),
        );
      }
      case 0x45: { // Execute: portal name, row limit
        const [portal, rest] = cstring(message, 5);
        if (portal === "") return message;
        return rebuild(message[0], [this.#own(portal)], message.subarray(rest));
      }
      default:
        return message;
    }
  }

  #own(name: string): string {
    return name === "" ? "" : this.#prefix + name;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** CopyData, CopyDone or CopyFail. */
function isCopyMessage(message: Uint8Array): boolean {
  return message[0] === 0x64 || message[0] === 0x63 || message[0] === 0x66;
}

/** A statement that reads `COPY` data from the client, with its optional column list. */
const COPY_IN = /^\s*copy\s+[^(]*?(\(([^)]*)\))?\s*from\s+stdin\b/i;

/** The columns a `COPY FROM STDIN` reads (0 without a column list); undefined: no such COPY. */
function copyColumns(text: string): number | undefined {
  const match = COPY_IN.exec(text);
  if (match === null) return undefined;
  return match[2] === undefined ? 0 : match[2].split(",").length;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return all;
}

/** The answer without its first message when that is a `CopyInResponse`. */
function withoutCopyInResponse(chunks: Uint8Array[]): Uint8Array[] {
  const all = concat(chunks);
  if (all[0] !== 0x47 || all.length < 5) return [all];
  return [all.subarray(1 + new DataView(all.buffer).getInt32(1))];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function cstring(message: Uint8Array, start: number): [string, number] {
  const end = message.indexOf(0, start);
  if (end < 0) throw new Error("malformed message");
  return [decoder.decode(message.subarray(start, end)), end + 1];
}

/** A message of `type` made of NUL-terminated `strings` followed by `rest`. */
function rebuild(type: number, strings: string[], rest: Uint8Array): Uint8Array {
  const parts = strings.map((s) => encoder.encode(s + "\0"));
  const length = 4 + parts.reduce((n, p) => n + p.length, 0) + rest.length;
  const out = new Uint8Array(1 + length);
  out[0] = type;
  new DataView(out.buffer).setInt32(1, length);
  let offset = 5;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  out.set(rest, offset);
  return out;
}

function simpleQuery(text: string): Uint8Array {
  return rebuild(0x51, [text], new Uint8Array(0));
}

/** An `ErrorResponse` with severity, SQLSTATE and message. */
function errorResponse(severity: string, code: string, message: string): Uint8Array {
  const fields = `S${severity}\0V${severity}\0C${code}\0M${message}\0\0`;
  return rebuild(0x45, [], encoder.encode(fields));
}

/**
 * The status byte of a `ReadyForQuery` that ends the answer (it is always the last
 * message of a cycle), or undefined when the answer does not end with one.
 */
function readyStatus(chunks: Uint8Array[]): string | undefined {
  const tail: number[] = [];
  for (let i = chunks.length - 1; i >= 0 && tail.length < 6; i--) {
    const chunk = chunks[i];
    for (let j = chunk.length - 1; j >= 0 && tail.length < 6; j--) tail.unshift(chunk[j]);
  }
  if (tail.length < 6 || tail[0] !== 0x5a || tail[1] !== 0 || tail[2] !== 0) return undefined;
  if (tail[3] !== 0 || tail[4] !== 5) return undefined;
  return String.fromCharCode(tail[5]);
}
