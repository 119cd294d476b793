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
import { AmiParser } from "../dami/parser.ts";
import { type AmiMessage, headersToFields, headerValue } from "../dami/message.ts";
import { type ColumnRecord, insertRecords } from "../daemon/projections/write.ts";
import { openStore } from "../daemon/store.ts";
import { createEventPartitions } from "../daemon/event_partitions.ts";
import type { SqlDatabase, SqlExecutor } from "../queries/db.ts";
import { amiEvents, amiSessions } from "../schema/mod.ts";
import { type CallFixtureName, type FixtureName, loadFixture } from "./fixtures.ts";
import { createTestDatabase } from "./pg.ts";

/** A migrated, throwaway database opened with the daemon's `openStore()`. */
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
  const dataDir = await Deno.makeTempDir({ prefix: "dami-test-" });
  const store = await openStore({ url: database.url, dataDir });
  return {
    kind: "postgres",
    db: store.db,
    url: database.url,
    async close() {
      await store.close();
      await database.drop();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

/** A fresh embedded PGlite database (in a temporary data directory), migrated. */
export async function openPgliteTestStore(): Promise<TestStore> {
  const dataDir = await Deno.makeTempDir({ prefix: "dami-test-" });
  const store = await openStore({ dataDir });
  return {
    kind: "pglite",
    db: store.db,
    async close() {
      await store.close();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

/** One recorded event and when the daemon would have received it. */
export interface TimedMessage {
  message: AmiMessage;
  /** ms since the epoch, on the events' own clock. */
  receivedAtMs: number;
}

/**
 * The events of a fixture, parsed chunk by chunk as the client reads them. `receivedAtMs`
 * is placed on the events' own clock (first `Timestamp` minus its read offset), so list
 * items without a `Timestamp` get a consistent time.
 */
export function fixtureEvents(name: FixtureName | CallFixtureName): TimedMessage[] {
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
  return parsed.filter((p) => p.message.kind === "event")
    .map((p) => ({ message: p.message, receivedAtMs: baseMs + p.t }));
}

/** Options of {@linkcode loadFixtureEvents}. */
export interface LoadOptions {
  /** @default {"pbx1"} */
  server?: string;
  /** @default {a random UUID} */
  sessionId?: string;
  /**
   * Record the session as ended just after its last event (as the daemon does on close).
   * @default {true}
   */
  ended?: boolean;
}

/** One `ami_sessions` row. */
export interface SessionSpec {
  id: string;
  server: string;
  connectedAtMs: number;
  /** null while connected. */
  disconnectedAtMs: number | null;
}

/** Stores an `ami_sessions` row. */
export async function insertSession(db: SqlExecutor, session: SessionSpec): Promise<void> {
  await insertRecords(db, amiSessions, [{
    id: session.id,
    server: session.server,
    connected_at: new Date(session.connectedAtMs).toISOString(),
    disconnected_at: session.disconnectedAtMs === null
      ? null
      : new Date(session.disconnectedAtMs).toISOString(),
    banner: "Asterisk Call Manager/9.0.0",
    disconnect_reason: session.disconnectedAtMs === null ? null : "eof",
  }], { columns: ["id"], action: "nothing" });
}

/** Stores events of one session, in the given order (that order decides their ids). */
export async function insertMessages(
  db: SqlExecutor,
  server: string,
  sessionId: string,
  messages: readonly TimedMessage[],
): Promise<void> {
  await insertEventRecords(
    db,
    messages.map((m) => eventRecord(server, sessionId, m.message, m.receivedAtMs)),
  );
}

/** Stores a whole fixture as one session (see {@linkcode fixtureEvents}). */
export async function loadFixtureEvents(
  db: SqlExecutor,
  name: FixtureName | CallFixtureName,
  options: LoadOptions = {},
): Promise<{ sessionId: string; messages: AmiMessage[] }> {
  const server = options.server ?? "pbx1";
  const sessionId = options.sessionId ?? crypto.randomUUID();
  const events = fixtureEvents(name);
  const first = events[0]?.receivedAtMs ?? Date.UTC(2026, 10, 26);
  const last = events[events.length - 1]?.receivedAtMs ?? first;
  await insertSession(db, {
    id: sessionId,
    server,
    connectedAtMs: first - 1000,
    disconnectedAtMs: (options.ended ?? true) ? last + 1000 : null,
  });
  await insertMessages(db, server, sessionId, events);
  return { sessionId, messages: events.map((e) => e.message) };
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
  await createEventPartitions(db, records.map((r) => Date.parse(String(r.received_at))));
  for (let i = 0; i < records.length; i += 5000) {
    await insertRecords(db, amiEvents, records.slice(i, i + 5000), {
      columns: ["session_id", "seq", "received_at"],
      action: "nothing",
    });
  }
}
