CREATE TABLE "projection_event_refs" (
	"server" text NOT NULL,
	"node" text NOT NULL,
	"event_id" bigint NOT NULL,
	CONSTRAINT "projection_event_refs_server_node_event_id_pk" PRIMARY KEY("server","node","event_id")
);
--> statement-breakpoint
CREATE TABLE "projection_nodes" (
	"server" text NOT NULL,
	"node" text NOT NULL,
	"call_id" text NOT NULL,
	CONSTRAINT "projection_nodes_server_node_pk" PRIMARY KEY("server","node")
);
--> statement-breakpoint
CREATE TABLE "queue_attempts" (
	"server" text NOT NULL,
	"uniqueid" text NOT NULL,
	"call_id" text NOT NULL,
	"caller_uniqueid" text NOT NULL,
	"queue" text NOT NULL,
	"agent" text NOT NULL,
	"called_at" timestamp with time zone NOT NULL,
	"ring_ms" double precision,
	"outcome" text,
	CONSTRAINT "queue_attempts_server_uniqueid_pk" PRIMARY KEY("server","uniqueid")
);
--> statement-breakpoint
ALTER TABLE "calls" ADD COLUMN "src_name" text;--> statement-breakpoint
ALTER TABLE "calls" ADD COLUMN "context" text;--> statement-breakpoint
ALTER TABLE "calls" ADD COLUMN "src_endpoint" text;--> statement-breakpoint
ALTER TABLE "endpoint_status" ADD COLUMN "detail" text;--> statement-breakpoint
CREATE INDEX "projection_nodes_call_idx" ON "projection_nodes" USING btree ("server","call_id");--> statement-breakpoint
CREATE INDEX "queue_attempts_agent_called_idx" ON "queue_attempts" USING btree ("agent","called_at");--> statement-breakpoint
CREATE INDEX "queue_attempts_call_id_idx" ON "queue_attempts" USING btree ("call_id");--> statement-breakpoint
CREATE INDEX "call_legs_created_idx" ON "call_legs" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "endpoint_status_observed_idx" ON "endpoint_status" USING btree ("observed_at");