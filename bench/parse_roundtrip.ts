/**
 * Action round trips over a loopback socket: `to("Ping")` with 1, 100 and 10,000
 * actions in flight, DAMI against asterisk.io 0.1.1 (Node), each client in its own
 * process, against one in-process server that answers every Ping as Asterisk 20 does
 * (`Response: Success`, `ActionID`, `Ping: Pong`, `Timestamp`).
 *
 * Usage: deno run -A bench/parse_roundtrip.ts
 * @module
 */

/** One client's result at one concurrency. */
export interface RoundTripResult {
  client: string;
  inFlight: number;
  actions: number;
  ms: number;
  actionsPerSecond: number;
}

const encoder = new TextEncoder();

/** Answers Login and Ping on one connection until the client closes it. */
async function serveActions(listener: Deno.TcpListener): Promise<void> {
  const conn = await listener.accept();
  conn.setNoDelay(true);
  await conn.write(encoder.encode("Asterisk Call Manager/9.0.0\r\n"));
  const decoder = new TextDecoder();
  const buf = new Uint8Array(64 * 1024);
  let pending = "";
  while (true) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    pending += decoder.decode(buf.subarray(0, n), { stream: true });
    let reply = "";
    let end: number;
    while ((end = pending.indexOf("\r\n\r\n")) !== -1) {
      const action = pending.slice(0, end);
      pending = pending.slice(end + 4);
      const id = /ActionID: (.*)/i.exec(action)?.[1] ?? "";
      reply += /^Action: Login/im.test(action)
        ? `Response: Success\r\nActionID: ${id}\r\nMessage: Authentication accepted\r\n\r\n`
        : `Response: Success\r\nActionID: ${id}\r\nPing: Pong\r\nTimestamp: 1795663535.026366\r\n\r\n`;
    }
    if (reply === "") continue;
    const bytes = encoder.encode(reply);
    let offset = 0;
    while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
  }
  try {
    conn.close();
  } catch { /* closed by the peer */ }
}

async function runClient(
  cmd: string,
  args: string[],
  actions: number,
  inFlight: number,
): Promise<RoundTripResult> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const serving = serveActions(listener);
  const out = await new Deno.Command(cmd, {
    args: [...args, String(port), String(actions), String(inFlight)],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  await serving.catch(() => {});
  listener.close();
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  if (!out.success || line === "") throw new Error(`${cmd} ${args.join(" ")} failed`);
  const r = JSON.parse(line) as { client: string; actions: number; ms: number };
  return {
    client: r.client,
    inFlight,
    actions: r.actions,
    ms: r.ms,
    actionsPerSecond: Math.round(r.actions / (r.ms / 1000)),
  };
}

/** DAMI then asterisk.io at 1, 100 and 10,000 actions in flight. */
export async function roundTripBench(): Promise<RoundTripResult[]> {
  const here = new URL(".", import.meta.url).pathname;
  const results: RoundTripResult[] = [];
  for (const [inFlight, actions] of [[1, 20_000], [100, 200_000], [10_000, 200_000]]) {
    results.push(
      await runClient(
        Deno.execPath(),
        ["run", "-A", `${here}parse_roundtrip_client_dami.ts`],
        actions,
        inFlight,
      ),
    );
    results.push(
      await runClient("node", [`${here}parse_roundtrip_client_asterisk_io.cjs`], actions, inFlight),
    );
  }
  return results;
}

if (import.meta.main) {
  for (const r of await roundTripBench()) console.log(JSON.stringify(r));
}
