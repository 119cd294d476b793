DROP INDEX "ami_events_received_idx";--> statement-breakpoint
DROP INDEX "ami_events_server_received_idx";--> statement-breakpoint
DROP INDEX "ami_events_linkedid_idx";--> statement-breakpoint
DROP INDEX "ami_events_uniqueid_idx";--> statement-breakpoint
DROP INDEX "ami_events_action_id_idx";--> statement-breakpoint
ALTER TABLE "ami_events_rejected" ALTER COLUMN "session_id" SET DATA TYPE text;--> statement-breakpoint
ALTER TABLE "ami_events_rejected" ALTER COLUMN "session_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "ami_events_rejected" ALTER COLUMN "seq" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "ami_events_rejected" ADD COLUMN "kind" text DEFAULT 'event' NOT NULL;--> statement-breakpoint
CREATE INDEX "ami_events_received_brin" ON "ami_events" USING brin ("received_at");--> statement-breakpoint
CREATE INDEX "ami_events_linkedid_idx" ON "ami_events" USING btree ("linkedid") WHERE "ami_events"."linkedid" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "ami_events_uniqueid_idx" ON "ami_events" USING btree ("uniqueid") WHERE "ami_events"."uniqueid" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "ami_events_action_id_idx" ON "ami_events" USING btree ("action_id") WHERE "ami_events"."action_id" IS NOT NULL;