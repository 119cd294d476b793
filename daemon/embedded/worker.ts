/**
 * The embedded store's thread: PGlite and the {@linkcode WireServer} in front of it run
 * in this Web Worker, so that a long query (PGlite runs it synchronously, in
 * WebAssembly) blocks this thread only, never the daemon's event loop, which keeps
 * reading AMI, answering HTTP and sending keepalives. Started by `embedded.ts`; speaks
 * {@linkcode WorkerRequest} and {@linkcode WorkerReply}.
 *
 * @module
 */
import { PGlite } from "@electric-sql/pglite";
import { WireServer } from "./wire_server.ts";

/** What the daemon asks of the worker. */
export type WorkerRequest =
  | {
    type: "open";
    /** PGlite's data directory. */
    dir: string;
    hostname: string;
    /** 0: any free port. */
    port: number;
    /** WebAssembly memory at start, bytes. */
    initialMemory: number;
    /** PostgreSQL settings (`name=value`) passed at start. */
    settings: string[];
    idleInTransactionMs: number;
  }
  | { type: "close" };

/** What the worker answers. */
export type WorkerReply =
  | { type: "listening"; hostname: string; port: number }
  | { type: "error"; message: string; addrInUse: boolean }
  | { type: "closed" };

/** The settings PGlite starts PostgreSQL with, plus ours. */
function startParams(settings: string[]): string[] {
  const defaults = (PGlite as unknown as { defaultStartParams: string[] }).defaultStartParams;
  return [...defaults, ...settings.flatMap((s) => ["-c", s])];
}

/** This worker's global scope (Deno's types describe a window). */
const scope = self as unknown as {
  postMessage(reply: WorkerReply): void;
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  close(): void;
};

let db: PGlite | undefined;
let server: WireServer | undefined;
const post = (reply: WorkerReply) => scope.postMessage(reply);

scope.onmessage = async (event: MessageEvent<WorkerRequest>) => {
  const request = event.data;
  if (request.type === "close") {
    await server?.close();
    if (db !== undefined && !db.closed) await db.close();
    post({ type: "closed" });
    scope.close();
    return;
  }
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ hostname: request.hostname, port: request.port });
  } catch (error) {
    post({
      type: "error",
      message: `cannot serve SQL on ${request.hostname}:${request.port}: ${
        (error as Error).message
      }`,
      addrInUse: error instanceof Deno.errors.AddrInUse,
    });
    return;
  }
  try {
    db = new PGlite(request.dir, {
      initialMemory: request.initialMemory,
      startParams: startParams(request.settings),
    });
    await db.waitReady;
  } catch (error) {
    listener.close();
    post({ type: "error", message: (error as Error).message, addrInUse: false });
    return;
  }
  server = new WireServer(db, { idleInTransactionMs: request.idleInTransactionMs });
  server.serve(listener);
  const addr = listener.addr as Deno.NetAddr;
  post({ type: "listening", hostname: addr.hostname, port: addr.port });
};
