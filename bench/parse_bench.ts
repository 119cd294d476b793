/**
 * Receive-and-parse throughput over a loopback socket: a server streams the events of
 * real recorded Asterisk 20 calls (tests/fixtures: sip-calls, queue-call,
 * originate-local, in recorded order, cycled) after login as fast as the client reads;
 * each client runs in its own process and reports events/s and peak RSS. DAMI runs its
 * lossless path and both `DAMIData` paths; asterisk.io 0.1.1 on Node is the peer.
 *
 * Usage: deno run -A bench/parse_bench.ts [events] [rounds]
 * @module
 */
import { eventBlock, fixtureEvents } from "./event_stream.ts";
import { serveStream } from "./stream_server.ts";

/** One client's result. */
export interface ParseResult {
  client: string;
  events: number;
  ms: number;
  eventsPerSecond: number;
  peakRssMb: number;
  averageEventBytes: number;
}

const EVENTS_PER_BLOCK = 1000;

async function runClient(
  cmd: string,
  args: string[],
  blocks: number,
  expected: number,
  block: Uint8Array,
  extraArgs: string[] = [],
): Promise<Omit<ParseResult, "averageEventBytes">> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const serving = serveStream(listener, blocks, block);
  const out = await new Deno.Command(cmd, {
    args: [...args, String(port), String(expected), ...extraArgs],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  listener.close();
  await serving.catch(() => {});
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  if (!out.success || line === "") throw new Error(`${cmd} ${args.join(" ")} failed`);
  const r = JSON.parse(line) as { client: string; events: number; ms: number; peakRssMb: number };
  return { ...r, eventsPerSecond: Math.round(r.events / (r.ms / 1000)) };
}

/**
 * Runs DAMI's event paths (lossless `onMessage`, `on("*")`, `on(name)`, the daemon's wire → row) and the
 * strongest npm peer on the same stream of `count` events, one process each, `rounds`
 * times interleaved (A B C D A B C D ...), and keeps each client's best round: on a
 * shared machine a slow round says more about the neighbours than about the client.
 */
export async function parseBench(count = 1_000_000, rounds = 3): Promise<ParseResult[]> {
  const { bytes, averageBytes } = eventBlock(EVENTS_PER_BLOCK);
  const blocks = Math.ceil(count / EVENTS_PER_BLOCK);
  const here = new URL(".", import.meta.url).pathname;
  const averageEventBytes = Math.round(averageBytes);
  const names = [...new Set(fixtureEvents().map((e) => e.slice(7, e.indexOf("\r\n"))))];
  // asterisk.io classifies an event carrying both Response and ActionID (OriginateResponse)
  // as a response and never emits it: it is asked to count only what it can see.
  const peerPerBlock = new TextDecoder().decode(bytes).split("\r\n\r\n")
    .filter((m) => m.startsWith("Event:") && !(/\r\nResponse:/.test(m) && /\r\nActionID:/.test(m)))
    .length;
  const clients: Array<() => ReturnType<typeof runClient>> = [
    ...["lossless", "star", "event", "row"].map((mode) => () =>
      runClient(
        Deno.execPath(),
        ["run", "-A", `${here}parse_client_dami.ts`],
        blocks,
        blocks * EVENTS_PER_BLOCK,
        bytes,
        [mode, names.join(",")],
      )
    ),
    () =>
      runClient(
        "node",
        [`${here}parse_client_asterisk_io.cjs`],
        blocks,
        blocks * peerPerBlock,
        bytes,
      ),
  ];
  const best: ParseResult[] = [];
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < clients.length; i++) {
      const result = { ...await clients[i](), averageEventBytes };
      console.error(`  round ${round + 1}: ${result.client} ${result.eventsPerSecond} events/s`);
      if (best[i] === undefined || result.eventsPerSecond > best[i].eventsPerSecond) {
        best[i] = result;
      }
    }
  }
  return best;
}

if (import.meta.main) {
  const count = Number(Deno.args[0] ?? 1_000_000);
  const rounds = Number(Deno.args[1] ?? 3);
  for (const r of await parseBench(count, rounds)) console.log(JSON.stringify(r));
}
