/**
 * The read side on a real HTTP server over a throwaway database (PostgreSQL or PGlite),
 * for the API tests: `startApi` exactly as the daemon wires it, behind `startHttp`.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import type { Api } from "../daemon/api/router.ts";
import { selectRows } from "../queries/db.ts";
import { type ApiHandle, startApi, type StartApiOptions } from "../daemon/api/start.ts";
import { type HttpServer, startHttp } from "../daemon/http.ts";
import { DaemonMetrics } from "../daemon/metrics.ts";
import { openStore, type Store } from "../daemon/store.ts";
import { createTestDatabase } from "./pg.ts";

/** A token long enough for the config's rule. */
export const TOKEN = "test-token-0123456789abcdef";

/** A running read side. */
export interface ReadSide {
  store: Store;
  handle: ApiHandle;
  api: Api;
  http: HttpServer;
  /** `http://127.0.0.1:<port>`. */
  base: string;
  /** The database URL (PostgreSQL only). */
  url?: string;
  /** `fetch` of `path` with the bearer token. */
  get(path: string, headers?: Record<string, string>, signal?: AbortSignal): Promise<Response>;
  /** Ids in `ami_events`, in order. */
  ids(where?: string): Promise<number[]>;
  close(): Promise<void>;
}

/** Opens a store, loads nothing, starts the API (after `before` ran against the store). */
export async function startReadSide(
  options: {
    kind?: "postgres" | "pglite";
    before?: (store: Store) => Promise<void>;
    /** Another API over this read side's store (a daemon restart); closing it keeps the store. */
    reuse?: ReadSide;
    api?: Omit<StartApiOptions, "db">;
  } = {},
): Promise<ReadSide> {
  const reuse = options.reuse;
  const database = options.kind === "pglite" || reuse !== undefined
    ? undefined
    : await createTestDatabase("api");
  const dataDir = await Deno.makeTempDir({ prefix: "dami-api-" });
  const store = reuse?.store ?? await openStore({ url: database?.url, dataDir });
  await options.before?.(store);
  const handle = startApi({
    db: store.db,
    token: TOKEN,
    tail: { pollMs: 50 },
    ...options.api,
  });
  const api = await handle.ready;
  const http = startHttp({
    listen: "127.0.0.1:0",
    servers: [],
    storeHealth: () => ({ writable: true }),
    metrics: new DaemonMetrics(),
    api: handle,
  });
  const base = `http://127.0.0.1:${http.port}`;
  return {
    store,
    handle,
    api,
    http,
    base,
    url: database?.url ?? reuse?.url,
    get: (path, headers = {}, signal) =>
      fetch(`${base}${path}`, {
        headers: { authorization: `Bearer ${TOKEN}`, ...headers },
        signal,
      }),
    async ids(where = "true") {
      const rows = await selectRows<{ id: string }>(
        store.db,
        sql`select id::text as id from ami_events where ${sql.raw(where)} order by ami_events.id`,
      );
      return rows.map((r) => Number(r.id));
    },
    async close() {
      await http.close();
      await handle.stop();
      if (reuse === undefined) await store.close();
      await database?.drop();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}
