CREATE TABLE "projection_errors" (
	"event_id" bigint PRIMARY KEY NOT NULL,
	"server" text NOT NULL,
	"event" text NOT NULL,
	"code" text NOT NULL,
	"message" text NOT NULL,
	"failed_at" timestamp with time zone NOT NULL
);
