/**
 * Test databases for the projections and queries, and loading of the recorded fixtures
 * into `ami_events` the way the daemon stores them: one `ami_sessions` row per fixture,
 * one `ami_events` row per event (`fields` = every header, `uniqueid` / `linkedid` /
 * `channel` / `action_id` extracted case-insensitively).
 *
 * @example
 * ```ts ignore
 * import { loadFixtureEvents, openTestStore } from "./load_events.ts";
 * const store = await openTestStore("projections");
 * await loadFixtureEvents(store.db, "sip-calls");
 * await store.close();
 * ```
 *
 * @module
 */
import { PGlite } from "@electric-sql/pglite";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { AmiParser } from "../dami/parser.ts";
import { type AmiMessage, headersToFields, headerValue } from "../dami/message.ts";
import { type ColumnRecord, insertRecords, isoMicros } from "../daemon/projections/write.ts";
import type { SqlDatabase, SqlExecutor } from "../queries/db.ts";
import { amiEvents, amiSessions } from "../schema/mod.ts";
import { type FixtureName, loadFixture } from "./fixtures.ts";
import { createTestDatabase } from "./pg.ts";

const MIGRATIONS = new URL("../migrations", import.meta.url).pathname;

/** A migrated, throwaway database. */
export interface TestStore {
  readonly kind: "postgres" | "pglite";
  readonly db: SqlDatabase;
  /** The database URL (postgres only). */
  readonly url?: string;
  /** Closes the connection and drops the database. */
  close(): Promise<void>;
}

/** A fresh PostgreSQL database with the migrations applied. */
export async function openTestStore(prefix: string): Promise<TestStore> {
  const database = await createTestDatabase(prefix);
  const client = postgres(database.url, { max: 4, onnotice: () => {} });
  const db = drizzlePostgres(client);
  await migratePostgres(db, { migrationsFolder: MIGRATIONS });
  return {
    kind: "postgres",
    db,
    url: database.url,
    async close() {
      await client.end();
      await database.drop();
    },
  };
}

/** A fresh in-memory PGlite database with the migrations applied. */
export async function openPgliteTestStore(): Promise<TestStore> {
  const client = new PGlite();
  const db = drizzlePglite(client);
  await migratePglite(db, { migrationsFolder: MIGRATIONS });
  return {
    kind: "pglite",
    db,
    async close() {
      await client.close();
    },
  };
}

/** Options of {@linkcode loadFixtureEvents}. */
export interface LoadOptions {
  /** @default {"pbx1"} */
  server?: string;
  /** @default {a random UUID} */
  sessionId?: string;
  /**
   * Record the session as ended after its last event (as the daemon does on close).
   * @default {true}
   */
  ended?: boolean;
  /** Only events for which this returns true are stored (seq stays the original). */
  filter?: (message: AmiMessage) => boolean;
}

/** What {@linkcode loadFixtureEvents} stored. */
export interface LoadedFixture {
  sessionId: string;
  /** The events stored, in order. */
  messages: AmiMessage[];
}

/**
 * Parses the fixture's server bytes chunk by chunk and stores each event. `received_at`
 * is placed on the events' own clock (first `Timestamp` minus its read offset).
 */
export async function loadFixtureEvents(
  db: SqlExecutor,
  name: FixtureName,
  options: LoadOptions = {},
): Promise<LoadedFixture> {
  const server = options.server ?? "pbx1";
  const sessionId = options.sessionId ?? crypto.randomUUID();
  const fixture = loadFixture(name);
  let readAt = 0;
  const parser = new AmiParser({ now: () => readAt });
  const parsed: { message: AmiMessage; t: number }[] = [];
  for (const entry of fixture.entries) {
    if (entry.dir !== "in") continue;
    readAt = entry.t;
    for (const message of parser.push(entry.bytes)) parsed.push({ message, t: entry.t });
  }
  const anchor = parsed.find((p) => headerValue(p.message, "Timestamp") !== undefined);
  const baseMs = anchor === undefined
    ? Date.UTC(2026, 10, 26)
    : Number(headerValue(anchor.message, "Timestamp")) * 1000 - anchor.t;
  const messages = parsed.filter((p) =>
    p.message.kind === "event" && (options.filter?.(p.message) ?? true)
  );
  const lastT = parsed.length > 0 ? parsed[parsed.length - 1].t : 0;
  await insertRecords(db, amiSessions, [{
    id: sessionId,
    server,
    connected_at: isoMicros(baseMs * 1000),
    disconnected_at: (options.ended ?? true) ? isoMicros((baseMs + lastT + 1) * 1000) : null,
    banner: parser.banner ?? null,
    disconnect_reason: (options.ended ?? true) ? "eof" : null,
  }], { columns: ["id"], action: "nothing" });
  await insertEventRecords(
    db,
    messages.map((p) => eventRecord(server, sessionId, p.message, baseMs + p.t)),
  );
  return { sessionId, messages: messages.map((p) => p.message) };
}

/** An `ami_events` row for `message` as the daemon's ingest writes it. */
export function eventRecord(
  server: string,
  sessionId: string,
  message: AmiMessage,
  receivedAtMs: number,
): ColumnRecord {
  return {
    server,
    session_id: sessionId,
    seq: message.seq,
    received_at: new Date(receivedAtMs).toISOString(),
    event: headerValue(message, "Event") ?? "",
    uniqueid: headerValue(message, "Uniqueid") ?? null,
    linkedid: headerValue(message, "Linkedid") ?? null,
    channel: headerValue(message, "Channel") ?? null,
    action_id: headerValue(message, "ActionID") ?? null,
    fields: headersToFields(message.headers),
  };
}

/** Stores `ami_events` rows (see {@linkcode eventRecord}), in order. */
export async function insertEventRecords(
  db: SqlExecutor,
  records: readonly ColumnRecord[],
): Promise<void> {
  for (let i = 0; i < records.length; i += 5000) {
    await insertRecords(db, amiEvents, records.slice(i, i + 5000), {
      columns: ["session_id", "seq"],
      action: "nothing",
    });
  }
}
