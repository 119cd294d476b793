/**
 * The database: PostgreSQL (postgres.js) when a URL is given, otherwise an embedded
 * PGlite in `<dataDir>/pglite`. Both get the same migrations at open and the same
 * Drizzle schema; the few raw operations the ingest writer needs (a transaction, COPY)
 * are behind {@linkcode StoreTransaction}, so nothing above this file knows the driver.
 *
 * @example
 * ```ts
 * import { openStore } from "./store.ts";
 * import { amiSessions } from "../schema/mod.ts";
 * const store = await openStore({ url: Deno.env.get("DATABASE_URL"), dataDir: "./data" });
 * console.log(store.kind, await store.db.select().from(amiSessions).limit(1));
 * await store.close();
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import * as schema from "../schema/mod.ts";
import {
  copyIn,
  guardAgainstDriverSocketBug,
  noDelaySocket,
  reconnectBackoff,
} from "./postgres_js.ts";
import { runningEmbedded, startEmbedded } from "./embedded/embedded.ts";

/** The Drizzle database, the same type for both drivers. */
export type StoreDatabase = PgDatabase<PgQueryResultHKT, typeof schema>;

/** Where the store lives. */
export interface StoreOptions {
  /** PostgreSQL URL (`postgres://user:pass@host:port/db`). Omit for the embedded PGlite. */
  url?: string;
  /** Data directory; the embedded database lives in `<dataDir>/pglite`. */
  dataDir: string;
  /**
   * Connections of the Drizzle pool (PostgreSQL only; the ingest writer has its own).
   * @default {4}
   */
  poolSize?: number;
  /**
   * Seconds to wait for a PostgreSQL connection before the attempt fails.
   * @default {5}
   */
  connectTimeoutSeconds?: number;
  /**
   * A write transaction that takes longer fails as transient and its connection is
   * replaced, so a black-holed network cannot stall the writer forever.
   * @default {30000}
   */
  writeTimeoutMs?: number;
  /**
   * Apply the migrations in `migrations/` at open.
   * @default {true}
   */
  migrate?: boolean;
  /**
   * Embedded store only: `host:port` to serve it on over the PostgreSQL protocol while
   * it is open (port 0: any free port).
   * @default {"127.0.0.1:0"}
   */
  listen?: string;
  /**
   * Embedded store only: create it when missing. False: a missing store is an error.
   * @default {true}
   */
  create?: boolean;
}

/** Raw access inside one write transaction (see {@linkcode Store.writeTransaction}). */
export interface StoreTransaction {
  /** Runs one statement with `$1`-style parameters. */
  query(text: string, params?: readonly unknown[]): Promise<void>;
  /**
   * `COPY <target> FROM STDIN` in PostgreSQL text format: `target` is a table with its
   * column list, `data` the rows (tab-separated, `\N` for NULL, newline-terminated), as
   * text or as UTF-8 chunks sent one after another.
   */
  copyFrom(target: string, data: string | readonly Uint8Array[]): Promise<void>;
}

/** An open database. */
export interface Store {
  /** Which driver is underneath. */
  readonly kind: "postgres" | "pglite";
  /** Drizzle over the schema in `schema/`; identical API on both drivers. */
  readonly db: StoreDatabase;
  /** For logs: the URL without its password, or `pglite:<dir>`. */
  readonly description: string;
  /** Embedded store: where it is served, `postgres://postgres@127.0.0.1:5433/postgres`. */
  readonly sqlUrl?: string;
  /**
   * Runs `fn` in one transaction on the connection reserved for the ingest writer
   * (separate from the Drizzle pool, whose type parsers Drizzle replaces).
   */
  writeTransaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T>;
  /** Resolves when the database answers `SELECT 1`; rejects otherwise. */
  ping(): Promise<void>;
  /** Closes every connection (or the embedded database). */
  close(): Promise<void>;
}

/** The committed migrations, wherever the repository is checked out. */
export const MIGRATIONS_FOLDER: string = fileURLToPath(new URL("../migrations", import.meta.url));

/** Any key, arbitrary but fixed: serializes concurrent migrators on one database. */
const MIGRATION_LOCK_KEY = 0x44_41_4d_49; // "DAMI"

/** `postgres://user:***@host/db`: a URL fit for logs and error messages. */
export function redactDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    for (const key of [...u.searchParams.keys()]) {
      if (/pass|secret|key/i.test(key)) u.searchParams.set(key, "***");
    }
    return u.toString();
  } catch {
    return "<unparsable database URL>";
  }
}

/**
 * Opens the store described by `options` and applies the migrations (unless told not
 * to). When PostgreSQL is unreachable, the store opens anyway (so the daemon can start
 * and spool) and the migrations run before its first write, which fails as transient
 * until they could. A permanent migration error rejects.
 */
export async function openStore(options: StoreOptions): Promise<Store> {
  return options.url ? await openPostgres(options.url, options) : await openPglite(options);
}

async function openPostgres(url: string, options: StoreOptions): Promise<Store> {
  guardAgainstDriverSocketBug();
  const description = redactDatabaseUrl(url);
  const clientOptions = {
    connect_timeout: options.connectTimeoutSeconds ?? 5,
    onnotice: () => {},
    socket: noDelaySocket,
    backoff: reconnectBackoff,
  };
  let migration: Promise<void> | undefined;
  /**
   * Applies the migrations once. A database that cannot be reached leaves them to the
   * next call; any other failure is final: a {@linkcode MigrationError} from now on,
   * never retried as if the database were down.
   */
  const ensureMigrated = (): Promise<void> => {
    migration ??= migratePostgresOnce(url, clientOptions).catch((error) => {
      // Drizzle wraps a failed statement in an error without SQLSTATE; the driver's is its cause.
      const cause = (error as { code?: unknown }).code === undefined && error?.cause
        ? error.cause
        : error;
      if (isUnreachable(cause)) {
        migration = undefined;
        throw cause;
      }
      throw new MigrationError(description, cause);
    });
    return migration;
  };
  if (options.migrate ?? true) {
    try {
      await ensureMigrated();
    } catch (error) {
      // Unreachable is fine: events are spooled and the migrations run before the first write.
      // A refused login or a missing database is a configuration error: say so now.
      if (!isUnreachable(error)) throw error;
    }
  } else {
    migration = Promise.resolve();
  }
  const pool = postgres(url, { ...clientOptions, max: options.poolSize ?? 4 });
  const db = drizzlePostgres(pool, { schema }) as unknown as StoreDatabase;
  const writeTimeoutMs = options.writeTimeoutMs ?? 30_000;
  let writer = postgres(url, { ...clientOptions, max: 1 });
  // Connect the writer now, not at the first write: that write would wait for the
  // connection (0.2-0.3 s measured) while the first events pile up. Best effort: if this
  // fails, the first write connects (or spools and retries) as before.
  writer`SELECT 1`.catch(() => {});
  return {
    kind: "postgres",
    db,
    description,
    async writeTransaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
      await ensureMigrated();
      const client = writer;
      const replace = () => {
        if (writer !== client) return;
        writer = postgres(url, { ...clientOptions, max: 1 });
        client.end({ timeout: 0 }).catch(() => {});
      };
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          // The connection may be stuck on a dead network: start over with a new one.
          replace();
          reject(new StoreTimeoutError(writeTimeoutMs));
        }, writeTimeoutMs);
      });
      const work = transaction(client, fn);
      work.catch(() => {}); // settled by the race below; avoid an unhandled rejection after a timeout
      try {
        return await Promise.race([work, timeout]);
      } catch (error) {
        // A client whose connection failed in a transaction may not run another one
        // (seen with postgres.js 3.4.9 after a cut during COPY): start over.
        if (isUnreachable(error)) replace();
        throw error;
      } finally {
        clearTimeout(timer);
      }
    },
    async ping() {
      // The pool, not the writer's reserved connection: a health check must neither
      // queue behind a long COPY nor run on a client a failed transaction left broken.
      await pool`SELECT 1`;
    },
    async close() {
      await Promise.all([pool.end({ timeout: 5 }), writer.end({ timeout: 5 })]);
    },
  };
}

/**
 * One transaction on the writer's client, through `sql.begin()`: it binds every
 * statement to one connection and fails when that connection closes. (Sending BEGIN
 * and COMMIT by hand is not safe with postgres.js: after a reconnect, a COMMIT can run
 * on the new connection, outside any transaction, and succeed with a warning while
 * the rows were lost.)
 */
function transaction<T>(
  client: postgres.Sql,
  fn: (tx: StoreTransaction) => Promise<T>,
): Promise<T> {
  return client.begin((sql) =>
    fn({
      async query(text, params) {
        await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[] | undefined);
      },
      copyFrom: (target, data) => copyIn(sql, target, data),
    })
  ) as Promise<T>;
}

/** A network-level failure (no SQLSTATE), a connection exception, shutdown or resources. */
function isUnreachable(error: unknown): boolean {
  if (error instanceof MigrationError) return false;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) return true;
  return code.startsWith("08") || code.startsWith("57P") || code.startsWith("53");
}

/** Applies the migrations on one connection, under an advisory lock against concurrent runs. */
async function migratePostgresOnce(
  url: string,
  clientOptions: postgres.Options<Record<string, postgres.PostgresType>>,
): Promise<void> {
  const client = postgres(url, { ...clientOptions, max: 1 });
  try {
    await client`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    await migratePostgres(drizzlePostgres(client), { migrationsFolder: MIGRATIONS_FOLDER });
  } finally {
    await client.end({ timeout: 1 });
  }
}

/**
 * The embedded store: PGlite in a worker, served on a local address (see
 * `embedded/embedded.ts`), and reached like PostgreSQL through that address.
 */
async function openPglite(options: StoreOptions): Promise<Store> {
  const dir = join(options.dataDir, "pglite");
  const embedded = await startEmbedded({
    dataDir: options.dataDir,
    listen: options.listen,
    create: options.create,
  });
  let store: Store;
  try {
    store = await openPostgres(embedded.url, options);
  } catch (error) {
    await embedded.close();
    const cause = (error as Error).cause ?? error;
    throw new Error(`cannot migrate pglite:${dir}: ${errorText(cause)}`, { cause: error });
  }
  return {
    ...store,
    kind: "pglite",
    description: `pglite:${dir}`,
    sqlUrl: embedded.url,
    async close() {
      await store.close();
      await embedded.close();
    },
  };
}

/** What {@linkcode applyMigrations} did. */
export interface MigrationReport {
  /** Migrations recorded in the database before. */
  before: number;
  /** Migrations recorded after: all of `migrations/`. */
  after: number;
}

/**
 * Applies the migrations and closes: for `deno task migrate`. Unlike
 * {@linkcode openStore}, an unreachable database is an error. An embedded store that a
 * running daemon holds is migrated through its SQL address.
 */
export async function applyMigrations(options: StoreOptions): Promise<MigrationReport> {
  const clientOptions = { connect_timeout: options.connectTimeoutSeconds ?? 5, onnotice: () => {} };
  const url = options.url ?? await runningEmbedded(options.dataDir);
  // Without a server, the embedded store is opened here and migrated through its address.
  const store = url === undefined ? await openStore({ ...options, migrate: false }) : undefined;
  const target = url ?? store!.sqlUrl!;
  const description = url === undefined ? store!.description : redactDatabaseUrl(url);
  const count = async () => {
    const client = postgres(target, { ...clientOptions, max: 1 });
    try {
      const [row] = await client<{ n: number }[]>`
        SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`;
      return row.n;
    } catch (error) {
      if ((error as { code?: string }).code === "42P01") return 0; // no migration yet
      throw error;
    } finally {
      await client.end({ timeout: 1 });
    }
  };
  try {
    const before = await count();
    await migratePostgresOnce(target, clientOptions);
    return { before, after: await count() };
  } catch (error) {
    throw new Error(`cannot migrate ${description}: ${errorText(error)}`, { cause: error });
  } finally {
    await store?.close();
  }
}

/**
 * The migrations failed for a reason other than an unreachable database (a SQL error,
 * a missing privilege, a conflicting object): retrying cannot help, someone must act.
 */
export class MigrationError extends Error {
  /** Not a SQLSTATE: never mistaken for a transient or a row-level error. */
  readonly code = "MIGRATION_FAILED";
  constructor(description: string, cause: unknown) {
    super(`cannot migrate ${description}: ${errorText(cause)}`, { cause });
    this.name = "MigrationError";
  }
}

/** A write transaction ran past {@linkcode StoreOptions.writeTimeoutMs}. */
export class StoreTimeoutError extends Error {
  /** Like a connection error: the write may be retried. */
  readonly code = "WRITE_TIMEOUT";
  constructor(ms: number) {
    super(`database write did not finish within ${ms} ms; the connection was replaced`);
    this.name = "StoreTimeoutError";
  }
}

/** SQLSTATE classes that describe the row, not the connection: retrying cannot help. */
const PERMANENT_CLASSES = new Set([
  "22", // data exception: bad value, out of range, invalid text representation
  "23", // integrity constraint violation
]);
/** `program_limit_exceeded` and `statement_too_complex`: e.g. an index row too large. */
const PERMANENT_CODES = new Set(["54000", "54001"]);

/**
 * Whether a failed write may succeed later unchanged: true for connection errors
 * (`08xxx`, driver errors without SQLSTATE, timeouts), shutdown (`57P01`), resources
 * (`53xxx`), serialization (`40001`) and anything unknown; false for row-level data and
 * constraint errors (`22xxx`, `23xxx`, `54000`).
 */
export function isTransientError(error: unknown): boolean {
  if (error instanceof MigrationError) return false;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) {
    return !(PERMANENT_CLASSES.has(code.slice(0, 2)) || PERMANENT_CODES.has(code));
  }
  return true;
}

/** The SQLSTATE (or driver code) and message of an error, never connection parameters. */
export function errorText(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" ? `${code} ${error.message}` : error.message;
  }
  return String(error);
}
