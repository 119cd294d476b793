/**
 * The embedded store (PGlite in `<dataDir>/pglite`) as a PostgreSQL server on a local
 * address: PGlite runs in a Web Worker (`worker.ts`) behind the wire protocol
 * (`wire_server.ts`), and everyone, the daemon included, connects to it as to
 * PostgreSQL. So `psql`, `deno task query` and Grafana read the store while the daemon
 * writes it, and a long query never blocks the daemon's event loop.
 *
 * One process at a time opens the files (two PGlite on one directory corrupt it):
 * `<dataDir>/pglite.lock` is held with an exclusive advisory lock (released by the
 * system when the process ends, however it ends) and names the process; while the
 * server listens, `<dataDir>/sql.addr` holds its address, which the CLIs use to connect
 * to a running daemon instead of opening the files.
 *
 * @example
 * ```ts ignore
 * import { startEmbedded } from "./embedded.ts";
 * const embedded = await startEmbedded({ dataDir: "./data", listen: "127.0.0.1:5433" });
 * console.log(`psql ${embedded.url}`);
 * await embedded.close();
 * ```
 *
 * @module
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { WorkerReply, WorkerRequest } from "./worker.ts";

/** Options of {@linkcode startEmbedded}. */
export interface EmbeddedOptions {
  /** Data directory; the database lives in `<dataDir>/pglite`. */
  dataDir: string;
  /**
   * `host:port` to serve SQL on; port 0 picks a free one.
   * @default {"127.0.0.1:0"}
   */
  listen?: string;
  /**
   * Whether a missing database is created. False: a missing one is an error.
   * @default {true}
   */
  create?: boolean;
  /**
   * A client idle inside a transaction for longer, while another waits, is disconnected.
   * @default {10000}
   */
  idleInTransactionMs?: number;
}

/** A running embedded store. */
export interface Embedded {
  /** `postgres://postgres@host:port/postgres`: connect here. */
  readonly url: string;
  /** `host:port` the server listens on. */
  readonly address: string;
  /** Stops the server, closes the database, releases the lock. */
  close(): Promise<void>;
}

/**
 * PGlite's WebAssembly memory at start: the smallest its module accepts (PGlite 0.5.16
 * declares 2048 pages of 64 KiB). It grows as PostgreSQL asks and never shrinks, so
 * PostgreSQL's own buffers are kept small ({@linkcode EMBEDDED_SETTINGS}).
 */
const INITIAL_MEMORY = 128 * 1024 * 1024;

/**
 * PostgreSQL memory settings for the embedded store. PGlite starts with PostgreSQL's
 * defaults (128 MB shared_buffers), all of it inside the WebAssembly memory, which
 * then never shrinks. The store's working set is the recent partitions and indexes.
 */
export const EMBEDDED_SETTINGS: readonly string[] = [
  "shared_buffers=16MB",
  "work_mem=4MB",
  "maintenance_work_mem=16MB",
  "wal_buffers=1MB",
  "temp_buffers=2MB",
];

/** The address a running store serves on, written while it listens. */
export function addressFile(dataDir: string): string {
  return join(dataDir, "sql.addr");
}

function lockFile(dataDir: string): string {
  return join(dataDir, "pglite.lock");
}

/** The embedded store is opened by another process. */
export class EmbeddedStoreBusyError extends Error {
  constructor(readonly dataDir: string, readonly holder: string) {
    super(
      `the embedded store in ${dataDir} is in use by ${holder}; ` +
        `while it runs, connect through its SQL address (${addressFile(dataDir)})`,
    );
    this.name = "EmbeddedStoreBusyError";
  }
}

/** There is no embedded store where one was expected. */
export class EmbeddedStoreMissingError extends Error {
  constructor(readonly dataDir: string) {
    super(
      `no embedded store in ${dataDir} (no ${
        join(dataDir, "pglite")
      }): check --data-dir, or start the daemon once to create it`,
    );
    this.name = "EmbeddedStoreMissingError";
  }
}

/**
 * Where a process that holds the store in `dataDir` serves it: its URL, or undefined
 * when no process holds it (then the files may be opened). Throws
 * {@linkcode EmbeddedStoreBusyError} when a process holds it without serving (starting).
 */
export async function runningEmbedded(dataDir: string): Promise<string | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(lockFile(dataDir), { read: true, write: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  try {
    if (await file.tryLock(true)) {
      await file.unlock();
      return undefined; // Nobody holds it: a sql.addr left by a killed process is stale.
    }
  } finally {
    file.close();
  }
  const address = await Deno.readTextFile(addressFile(dataDir)).catch(() => undefined);
  if (address === undefined || address.trim() === "") {
    throw new EmbeddedStoreBusyError(dataDir, await holderOf(dataDir));
  }
  return urlOf(address.trim());
}

async function holderOf(dataDir: string): Promise<string> {
  const text = await Deno.readTextFile(lockFile(dataDir)).catch(() => "");
  const pid = /^pid (\d+)/m.exec(text)?.[1];
  return pid === undefined ? "another process" : `process ${pid}`;
}

/**
 * Runs `create_store.ts` in a child process (see there why not here). Without the
 * permission to run it (`--allow-run`), the worker creates the store itself.
 */
async function createStore(dir: string): Promise<void> {
  const permission = await Deno.permissions.query({ name: "run", command: Deno.execPath() });
  if (permission.state !== "granted") return;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-read",
      `--allow-write=${dir}`,
      "--allow-env",
      fileURLToPath(new URL("./create_store.ts", import.meta.url)),
      dir,
      ...EMBEDDED_SETTINGS,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim().split("\n").slice(-3).join(" ");
    throw new Error(`cannot create the embedded store in ${dir}: ${stderr}`);
  }
}

function urlOf(address: string): string {
  return `postgres://postgres@${address}/postgres`;
}

/**
 * Locks the store in `options.dataDir`, opens it in a worker and serves it on
 * `options.listen`. Rejects with {@linkcode EmbeddedStoreBusyError} when another
 * process has it, {@linkcode EmbeddedStoreMissingError} when it does not exist and
 * `create` is false, `Deno.errors.AddrInUse` when the address is taken.
 */
export async function startEmbedded(options: EmbeddedOptions): Promise<Embedded> {
  const dir = join(options.dataDir, "pglite");
  const exists = await Deno.stat(join(dir, "PG_VERSION")).then(() => true, () => false);
  if (!exists && options.create === false) throw new EmbeddedStoreMissingError(options.dataDir);
  await mkdir(dir, { recursive: true });
  const lock = await Deno.open(lockFile(options.dataDir), {
    read: true,
    write: true,
    create: true,
  });
  if (!await lock.tryLock(true)) {
    lock.close();
    throw new EmbeddedStoreBusyError(options.dataDir, await holderOf(options.dataDir));
  }
  const release = async () => {
    await Deno.remove(addressFile(options.dataDir)).catch(() => {});
    await lock.unlock().catch(() => {});
    lock.close();
  };
  await lock.truncate(0);
  await lock.write(new TextEncoder().encode(`pid ${Deno.pid}\n`));
  if (!exists) {
    try {
      await createStore(dir);
    } catch (error) {
      await release();
      throw error;
    }
  }

  const listen = options.listen ?? "127.0.0.1:0";
  const colon = listen.lastIndexOf(":");
  const hostname = listen.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  const replies: WorkerReply[] = [];
  let wake: (() => void) | undefined;
  let failure: string | undefined;
  worker.onmessage = (event: MessageEvent<WorkerReply>) => {
    replies.push(event.data);
    wake?.();
  };
  worker.onerror = (event) => {
    event.preventDefault();
    failure = event.message;
    wake?.();
  };
  const reply = async (): Promise<WorkerReply> => {
    while (replies.length === 0) {
      if (failure !== undefined) throw new Error(`the embedded store stopped: ${failure}`);
      await new Promise<void>((resolve) => (wake = resolve));
    }
    return replies.shift()!;
  };
  const request: WorkerRequest = {
    type: "open",
    dir,
    hostname,
    port: Number(listen.slice(colon + 1)),
    initialMemory: INITIAL_MEMORY,
    settings: [...EMBEDDED_SETTINGS],
    idleInTransactionMs: options.idleInTransactionMs ?? 10_000,
  };
  worker.postMessage(request);
  let opened: WorkerReply;
  try {
    opened = await reply();
  } catch (error) {
    worker.terminate();
    await release();
    throw error;
  }
  if (opened.type !== "listening") {
    worker.terminate();
    await release();
    const message = opened.type === "error" ? opened.message : "unexpected reply";
    if (opened.type === "error" && opened.addrInUse) throw new Deno.errors.AddrInUse(message);
    throw new Error(`cannot open the embedded store in ${dir}: ${message}`);
  }
  const address = opened.hostname.includes(":")
    ? `[${opened.hostname}]:${opened.port}`
    : `${opened.hostname}:${opened.port}`;
  await Deno.writeTextFile(addressFile(options.dataDir), `${address}\n`);
  let closing: Promise<void> | undefined;
  return {
    url: urlOf(address),
    address,
    close() {
      closing ??= (async () => {
        await Deno.remove(addressFile(options.dataDir)).catch(() => {});
        if (failure === undefined) {
          worker.postMessage({ type: "close" } satisfies WorkerRequest);
          let timer: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([
            reply().catch(() => undefined),
            new Promise((resolve) => (timer = setTimeout(resolve, 10_000))),
          ]);
          clearTimeout(timer);
        }
        worker.terminate();
        await release();
      })();
      return closing;
    },
  };
}
