/**
 * The daemon's memory at a steady event rate: `daemon/main.ts` as a subprocess, on
 * PostgreSQL, fed by a simulated PBX (an AMI peer in this process) at `rate` events/s
 * for `seconds`, the fixtures' real call events with fresh uniqueids per cycle. The
 * daemon's RSS is sampled from `/proc/<pid>/status` every second; its V8 heap figures
 * come from its own `/metrics` (`dami_process_memory_bytes`).
 *
 * Reports the steady RSS (median of the second half of the run), the peak RSS, and the
 * heap used, heap total and external memory at the end, so that a regression can be
 * placed (V8 heap, buffers outside it, or the allocator).
 *
 * By default the daemon runs with the V8 flags of `deno task start` (deno.json):
 * `--optimize-for-size`, which keeps V8's heap close to what is live, at about twice
 * the CPU time (figures in the README). `--v8-flags ""` measures without.
 *
 * Run: `deno task bench daemon`, or `deno run -A bench/daemon_bench.ts [--rate N]
 * [--seconds N] [--v8-flags FLAGS] [--profile]`.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createTestDatabase } from "../tests/pg.ts";
import { fixtureEvents } from "./event_stream.ts";
import { cpuSeconds } from "./proc.ts";

/** Options of {@linkcode runDaemonBench}. */
export interface DaemonBenchOptions {
  /**
   * Events per second the simulated PBX sends.
   * @default {2000}
   */
  rate?: number;
  /**
   * Length of the run.
   * @default {60}
   */
  seconds?: number;
  /**
   * V8 flags for the daemon (`--v8-flags=...`), to compare settings; `""` for none.
   * @default {the flags of `deno task start` in deno.json}
   */
  v8Flags?: string;
  /**
   * Also run V8's sampling heap profiler over the second half of the run (through the
   * inspector) and report the allocation sites of the memory still live at its end.
   */
  profile?: boolean;
}

/** Figures of one run. */
export interface DaemonBenchResult {
  scenario: "daemon-rss";
  rate: number;
  seconds: number;
  v8Flags: string | null;
  eventsSent: number;
  eventsStored: number;
  /** Median RSS over the second half of the run. */
  steadyRssMb: number;
  peakRssMb: number;
  heapUsedMb: number;
  heapTotalMb: number;
  externalMb: number;
  /** CPU time of the daemon over the run, as a share of one core. */
  cpuPercent: number;
  /** With `profile`: the allocation sites holding the most live memory, in MB. */
  liveBySite?: Record<string, number>;
}

const MAIN = fileURLToPath(new URL("../daemon/main.ts", import.meta.url));

/** The V8 flags `deno task start` runs the daemon with: what is measured by default. */
export function shippedV8Flags(): string {
  const config = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));
  return /--v8-flags=(\S+)/.exec(config.tasks.start)?.[1] ?? "";
}
const TICK_MS = 10;
const encoder = new TextEncoder();

/** The fixture events with their uniqueids and linkedids made unique to `cycle`. */
function cycleEvents(events: readonly string[], cycle: number): string[] {
  return events.map((e) =>
    e.replace(/^((?:Dest)?(?:Uniqueid|Linkedid|UniqueID)): (.+)$/gim, `$1: $2-${cycle}`)
  );
}

/**
 * A simulated PBX for one connection: answers every action with Success (Ping with
 * Pong), and sends `rate` events/s in 10 ms ticks until `stop` aborts.
 */
async function servePbx(
  listener: Deno.Listener,
  rate: number,
  stop: AbortSignal,
  counter: { sent: number },
): Promise<void> {
  const conn = await listener.accept();
  await conn.write(encoder.encode("Asterisk Call Manager/9.0.0\r\n"));
  let loggedIn = false;
  const reading = (async () => {
    const decoder = new TextDecoder();
    const buf = new Uint8Array(16 * 1024);
    let pending = "";
    for (let n; (n = await conn.read(buf).catch(() => null)) !== null;) {
      pending += decoder.decode(buf.subarray(0, n), { stream: true });
      let end;
      while ((end = pending.indexOf("\r\n\r\n")) >= 0) {
        const action = pending.slice(0, end);
        pending = pending.slice(end + 4);
        const id = /ActionID: (.*)/i.exec(action)?.[1] ?? "";
        const ping = /^Action: Ping/im.test(action);
        await conn.write(encoder.encode(
          `Response: Success\r\nActionID: ${id}\r\n${
            ping ? "Ping: Pong\r\n" : "Message: Authentication accepted\r\n"
          }\r\n`,
        )).catch(() => {});
        loggedIn = true;
      }
    }
  })();
  const base = fixtureEvents();
  let cycle = 0;
  let queue: string[] = [];
  const started = performance.now();
  while (!stop.aborted) {
    await new Promise((resolve) => setTimeout(resolve, TICK_MS));
    if (!loggedIn) continue;
    const due = Math.floor(((performance.now() - started) / 1000) * rate) - counter.sent;
    let text = "";
    for (let i = 0; i < due; i++) {
      if (queue.length === 0) queue = cycleEvents(base, cycle++);
      text += queue.shift();
    }
    counter.sent += Math.max(due, 0);
    if (text) await conn.write(encoder.encode(text)).catch(() => {});
  }
  try {
    conn.close();
  } catch { /* closed */ }
  await reading;
}

function rssKb(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
}

async function scrape(url: string): Promise<Map<string, number>> {
  const figures = new Map<string, number>();
  const text = await (await fetch(url)).text();
  for (const line of text.split("\n")) {
    const m = /^(\w+(?:\{[^}]*\})?) ([\d.e+-]+)$/.exec(line);
    if (m) figures.set(m[1], Number(m[2]));
  }
  return figures;
}

/** Runs the daemon at `rate` events/s for `seconds` and reports its memory. */
export async function runDaemonBench(options: DaemonBenchOptions = {}): Promise<DaemonBenchResult> {
  const rate = options.rate ?? 2000;
  const seconds = options.seconds ?? 60;
  const v8Flags = options.v8Flags ?? shippedV8Flags();
  const database = await createTestDatabase("bench_daemon");
  const dir = await Deno.makeTempDir({ prefix: "dami-bench-daemon-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stop = new AbortController();
  const counter = { sent: 0 };
  const pbx = servePbx(listener, rate, stop.signal, counter);
  await Deno.writeTextFile(
    `${dir}/dami.config.jsonc`,
    JSON.stringify({
      database: { url: database.url },
      dataDir: `${dir}/data`,
      http: { listen: "127.0.0.1:0" },
      logging: { level: "info" },
      servers: [{
        name: "pbx1",
        host: "127.0.0.1",
        port: (listener.addr as Deno.NetAddr).port,
        username: "dami",
        secret: "bench",
        auth: "plain",
      }],
    }),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
      ...(options.profile ? ["--inspect=127.0.0.1:9239"] : []),
      MAIN,
      "--config",
      `${dir}/dami.config.jsonc`,
    ],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  // The HTTP address is in the log; the rest of the log is read and discarded.
  let metricsUrl = "";
  const lines = child.stdout.pipeThrough(new TextDecoderStream());
  const found = Promise.withResolvers<void>();
  const draining = (async () => {
    for await (const chunk of lines) {
      const m = /HTTP on (http:\/\/[\d.]+:\d+)/.exec(chunk);
      if (m && !metricsUrl) {
        metricsUrl = `${m[1]}/metrics`;
        found.resolve();
      }
    }
  })();
  await found.promise;
  console.error(`daemon: ${metricsUrl}; ${rate} events/s for ${seconds} s`);
  const samples: number[] = [];
  const cpuAtStart = cpuSeconds(child.pid);
  const startedAt = performance.now();
  let profiler: Inspector | undefined;
  while (performance.now() - startedAt < seconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    samples.push(rssKb(child.pid, "VmRSS") / 1024);
    if (options.profile && !profiler && samples.length >= seconds / 2) {
      profiler = await Inspector.connect("http://127.0.0.1:9239");
      await profiler.send("HeapProfiler.enable");
      await profiler.send("HeapProfiler.startSampling", { samplingInterval: 4096 });
    }
  }
  let liveBySite: Record<string, number> | undefined;
  if (profiler) {
    await profiler.send("HeapProfiler.collectGarbage");
    const { profile } = await profiler.send("HeapProfiler.stopSampling") as {
      profile: { head: ProfileNode };
    };
    liveBySite = topSites(profile.head, 15);
    profiler.close();
  }
  const peak = rssKb(child.pid, "VmHWM") / 1024;
  const cpuPercent = round(
    (100 * (cpuSeconds(child.pid) - cpuAtStart)) / ((performance.now() - startedAt) / 1000),
  );
  console.error("daemon: sampled; stopping");
  const figures = await scrape(metricsUrl);
  stop.abort();
  await pbx;
  listener.close();
  child.kill("SIGTERM");
  await child.status;
  await draining.catch(() => {});
  const secondHalf = samples.slice(Math.floor(samples.length / 2)).sort((a, b) => a - b);
  const mb = (name: string) => round((figures.get(name) ?? 0) / 1024 / 1024);
  const result: DaemonBenchResult = {
    scenario: "daemon-rss",
    rate,
    seconds,
    v8Flags: v8Flags || null,
    eventsSent: counter.sent,
    eventsStored: figures.get('dami_events_stored_total{server="pbx1"}') ?? 0,
    steadyRssMb: round(secondHalf[Math.floor(secondHalf.length / 2)] ?? 0),
    peakRssMb: round(peak),
    cpuPercent,
    heapUsedMb: mb('dami_process_memory_bytes{kind="heap_used"}'),
    heapTotalMb: mb('dami_process_memory_bytes{kind="heap_total"}'),
    externalMb: mb('dami_process_memory_bytes{kind="external"}'),
    liveBySite,
  };
  await database.drop();
  await Deno.remove(dir, { recursive: true });
  return result;
}

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** Live bytes per allocation site (function, file:line), the largest `count`, in MB. */
function topSites(head: ProfileNode, count: number): Record<string, number> {
  const sites = new Map<string, number>();
  const visit = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(/^.*\/(node_modules\/\.deno\/|wt\/[^/]+\/)?/, "");
    const key = `${functionName || "(anonymous)"} ${file}:${lineNumber + 1}`;
    sites.set(key, (sites.get(key) ?? 0) + node.selfSize);
    node.children.forEach(visit);
  };
  visit(head);
  return Object.fromEntries(
    [...sites].sort((a, b) => b[1] - a[1]).slice(0, count).map(([k, v]) => [k, round(v / 2 ** 20)]),
  );
}

/** A minimal Chrome DevTools protocol client over the inspector's WebSocket. */
class Inspector {
  #socket: WebSocket;
  #next = 1;
  #pending = new Map<number, (result: unknown) => void>();

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data as string);
      if (data.id !== undefined) this.#pending.get(data.id)?.(data.result);
    };
  }

  static async connect(httpUrl: string): Promise<Inspector> {
    const [target] = await (await fetch(`${httpUrl}/json`)).json();
    const socket = new WebSocket(target.webSocketDebuggerUrl);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = reject;
    });
    return new Inspector(socket);
  }

  send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#next++;
    this.#socket.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve) => this.#pending.set(id, resolve));
  }

  close(): void {
    this.#socket.close();
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

if (import.meta.main) {
  const args = parseArgs({
    args: Deno.args,
    options: {
      rate: { type: "string" },
      seconds: { type: "string" },
      "v8-flags": { type: "string" },
      profile: { type: "boolean" },
    },
  }).values;
  console.log(JSON.stringify(
    await runDaemonBench({
      rate: args.rate === undefined ? undefined : Number(args.rate),
      seconds: args.seconds === undefined ? undefined : Number(args.seconds),
      v8Flags: args["v8-flags"],
      profile: args.profile,
    }),
  ));
}
