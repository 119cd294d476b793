CREATE TABLE "action_runs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"server" text NOT NULL,
	"name" text NOT NULL,
	"action" text NOT NULL,
	"action_id" text,
	"session_id" uuid,
	"started_at" timestamp with time zone NOT NULL,
	"finished_at" timestamp with time zone,
	"status" text NOT NULL,
	"message" text,
	"item_count" integer,
	"response" jsonb
);
--> statement-breakpoint
CREATE TABLE "ami_events" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "ami_events_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
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
	"inserted_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "ami_events_rejected" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "ami_events_rejected_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"server" text NOT NULL,
	"session_id" uuid NOT NULL,
	"seq" bigint NOT NULL,
	"error" text NOT NULL,
	"payload" text NOT NULL,
	"rejected_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "ami_sessions" (
	"id" uuid PRIMARY KEY NOT NULL,
	"server" text NOT NULL,
	"connected_at" timestamp with time zone NOT NULL,
	"disconnected_at" timestamp with time zone,
	"banner" text,
	"disconnect_reason" text,
	"host" text,
	"port" integer,
	"event_count" bigint
);
--> statement-breakpoint
CREATE TABLE "call_legs" (
	"server" text NOT NULL,
	"uniqueid" text NOT NULL,
	"call_id" text NOT NULL,
	"linkedid" text,
	"channel" text,
	"endpoint" text,
	"caller_num" text,
	"caller_name" text,
	"context" text,
	"exten" text,
	"created_at" timestamp with time zone,
	"answered_at" timestamp with time zone,
	"hungup_at" timestamp with time zone,
	"cause" integer,
	"cause_txt" text,
	"dial_status" text,
	CONSTRAINT "call_legs_server_uniqueid_pk" PRIMARY KEY("server","uniqueid")
);
--> statement-breakpoint
CREATE TABLE "calls" (
	"server" text NOT NULL,
	"call_id" text NOT NULL,
	"started_at" timestamp with time zone NOT NULL,
	"answered_at" timestamp with time zone,
	"ended_at" timestamp with time zone,
	"src" text,
	"dst" text,
	"answered_by" text,
	"disposition" text,
	"duration_s" integer,
	"billsec_s" integer,
	"hangup_cause" integer,
	"transferred" boolean DEFAULT false NOT NULL,
	"queue" text,
	"legs" integer NOT NULL,
	"complete" boolean NOT NULL,
	CONSTRAINT "calls_server_call_id_pk" PRIMARY KEY("server","call_id")
);
--> statement-breakpoint
CREATE TABLE "endpoint_status" (
	"server" text NOT NULL,
	"endpoint" text NOT NULL,
	"observed_at" timestamp with time zone NOT NULL,
	"state" text NOT NULL,
	"latency_ms" double precision,
	"source" text NOT NULL,
	"event_id" bigint NOT NULL,
	CONSTRAINT "endpoint_status_event_id_endpoint_pk" PRIMARY KEY("event_id","endpoint")
);
--> statement-breakpoint
CREATE TABLE "projection_checkpoints" (
	"name" text PRIMARY KEY NOT NULL,
	"last_event_id" bigint NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "queue_calls" (
	"server" text NOT NULL,
	"uniqueid" text NOT NULL,
	"call_id" text NOT NULL,
	"queue" text NOT NULL,
	"caller" text,
	"joined_at" timestamp with time zone NOT NULL,
	"connected_at" timestamp with time zone,
	"left_at" timestamp with time zone,
	"agent" text,
	"hold_s" integer,
	"talk_s" integer,
	"outcome" text,
	CONSTRAINT "queue_calls_server_uniqueid_queue_joined_at_pk" PRIMARY KEY("server","uniqueid","queue","joined_at")
);
--> statement-breakpoint
CREATE INDEX "action_runs_name_started_idx" ON "action_runs" USING btree ("name","started_at");--> statement-breakpoint
CREATE INDEX "action_runs_server_started_idx" ON "action_runs" USING btree ("server","started_at");--> statement-breakpoint
CREATE UNIQUE INDEX "ami_events_session_seq_key" ON "ami_events" USING btree ("session_id","seq");--> statement-breakpoint
CREATE INDEX "ami_events_event_received_idx" ON "ami_events" USING btree ("event","received_at");--> statement-breakpoint
CREATE INDEX "ami_events_received_idx" ON "ami_events" USING btree ("received_at");--> statement-breakpoint
CREATE INDEX "ami_events_linkedid_idx" ON "ami_events" USING btree ("linkedid");--> statement-breakpoint
CREATE INDEX "ami_events_uniqueid_idx" ON "ami_events" USING btree ("uniqueid");--> statement-breakpoint
CREATE INDEX "ami_events_action_id_idx" ON "ami_events" USING btree ("action_id");--> statement-breakpoint
CREATE INDEX "ami_events_server_received_idx" ON "ami_events" USING btree ("server","received_at");--> statement-breakpoint
CREATE UNIQUE INDEX "ami_events_rejected_session_seq_key" ON "ami_events_rejected" USING btree ("session_id","seq");--> statement-breakpoint
CREATE INDEX "ami_sessions_server_connected_idx" ON "ami_sessions" USING btree ("server","connected_at");--> statement-breakpoint
CREATE INDEX "call_legs_call_id_idx" ON "call_legs" USING btree ("call_id");--> statement-breakpoint
CREATE INDEX "call_legs_endpoint_created_idx" ON "call_legs" USING btree ("endpoint","created_at");--> statement-breakpoint
CREATE INDEX "calls_started_idx" ON "calls" USING btree ("started_at");--> statement-breakpoint
CREATE INDEX "calls_src_idx" ON "calls" USING btree ("src");--> statement-breakpoint
CREATE INDEX "calls_dst_idx" ON "calls" USING btree ("dst");--> statement-breakpoint
CREATE INDEX "endpoint_status_endpoint_observed_idx" ON "endpoint_status" USING btree ("endpoint","observed_at");--> statement-breakpoint
CREATE INDEX "queue_calls_queue_joined_idx" ON "queue_calls" USING btree ("queue","joined_at");--> statement-breakpoint
CREATE INDEX "queue_calls_call_id_idx" ON "queue_calls" USING btree ("call_id");