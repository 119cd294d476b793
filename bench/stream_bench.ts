/**
 * Read-side benchmark: `/api/events` clients against the daemon's real path (AMI bytes
 * → parser → Ingest → PostgreSQL → event tail → HTTP), each side in its own process so
 * that the daemon's RSS and CPU are its own.
 *
 * Figures:
 * - `live`: 100 clients follow live while events arrive at 5,000/s for 20 s: delay from
 *   the commit (the ingest writer's callback) to the message read from the client's
 *   socket, p50 / p99 / max over every 10th event of every client, split at the moment
 *   the tail appended the event's batch (commit → tail, tail → client); how late the
 *   daemon's and the clients' timers fired (a thread that waited for a core, or a GC
 *   pause); the clients' CPU; the daemon's RSS before the clients attach and at most
 *   while they follow.
 * - `ingest`: events/s of a 200,000-event burst through Ingest with no client, then
 *   with 100 clients following it live, then alone again (the figure compares with the
 *   mean of the two alone runs); the daemon's CPU and kernel time per 1,000 events, the
 *   machine's idle share, the clients' CPU.
 * - `resume`: 1,000,000 events in the log; one client asks `since=0` and reads to the
 *   end: events/s delivered, the daemon's RSS before and at most during the replay.
 *
 * The clients share the daemon's two cores, so what they cost is in every figure.
 * `--transport socket` (the default) reads each stream from a plain TCP socket, 256 KiB
 * at a time; `--transport fetch` with Deno's `fetch` (how the figures were first
 * measured: about 1.6 times the clients' CPU). `--ingest-clients socket` (the default)
 * reads the 100 streams in one process; `--ingest-clients curl` runs 100 `curl -N`.
 *
 * Run: `deno task bench stream`, or `deno run -A bench/stream_bench.ts
 * [--scenario live|ingest|resume] [--clients 100] [--transport socket|fetch]
 * [--per-process 25] [--ingest-clients socket|curl]`.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { parseArgs } from "node:util";
import { sql } from "drizzle-orm";
import { AmiParser } from "../dami/parser.ts";
import { startApi } from "../daemon/api/start.ts";
import { startHttp } from "../daemon/http.ts";
import { uuidv7 } from "../daemon/ids.ts";
import { Ingest } from "../daemon/ingest.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";
import { openStore } from "../daemon/store.ts";
import { selectRows } from "../queries/db.ts";
import { createTestDatabase } from "../tests/pg.ts";
import { fixtureEvents } from "./event_stream.ts";
import { cpuSeconds, machineTicks } from "./proc.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const now = () => performance.timeOrigin + performance.now();

/** CPU seconds of this process's main thread (JavaScript, and Deno's I/O with it). */
function mainThreadSeconds(): number {
  const fields = Deno.readTextFileSync(`/proc/self/task/${Deno.pid}/stat`).split(") ")[1]
    .split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds this process spent in the kernel. */
function sysSeconds(): number {
  const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return Number(fields[12]) / 100;
}

function rssMb(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(status.match(/VmRSS:\s+(\d+) kB/)?.[1] ?? 0) / 1024;
}

/** Lines from a readable byte stream. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  for await (const chunk of stream) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
    }
  }
}

// ---------------------------------------------------------------- the daemon side

/** The daemon's read and write path in this process, driven by commands on stdin. */
async function serverRole(): Promise<void> {
  const database = await createTestDatabase("bench_stream");
  const dataDir = await Deno.makeTempDir({ prefix: "dami-bench-stream-" });
  const store = await openStore({ url: database.url, dataDir });
  let commitTimes = new Float64Array(0);
  let committed = 0;
  let committedTarget = Infinity;
  let allCommitted = () => {};
  const handle = startApi({ db: store.db });
  const api = handle;
  const ingest = await Ingest.open({
    store,
    dataDir,
    onCommitted: (receivedAt) => {
      const at = now();
      for (let i = 0; i < receivedAt.length; i++) {
        if (committed < commitTimes.length) commitTimes[committed] = at;
        committed++;
      }
      api.wake();
      if (committed >= committedTarget) allCommitted();
    },
  });
  await api.ready;
  const http = startHttp({
    listen: "127.0.0.1:0",
    servers: [],
    storeHealth: () => ({ writable: true }),
    metrics: new DaemonMetrics(),
    api,
  });
  const wire = fixtureEvents().map((e) => encoder.encode(e));
  const session = uuidv7();
  // As the daemon's supervisor: events as wire bytes straight to their rows, the rest parsed.
  const parser = new AmiParser({
    expectBanner: false,
    eventBytes: (bytes, start, end, seq, receivedAt) =>
      ingest.eventBytes("pbx1", session, bytes, start, end, seq, receivedAt),
  });
  let fedTotal = 0;
  const reply = (value: unknown) => console.log(JSON.stringify(value));
  const maxId = async () =>
    Number(
      (await selectRows<{ id: string | null }>(
        store.db,
        sql`select max(id)::text as id from ami_events`,
      ))[0].id ?? 0,
    );
  /** Feeds `count` events into Ingest as a socket would deliver them. */
  const feedBytes = (count: number) => {
    const parts: Uint8Array[] = [];
    let size = 0;
    for (let i = 0; i < count; i++) {
      const event = wire[(fedTotal + i) % wire.length];
      parts.push(event);
      size += event.length;
    }
    const bytes = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    for (const msg of parser.push(bytes)) ingest.event("pbx1", session, msg);
    fedTotal += count;
  };
  const expect = (events: number) => {
    const done = Promise.withResolvers<void>();
    committedTarget = committed + events;
    allCommitted = done.resolve;
    return done.promise;
  };
  reply({ port: http.port });
  const input = lines(Deno.stdin.readable);
  for await (const line of input) {
    const [command, a, b] = line.trim().split(/\s+/);
    if (command === "feed") {
      const rate = Number(a);
      const events = rate * Number(b);
      const firstId = (await maxId()) + 1;
      commitTimes = new Float64Array(events);
      committed = 0;
      const done = expect(events);
      const rssBefore = rssMb();
      let rssMax = rssBefore;
      const sampler = setInterval(() => rssMax = Math.max(rssMax, rssMb()), 100);
      // Where the delay goes: when the tail appended each batch (its last id, the time),
      // and how late this thread's timers fire (GC pauses, long tasks).
      const appends: number[] = [];
      const unlisten = (await handle.ready).tail.listen((batch) => appends.push(batch.to, now()));
      const lags: number[] = [];
      let tick = performance.now();
      const lagTimer = setInterval(() => {
        const t = performance.now();
        lags.push(t - tick - 10);
        tick = t;
      }, 10);
      const cpuBefore = cpuSeconds();
      const started = performance.now();
      let fed = 0;
      while (fed < events) {
        const due = Math.min(events, Math.floor(((performance.now() - started) / 1000) * rate));
        if (due > fed) {
          feedBytes(due - fed);
          fed = due;
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      await done;
      clearInterval(sampler);
      clearInterval(lagTimer);
      await new Promise((resolve) => setTimeout(resolve, 500));
      unlisten();
      const file = await Deno.makeTempFile({ prefix: "dami-commits-" });
      await Deno.writeFile(file, new Uint8Array(commitTimes.buffer));
      const appendsFile = await Deno.makeTempFile({ prefix: "dami-appends-" });
      await Deno.writeFile(appendsFile, new Uint8Array(Float64Array.from(appends).buffer));
      const sortedLags = Float64Array.from(lags).sort();
      (globalThis as { gc?: () => void }).gc?.();
      const heapMb = Math.round(Deno.memoryUsage().heapUsed / 2 ** 20);
      const cpu = Math.round(
        (cpuSeconds() - cpuBefore) / ((performance.now() - started) / 1000) * 100,
      );
      reply({
        firstId,
        lastId: await maxId(),
        events,
        file,
        appendsFile,
        batches: appends.length / 2,
        lagP99Ms: percentile(sortedLags, 0.99),
        lagMaxMs: percentile(sortedLags, 1),
        rssBefore,
        rssMax,
        heapMb,
        cpu,
      });
    } else if (command === "burst") {
      const events = Number(a);
      committed = 0;
      commitTimes = new Float64Array(0);
      const done = expect(events);
      const cpuBefore = cpuSeconds();
      const sysBefore = sysSeconds();
      const ticksBefore = machineTicks();
      const mainBefore = mainThreadSeconds();
      const started = performance.now();
      for (let fed = 0; fed < events; fed += 500) {
        feedBytes(Math.min(500, events - fed));
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      await done;
      const seconds = (performance.now() - started) / 1000;
      reply({
        events,
        eventsPerSecond: Math.round(events / seconds),
        cpuMsPer1000: Math.round((cpuSeconds() - cpuBefore) / events * 1e6),
        sysMsPer1000: Math.round((sysSeconds() - sysBefore) / events * 1e6),
        mainThreadPercent: Math.round((mainThreadSeconds() - mainBefore) / seconds * 100),
        machineIdlePercent: (() => {
          const t = machineTicks();
          const idle = t.idle - ticksBefore.idle;
          return Math.round(idle / (idle + t.busy - ticksBefore.busy) * 100);
        })(),
      });
    } else if (command === "fill") {
      // A large log written straight by SQL (the ingest rate is measured elsewhere):
      // copies of the fixtures' events, as stored by a first `feed`.
      const events = Number(a);
      const template = await maxId();
      for (let done = 0; done < events; done += 100_000) {
        await store.db.execute(sql`
          insert into ami_events (server, session_id, seq, received_at, event, uniqueid,
                                  linkedid, channel, action_id, fields)
          select t.server, ${uuidv7()}::uuid, g, now(), t.event, t.uniqueid, t.linkedid,
                 t.channel, t.action_id, t.fields
            from generate_series(1, ${Math.min(100_000, events - done)}) g
            join ami_events t on t.id = 1 + (g % ${template})`);
      }
      await store.db.execute(sql`vacuum analyze ami_events`);
      // The tail (and the live state) follow the new rows before the replay is measured.
      const lastId = await maxId();
      const ready = await handle.ready;
      while (ready.tail.horizon < lastId) await new Promise((resolve) => setTimeout(resolve, 50));
      reply({ lastId });
    } else if (command === "watch") {
      // RSS sampling until `unwatch`.
      (globalThis as { gc?: () => void }).gc?.();
      const heapBeforeMb = Math.round(Deno.memoryUsage().heapUsed / 2 ** 20);
      const rssBefore = rssMb();
      let rssMax = rssBefore;
      const sampler = setInterval(() => rssMax = Math.max(rssMax, rssMb()), 100);
      reply({ watching: true, rssBefore, heapBeforeMb });
      for (let next = await input.next(); !next.done; next = await input.next()) {
        if (next.value.trim() === "unwatch") break;
      }
      clearInterval(sampler);
      (globalThis as { gc?: () => void }).gc?.();
      reply({ rssBefore, rssMax, heapMb: Math.round(Deno.memoryUsage().heapUsed / 2 ** 20) });
    } else if (command === "streams") {
      // Waits until `a` stream clients are connected.
      const api = await handle.ready;
      while (api.streams < Number(a)) await new Promise((resolve) => setTimeout(resolve, 20));
      reply({ streams: api.streams });
    } else if (command === "streams-open") {
      reply({ streams: (await handle.ready).streams });
    } else if (command === "quit") {
      break;
    }
  }
  await http.close();
  await api.stop();
  await ingest.close();
  await store.close();
  await database.drop();
  await Deno.remove(dataDir, { recursive: true });
}

// ---------------------------------------------------------------- the clients

/**
 * How a bench client reads its stream:
 * - `fetch`: Deno's `fetch`, the body as a `ReadableStream` (what a Deno or browser
 *   program would do; the most costly per byte);
 * - `socket`: a plain TCP connection (`Deno.connect`), an HTTP/1.0 request (so the
 *   body is the bare stream, without chunked framing) and reads of up to 256 KiB into
 *   one buffer per client: the cheapest a JavaScript client reads a socket.
 */
export type ClientTransport = "fetch" | "socket";

/** A stream's body as chunks, each with the time it was read from the socket. */
type Body = AsyncIterable<{ chunk: Uint8Array; at: number }>;

async function openFetch(port: number, lastId: number | undefined, signal: AbortSignal) {
  const response = await fetch(`http://127.0.0.1:${port}/api/events`, {
    signal,
    headers: lastId === undefined ? {} : { "last-event-id": String(lastId) },
  });
  return (async function* (): Body {
    for await (const chunk of response.body!) yield { chunk, at: now() };
  })();
}

async function openSocket(port: number, lastId: number | undefined, signal: AbortSignal) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  signal.addEventListener("abort", () => {
    try {
      conn.close();
    } catch {
      // closed already
    }
  });
  await conn.write(encoder.encode(
    `GET /api/events HTTP/1.0\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n` +
      (lastId === undefined ? "" : `last-event-id: ${lastId}\r\n`) + "\r\n",
  ));
  const buffer = new Uint8Array(256 * 1024);
  return (async function* (): Body {
    let head = true;
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return;
      const at = now();
      let chunk = buffer.subarray(0, n);
      if (head) {
        // The status line and headers, assumed to come in the first read.
        const end = chunk.findIndex((b, i) =>
          b === 0x0d && chunk[i + 1] === 0x0a && chunk[i + 2] === 0x0d && chunk[i + 3] === 0x0a
        );
        if (end < 0) throw new Error("no response head in the first read");
        head = false;
        chunk = chunk.subarray(end + 4);
      }
      yield { chunk, at };
    }
  })();
}

/**
 * `count` live clients; on stdin `stop`, writes every `sample`th id's arrival time.
 * With `sample` 0 the clients only read (no parsing): the ingest scenario's load.
 */
async function clientsRole(
  port: number,
  count: number,
  sample: number,
  transport: ClientTransport,
): Promise<void> {
  const open = transport === "fetch" ? openFetch : openSocket;
  const samples: number[][] = [];
  const controllers: AbortController[] = [];
  let counted = 0;
  let bytes = 0;
  const readers = [];
  let reconnects = 0;
  let stopping = false;
  // How late this process's timers fire: a client thread too busy to read its sockets
  // in time shows here, not in the daemon.
  const lags: number[] = [];
  let tick = performance.now();
  const lagTimer = setInterval(() => {
    const t = performance.now();
    lags.push(t - tick - 10);
    tick = t;
  }, 10);
  for (let c = 0; c < count; c++) {
    const controller = new AbortController();
    controllers.push(controller);
    const mine: number[] = [];
    samples.push(mine);
    let lastId: number | undefined;
    let body = await open(port, lastId, controller.signal);
    readers.push((async () => {
      // As EventSource does: a cut stream is resumed from the last id.
      for (;;) {
        // Only the `id:` lines are read: JSON holds no raw newline, so a native newline
        // search jumps over each data line.
        let pending: Uint8Array | undefined;
        try {
          for await (const { chunk: received, at } of body) {
            bytes += received.byteLength;
            if (sample === 0) continue;
            let chunk = received;
            if (pending !== undefined) {
              chunk = new Uint8Array(pending.length + received.length);
              chunk.set(pending);
              chunk.set(received, pending.length);
              pending = undefined;
            }
            let start = 0;
            for (;;) {
              const nl = chunk.indexOf(0x0a, start);
              if (nl < 0) {
                // Carry a partial line only when it may be an id line.
                if (chunk[start] === 0x69) pending = chunk.slice(start);
                break;
              }
              if (
                chunk[start] === 0x69 && chunk[start + 1] === 0x64 && chunk[start + 2] === 0x3a
              ) {
                let id = 0;
                for (let i = start + 4; i < nl; i++) id = id * 10 + chunk[i] - 0x30;
                counted++;
                lastId = id;
                if (id % sample === 0) mine.push(id, at);
              }
              start = nl + 1;
            }
          }
        } catch {
          // cut by the daemon (too slow), or aborted at stop
        }
        if (stopping) return;
        reconnects++;
        try {
          body = await open(port, lastId, controller.signal);
        } catch {
          return;
        }
      }
    })());
  }
  console.log(JSON.stringify({ connected: count }));
  for await (const line of lines(Deno.stdin.readable)) if (line.trim() === "stop") break;
  stopping = true;
  clearInterval(lagTimer);
  for (const c of controllers) c.abort();
  await Promise.all(readers);
  const file = await Deno.makeTempFile({ prefix: "dami-arrivals-" });
  await Deno.writeTextFile(file, JSON.stringify(samples));
  const sortedLags = Float64Array.from(lags).sort();
  console.log(JSON.stringify({
    file,
    received: counted,
    bytes,
    reconnects,
    lagP99: percentile(sortedLags, 0.99),
    lagMax: percentile(sortedLags, 1),
    cpuSeconds: cpuSeconds(),
  }));
}

/** One client reading `since=0` to `until`; events/s. */
async function resumeRole(port: number, until: number): Promise<void> {
  const started = performance.now();
  const response = await fetch(`http://127.0.0.1:${port}/api/events?since=0`);
  const reader = response.body!.getReader();
  let count = 0;
  let carry = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // Messages counted by their `event: ami` line; the last id tells when to stop.
    const text = carry + decoder.decode(value, { stream: true });
    for (let i = text.indexOf("event: ami\n"); i >= 0; i = text.indexOf("event: ami\n", i + 1)) {
      count++;
    }
    const lastId = text.lastIndexOf("id: ");
    const end = lastId < 0 ? -1 : text.indexOf("\n", lastId);
    if (end > 0 && Number(text.slice(lastId + 4, end)) >= until && text.endsWith("\n\n")) break;
    carry = text.slice(-10); // shorter than the marker: never counted twice
  }
  const seconds = (performance.now() - started) / 1000;
  await reader.cancel();
  console.log(
    JSON.stringify({ events: count, seconds, eventsPerSecond: Math.round(count / seconds) }),
  );
}

// ---------------------------------------------------------------- the orchestrator

class Child {
  readonly #process: Deno.ChildProcess;
  readonly #lines: AsyncGenerator<string>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;

  constructor(args: string[]) {
    this.#process = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        // gc() before reading the heap: what is retained, not what awaits collection.
        "--v8-flags=--expose-gc",
        ...(args.includes("server") && Deno.env.get("BENCH_SERVER_FLAGS")
          ? Deno.env.get("BENCH_SERVER_FLAGS")!.split(" ")
          : []),
        new URL(import.meta.url).pathname,
        ...args,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = lines(this.#process.stdout);
    this.#writer = this.#process.stdin.getWriter();
  }

  // deno-lint-ignore no-explicit-any
  async read(): Promise<any> {
    for (;;) {
      const { value, done } = await this.#lines.next();
      if (done) throw new Error("the child process ended");
      if (value.startsWith("{")) return JSON.parse(value);
    }
  }

  // deno-lint-ignore no-explicit-any
  async ask(command: string): Promise<any> {
    await this.#writer.write(encoder.encode(command + "\n"));
    return await this.read();
  }

  async send(command: string): Promise<void> {
    await this.#writer.write(encoder.encode(command + "\n"));
  }

  async end(): Promise<void> {
    await this.#writer.close().catch(() => {});
    await this.#process.status;
  }
}

/** Stream clients per process: one JavaScript thread reads about 25 streams at 5,000 events/s. */
const CLIENTS_PER_PROCESS = 25;

async function startClients(
  port: number,
  clients: number,
  options: { transport: ClientTransport; perProcess: number; sample?: number },
): Promise<Child[]> {
  const children: Child[] = [];
  for (let left = clients; left > 0; left -= options.perProcess) {
    const n = Math.min(options.perProcess, left);
    const child = new Child([
      "--role",
      "clients",
      "--port",
      String(port),
      "--clients",
      String(n),
      "--transport",
      options.transport,
      "--sample",
      String(options.sample ?? 10),
    ]);
    await child.read();
    children.push(child);
  }
  return children;
}

async function stopClients(
  children: readonly Child[],
): Promise<
  {
    arrivals: number[][];
    received: number;
    reconnects: number;
    lag: { p99: number; max: number; cpuSeconds: number };
  }
> {
  const arrivals: number[][] = [];
  let received = 0;
  let reconnects = 0;
  const lag = { p99: 0, max: 0, cpuSeconds: 0 };
  for (const child of children) {
    const answer = await child.ask("stop");
    arrivals.push(...JSON.parse(await Deno.readTextFile(answer.file)));
    received += answer.received;
    reconnects += answer.reconnects;
    lag.p99 = Math.max(lag.p99, answer.lagP99);
    lag.max = Math.max(lag.max, answer.lagMax);
    lag.cpuSeconds += answer.cpuSeconds;
    await Deno.remove(answer.file);
    await child.end();
  }
  return { arrivals, received, reconnects, lag };
}

function percentile(sorted: Float64Array, p: number): number {
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] * 10) / 10;
}

/** Figures of one scenario. */
export type StreamBenchResult = Record<string, string | number>;

/** How the clients of {@linkcode runStreamBench} read. */
export interface StreamBenchClients {
  /** The live scenario's clients. @default {"socket"} */
  transport?: ClientTransport;
  /** Live clients per process. @default {25} */
  perProcess?: number;
  /**
   * The ingest scenario's clients: `curl` (one `curl -N` process per client) or
   * `socket` (all in one process, reading and discarding 256 KiB at a time).
   * @default {"socket"}
   */
  ingest?: "curl" | "socket";
}

/** Runs the scenarios; each figure one object. */
export async function runStreamBench(
  scenarios: readonly string[] = ["live", "ingest", "resume"],
  clients = 100,
  resumeEvents = 1_000_000,
  how: StreamBenchClients = {},
): Promise<StreamBenchResult[]> {
  const transport = how.transport ?? "socket";
  const perProcess = how.perProcess ?? CLIENTS_PER_PROCESS;
  const ingestClients = how.ingest ?? "socket";
  const results: StreamBenchResult[] = [];
  if (scenarios.includes("live")) {
    const server = new Child(["--role", "server"]);
    const { port } = await server.read();
    const warm = await server.ask("feed 5000 2"); // warm-up: the tail, the JIT, the pool
    await Deno.remove(warm.file);
    await Deno.remove(warm.appendsFile);
    const followers = await startClients(port, clients, { transport, perProcess });
    const fed = await server.ask("feed 5000 20");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const { arrivals, received, reconnects, lag: clientLag } = await stopClients(followers);
    const commits = new Float64Array((await Deno.readFile(fed.file)).buffer);
    const appends = new Float64Array((await Deno.readFile(fed.appendsFile)).buffer);
    /** When the tail appended the batch holding `id` (batches in id order). */
    const appendedAt = (id: number): number | undefined => {
      let lo = 0, hi = appends.length / 2;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (appends[mid * 2] < id) lo = mid + 1;
        else hi = mid;
      }
      return lo < appends.length / 2 ? appends[lo * 2 + 1] : undefined;
    };
    const delays: number[] = [];
    const toTail: number[] = [];
    const toClient: number[] = [];
    for (const client of arrivals) {
      for (let i = 0; i < client.length; i += 2) {
        const index = client[i] - fed.firstId;
        if (index < 0 || index >= commits.length) continue;
        delays.push(client[i + 1] - commits[index]);
        const appended = appendedAt(client[i]);
        if (appended !== undefined) {
          toTail.push(appended - commits[index]);
          toClient.push(client[i + 1] - appended);
        }
      }
    }
    const sorted = Float64Array.from(delays).sort();
    const sortedTail = Float64Array.from(toTail).sort();
    const sortedClient = Float64Array.from(toClient).sort();
    results.push({
      scenario: "live",
      clients,
      transport,
      clientProcesses: followers.length,
      rate: 5000,
      seconds: 20,
      idsContiguous: fed.lastId - fed.firstId + 1 === fed.events ? "yes" : "no",
      messagesReceived: received,
      reconnects,
      samples: sorted.length,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
      maxMs: percentile(sorted, 1),
      // The split: commit → the tail appends the batch; append → read by the client.
      commitToTailP50Ms: percentile(sortedTail, 0.5),
      commitToTailP99Ms: percentile(sortedTail, 0.99),
      tailToClientP50Ms: percentile(sortedClient, 0.5),
      tailToClientP99Ms: percentile(sortedClient, 0.99),
      tailBatches: fed.batches,
      daemonTimerLagP99Ms: fed.lagP99Ms,
      daemonTimerLagMaxMs: fed.lagMaxMs,
      clientTimerLagP99Ms: clientLag.p99,
      clientTimerLagMaxMs: clientLag.max,
      clientCpuSeconds: Math.round(clientLag.cpuSeconds * 10) / 10,
      daemonRssBeforeMb: Math.round(fed.rssBefore),
      daemonRssMaxMb: Math.round(fed.rssMax),
      daemonHeapAfterMb: fed.heapMb,
      daemonCpuPercent: fed.cpu,
    });
    await Deno.remove(fed.file);
    await Deno.remove(fed.appendsFile);
    await server.send("quit");
    await server.end();
  }
  if (scenarios.includes("ingest")) {
    const server = new Child(["--role", "server"]);
    const { port } = await server.read();
    await server.ask("burst 50000"); // warm-up
    const alone = await server.ask("burst 200000");
    // The clients share the daemon's two cores, so what they cost per byte read is in
    // the figure: `curl` is a process per client (100 processes reading 16 KiB at a
    // time), `socket` one process reading every stream 256 KiB at a time and
    // discarding it (what a relay or a fan-out proxy in front of DAMI would do).
    let stopReaders: () => Promise<{ cpuSeconds: number; bytes: number }>;
    if (ingestClients === "curl") {
      const curls = Array.from({ length: clients }, () =>
        new Deno.Command("curl", {
          args: ["-N", "-s", "-o", "/dev/null", `http://127.0.0.1:${port}/api/events`],
          stdout: "null",
          stderr: "null",
        }).spawn());
      stopReaders = async () => {
        let cpu = 0;
        for (const curl of curls) {
          const fields = (await Deno.readTextFile(`/proc/${curl.pid}/stat`)).split(") ")[1]
            .split(" ");
          cpu += (Number(fields[11]) + Number(fields[12])) / 100;
          curl.kill();
        }
        await Promise.all(curls.map((c) => c.status));
        return { cpuSeconds: cpu, bytes: NaN };
      };
    } else {
      const readers = await startClients(port, clients, {
        transport: "socket",
        perProcess: clients,
        sample: 0,
      });
      stopReaders = async () => {
        const answer = await readers[0].ask("stop");
        await Deno.remove(answer.file);
        await readers[0].end();
        return { cpuSeconds: answer.cpuSeconds, bytes: answer.bytes };
      };
    }
    const { streams } = await server.ask("streams " + clients);
    const followed = await server.ask("burst 200000");
    const read = await stopReaders();
    // Other work on the machine changes between runs: "alone" is measured before and
    // after the followed run, and the figure compares with their mean.
    for (let waited = 0; waited < 20_000; waited += 50) {
      if ((await server.ask("streams-open")).streams === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const aloneAfter = await server.ask("burst 200000");
    const aloneRate = (alone.eventsPerSecond + aloneAfter.eventsPerSecond) / 2;
    results.push({
      scenario: "ingest",
      clients: streams,
      clientsAre: ingestClients === "curl" ? "curl processes" : "sockets in one process",
      events: 200_000,
      eventsPerSecondAlone: alone.eventsPerSecond,
      eventsPerSecondFollowed: followed.eventsPerSecond,
      eventsPerSecondAloneAfter: aloneAfter.eventsPerSecond,
      slowdownPercent: Math.round((1 - followed.eventsPerSecond / aloneRate) * 1000) / 10,
      daemonCpuMsPer1000EventsAlone: alone.cpuMsPer1000,
      daemonCpuMsPer1000EventsFollowed: followed.cpuMsPer1000,
      daemonSysMsPer1000EventsAlone: alone.sysMsPer1000,
      daemonSysMsPer1000EventsFollowed: followed.sysMsPer1000,
      daemonMainThreadPercentAlone: alone.mainThreadPercent,
      daemonMainThreadPercentFollowed: followed.mainThreadPercent,
      machineIdlePercentAlone: alone.machineIdlePercent,
      machineIdlePercentFollowed: followed.machineIdlePercent,
      clientsCpuSeconds: Math.round(read.cpuSeconds * 10) / 10,
      clientsMbRead: Math.round(read.bytes / 1e6),
    });
    await server.send("quit");
    await server.end();
  }
  if (scenarios.includes("resume")) {
    const server = new Child(["--role", "server"]);
    const { port } = await server.read();
    const template = await server.ask("feed 20000 1"); // the template events
    await Deno.remove(template.file);
    await Deno.remove(template.appendsFile);
    const { lastId } = await server.ask(`fill ${resumeEvents}`);
    const watch = await server.ask("watch");
    const reader = new Child([
      "--role",
      "resume",
      "--port",
      String(port),
      "--until",
      String(lastId),
    ]);
    const read = await reader.read();
    await reader.end();
    const memory = await server.ask("unwatch");
    results.push({
      scenario: "resume",
      events: read.events,
      seconds: Math.round(read.seconds * 10) / 10,
      eventsPerSecond: read.eventsPerSecond,
      daemonRssBeforeMb: Math.round(watch.rssBefore),
      daemonRssMaxMb: Math.round(memory.rssMax),
      daemonHeapBeforeMb: watch.heapBeforeMb,
      daemonHeapAfterMb: memory.heapMb,
    });
    await server.send("quit");
    await server.end();
  }
  return results;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      role: { type: "string" },
      scenario: { type: "string" },
      port: { type: "string" },
      clients: { type: "string" },
      until: { type: "string" },
      sample: { type: "string" },
      events: { type: "string" },
      transport: { type: "string" },
      "per-process": { type: "string" },
      "ingest-clients": { type: "string" },
    },
  });
  if (values.role === "server") await serverRole();
  else if (values.role === "clients") {
    await clientsRole(
      Number(values.port),
      Number(values.clients ?? 100),
      Number(values.sample ?? 10),
      (values.transport ?? "socket") as ClientTransport,
    );
  } else if (values.role === "resume") await resumeRole(Number(values.port), Number(values.until));
  else {
    const scenarios = values.scenario === undefined ? undefined : values.scenario.split(",");
    const clients = Number(values.clients ?? 100);
    const events = Number(values.events ?? 1_000_000);
    const how: StreamBenchClients = {
      transport: values.transport as ClientTransport | undefined,
      perProcess: values["per-process"] === undefined ? undefined : Number(values["per-process"]),
      ingest: values["ingest-clients"] as "curl" | "socket" | undefined,
    };
    for (const result of await runStreamBench(scenarios, clients, events, how)) {
      console.log(JSON.stringify({ bench: "stream", ...result }));
    }
  }
}
