CREATE TABLE "cluster_instances" (
	"instance" text PRIMARY KEY NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"started_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "server_leases" (
	"server" text PRIMARY KEY NOT NULL,
	"holder" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"acquired_at" timestamp with time zone NOT NULL,
	"epoch" bigint DEFAULT 1 NOT NULL
);
--> statement-breakpoint
ALTER TABLE "ami_sessions" ADD COLUMN "instance" text;