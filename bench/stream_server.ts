/**
 * A minimal AMI peer for benchmarks, in its own process: prints its port, answers one
 * Login, then writes `count` realistic events (the fixtures' mix) as fast as the client
 * reads, and keeps the socket open until the client closes it.
 *
 * Usage: deno run -A bench/stream_server.ts <count>
 * @module
 */
import { formatAmiMessage } from "../demo/ami_wire.ts";
import { eventBlock } from "./event_stream.ts";

const EVENTS_PER_BLOCK = 1000;

/** Serves one connection: waits for a Login, answers it, then writes `blocks` blocks. */
export async function serveStream(
  listener: Deno.Listener,
  blocks: number,
  block: Uint8Array,
): Promise<void> {
  const conn = await listener.accept();
  const buf = new Uint8Array(4096);
  const decoder = new TextDecoder();
  let seen = "";
  while (!/Action: Login[\s\S]*?\r?\n\r?\n/i.test(seen)) {
    const n = await conn.read(buf);
    if (n === null) return;
    seen += decoder.decode(buf.subarray(0, n));
  }
  const id = /ActionID: (.*)\r?\n/i.exec(seen)?.[1] ?? "";
  await writeAll(
    conn,
    new TextEncoder().encode(
      "Asterisk Call Manager/9.0.0\r\n" + formatAmiMessage([
        ["Response", "Success"],
        ["ActionID", id],
        ["Message", "Authentication accepted"],
      ]),
    ),
  );
  for (let i = 0; i < blocks; i++) await writeAll(conn, block);
  // Keep the socket open until the client has counted everything and closes.
  while ((await conn.read(buf).catch(() => null)) !== null) { /* drain */ }
  try {
    conn.close();
  } catch { /* closed by the peer */ }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array) {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/** The block of events the server repeats, and how many blocks make `count` events. */
export function streamPlan(count: number): { block: Uint8Array; blocks: number } {
  return {
    block: eventBlock(EVENTS_PER_BLOCK).bytes,
    blocks: Math.ceil(count / EVENTS_PER_BLOCK),
  };
}

if (import.meta.main) {
  const { block, blocks } = streamPlan(Number(Deno.args[0] ?? 1_000_000));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log((listener.addr as Deno.NetAddr).port);
  await serveStream(listener, blocks, block);
  listener.close();
}
