/**
 * Fleet mode: which instance records which server. A lease is a row with an expiry in
 * the database's own clock, renewed by its holder; an instance row says who is alive,
 * so that each instance can take its fair share.
 *
 * @module
 */
import { bigint, pgTable, text, timestamp } from "drizzle-orm/pg-core";

const tz = { withTimezone: true, mode: "date" } as const;

/** One row per configured server that an instance has held. */
export const serverLeases = pgTable("server_leases", {
  server: text("server").primaryKey(),
  /** The instance holding (or that last held) the server. */
  holder: text("holder").notNull(),
  /** The lease is valid until then (database time); past it, any instance may take it. */
  expiresAt: timestamp("expires_at", tz).notNull(),
  /** When the holder acquired it. */
  acquiredAt: timestamp("acquired_at", tz).notNull(),
  /** Incremented at each change of holder: a fencing token, for the record. */
  epoch: bigint("epoch", { mode: "number" }).notNull().default(1),
});

/** One row per live instance, refreshed with its leases. */
export const clusterInstances = pgTable("cluster_instances", {
  instance: text("instance").primaryKey(),
  /** Alive until then (database time). */
  expiresAt: timestamp("expires_at", tz).notNull(),
  startedAt: timestamp("started_at", tz).notNull(),
});
