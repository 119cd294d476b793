-- Custom migration (drizzle-kit cannot express partitioning; schema/events.ts declares the
-- columns and indexes, the snapshot matches them). ami_events becomes a table partitioned
-- by received_at in daily ranges (UTC), one table ami_events_YYYYMMDD per day, with no
-- default partition. Every row of the existing table is copied with its id, and the id
-- sequence continues where the old one stopped.
ALTER TABLE "ami_events" RENAME TO "ami_events_unpartitioned";--> statement-breakpoint
ALTER INDEX "ami_events_pkey" RENAME TO "ami_events_unpartitioned_pkey";--> statement-breakpoint
ALTER INDEX "ami_events_session_seq_key" RENAME TO "ami_events_unpartitioned_session_seq_key";--> statement-breakpoint
ALTER INDEX "ami_events_event_received_idx" RENAME TO "ami_events_unpartitioned_event_received_idx";--> statement-breakpoint
ALTER INDEX "ami_events_received_brin" RENAME TO "ami_events_unpartitioned_received_brin";--> statement-breakpoint
ALTER INDEX "ami_events_linkedid_idx" RENAME TO "ami_events_unpartitioned_linkedid_idx";--> statement-breakpoint
ALTER INDEX "ami_events_uniqueid_idx" RENAME TO "ami_events_unpartitioned_uniqueid_idx";--> statement-breakpoint
ALTER INDEX "ami_events_action_id_idx" RENAME TO "ami_events_unpartitioned_action_id_idx";--> statement-breakpoint
ALTER SEQUENCE "ami_events_id_seq" RENAME TO "ami_events_unpartitioned_id_seq";--> statement-breakpoint
CREATE TABLE "ami_events" (
	"id" bigint GENERATED ALWAYS AS IDENTITY (sequence name "ami_events_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"server" text NOT NULL,
	"session_id" uuid NOT NULL,
	"seq" bigint NOT NULL,
	"received_at" timestamp with time zone NOT NULL,
	"event" text NOT NULL,
	"uniqueid" text,
	"linkedid" text,
	"channel" text,
	"action_id" text,
	"fields" jsonb NOT NULL,
	"raw_b64" text,
	"escaped" boolean DEFAULT false NOT NULL,
	"inserted_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "ami_events_id_received_at_pk" PRIMARY KEY("id","received_at")
) PARTITION BY RANGE ("received_at");--> statement-breakpoint
CREATE UNIQUE INDEX "ami_events_session_seq_key" ON "ami_events" USING btree ("session_id","seq","received_at");--> statement-breakpoint
CREATE INDEX "ami_events_event_received_idx" ON "ami_events" USING btree ("event","received_at");--> statement-breakpoint
CREATE INDEX "ami_events_received_brin" ON "ami_events" USING brin ("received_at");--> statement-breakpoint
CREATE INDEX "ami_events_linkedid_idx" ON "ami_events" USING btree ("linkedid") WHERE "ami_events"."linkedid" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "ami_events_uniqueid_idx" ON "ami_events" USING btree ("uniqueid") WHERE "ami_events"."uniqueid" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "ami_events_action_id_idx" ON "ami_events" USING btree ("action_id") WHERE "ami_events"."action_id" IS NOT NULL;--> statement-breakpoint
-- The one place that names and creates a day's partition: the daemon (ahead of time and
-- when an event's day has none), restore and this migration call it. Creators are
-- serialized by a transaction-scoped advisory lock, since two concurrent CREATE TABLE of
-- one name fail on a catalog unique index instead of waiting. Returns whether it created.
CREATE FUNCTION "ami_events_create_partition"("day" date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	"partition" text := 'ami_events_' || to_char("day", 'YYYYMMDD');
BEGIN
	PERFORM pg_advisory_xact_lock(1145130313, 1); -- "DAMI", 1: ami_events partitions
	IF EXISTS (
		SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = "partition" AND n.nspname = current_schema()
	) THEN
		RETURN false;
	END IF;
	EXECUTE format(
		'CREATE TABLE %I PARTITION OF "ami_events" FOR VALUES FROM (%L) TO (%L)',
		"partition",
		("day"::timestamp AT TIME ZONE 'UTC'),
		(("day" + 1)::timestamp AT TIME ZONE 'UTC')
	);
	RETURN true;
END
$$;--> statement-breakpoint
SELECT "ami_events_create_partition"("day")
FROM (SELECT DISTINCT ("received_at" AT TIME ZONE 'UTC')::date AS "day" FROM "ami_events_unpartitioned") AS "days";--> statement-breakpoint
SELECT "ami_events_create_partition"((now() AT TIME ZONE 'UTC')::date);--> statement-breakpoint
INSERT INTO "ami_events" OVERRIDING SYSTEM VALUE
SELECT "id", "server", "session_id", "seq", "received_at", "event", "uniqueid", "linkedid",
	"channel", "action_id", "fields", "raw_b64", "escaped", "inserted_at"
FROM "ami_events_unpartitioned" ORDER BY "id";--> statement-breakpoint
SELECT setval('"ami_events_id_seq"', "last_value", "is_called") FROM "ami_events_unpartitioned_id_seq";--> statement-breakpoint
DROP TABLE "ami_events_unpartitioned";--> statement-breakpoint
CREATE TABLE "ami_events_pruned" (
	"day" date PRIMARY KEY NOT NULL,
	"pruned_at" timestamp with time zone NOT NULL,
	"events" bigint NOT NULL,
	"first_id" bigint,
	"last_id" bigint,
	"archive" text,
	"sha256" text
);--> statement-breakpoint
CREATE INDEX "call_legs_uniqueid_idx" ON "call_legs" USING btree ("uniqueid");--> statement-breakpoint
CREATE INDEX "calls_call_id_idx" ON "calls" USING btree ("call_id");--> statement-breakpoint
CREATE INDEX "calls_ended_idx" ON "calls" USING btree (coalesce("ended_at", "started_at"));
