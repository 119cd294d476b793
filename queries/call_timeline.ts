/**
 * `call-timeline`: every event of one call, in time order, found from its call id or any
 * of its channels' uniqueids. Chatty events (VarSet, Newexten, CEL, ...) are left out
 * unless `all` is set.
 *
 * @example
 * ```ts ignore
 * import { callTimeline } from "./call_timeline.ts";
 * for (const row of await callTimeline(store.db, { call: "1795663687.43" })) console.log(row);
 * ```
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { callLegs, calls, projectionEventRefs, projectionNodes } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import { localTime, type QueryDefinition, QueryParamError, timeZone } from "./query.ts";

/** Parameters of {@linkcode callTimeline}. */
export interface CallTimelineParams {
  /** A call id or any uniqueid of one of its legs. */
  call: string;
  /** Only this server's call (uniqueids may repeat across servers). */
  server?: string;
  /** Include every event (VarSet, Newexten, CEL, ...). */
  all?: boolean;
  /** @default {"UTC"} */
  tz?: string;
}

/** One event. */
export interface CallTimelineRow {
  [column: string]: string | number | null;
  /** Event time (its `Timestamp`, else when received), with microseconds. */
  at: string;
  server: string;
  event: string;
  channel: string | null;
  uniqueid: string | null;
  /** The headers that matter for this event, `Key=value` separated by spaces. */
  details: string;
}

/** Left out of a timeline unless asked for. */
const CHATTY = [
  "VarSet",
  "Newexten",
  "CEL",
  "NewConnectedLine",
  "DeviceStateChange",
  "RTCPSent",
  "RTCPReceived",
];

/** Headers worth showing for a channel's own state changes. */
const STATE_KEYS = [
  "ChannelStateDesc",
  "CallerIDNum",
  "CallerIDName",
  "Context",
  "Exten",
  "Newname",
];
const STATE_EVENTS = new Set(["Newchannel", "Newstate", "NewCallerid", "Rename"]);

/** Headers worth showing for every other event, in this order, when it has them. */
const DETAIL_KEYS = [
  "DestChannel",
  "DialString",
  "DialStatus",
  "BridgeUniqueid",
  "BridgeType",
  "BridgeNumChannels",
  "LocalOneChannel",
  "LocalTwoChannel",
  "Queue",
  "Position",
  "MemberName",
  "HoldTime",
  "TalkTime",
  "RingTime",
  "Reason",
  "Result",
  "TransfererChannel",
  "TransfereeChannel",
  "TransferTargetChannel",
  "Extension",
  "Cause",
  "Cause-txt",
  "Disposition",
  "Duration",
  "BillableSeconds",
  "EventName",
  "Application",
  "Response",
];

/** The call's events (empty when no call has that id or uniqueid). */
export async function callTimeline(
  db: SqlExecutor,
  params: CallTimelineParams,
): Promise<CallTimelineRow[]> {
  if (params.call.trim() === "") {
    throw new QueryParamError("call", "a call id or uniqueid is required");
  }
  const tz = timeZone(params.tz);
  const server = params.server === undefined ? sql`true` : sql`server = ${params.server}`;
  const chatty = params.all ? sql`true` : sql`e.event <> all(${sql.param(CHATTY)}::text[])`;
  const eventTime = sql`coalesce(case when e.fields->>'Timestamp' ~ '^[0-9]+([.][0-9]+)?$'
    then to_timestamp((e.fields->>'Timestamp')::float8) end, e.received_at)`;
  const rows = await selectRows<CallTimelineRow & { fields: string }>(
    db,
    sql`with call as (
          select server, call_id from ${callLegs} where uniqueid = ${params.call} and ${server}
          union select server, call_id from ${calls} where call_id = ${params.call} and ${server}
        ), legs as (
          select l.server, l.uniqueid from ${callLegs} l join call c using (server, call_id)
        ), ids as (
          select e.id from ami_events e join legs l on e.server = l.server and e.uniqueid = l.uniqueid
          union
          select r.event_id from ${projectionEventRefs} r
            join ${projectionNodes} n on n.server = r.server and n.node = r.node
            join call c on c.server = n.server and c.call_id = n.call_id
        )
        select ${localTime(eventTime, tz, "YYYY-MM-DD HH24:MI:SS.US")} as at, e.server, e.event,
          e.channel, e.uniqueid, e.fields::text as fields
        from ami_events e join ids using (id)
        where ${chatty}
        order by ${eventTime}, e.id`,
  );
  return rows.map(({ fields, ...row }) => ({
    ...row,
    details: details(JSON.parse(fields), STATE_EVENTS.has(row.event) ? STATE_KEYS : DETAIL_KEYS),
  }));
}

function details(fields: Record<string, string | string[]>, keys: readonly string[]): string {
  const lower = new Map(Object.entries(fields).map(([k, v]) => [k.toLowerCase(), v]));
  const parts: string[] = [];
  for (const key of keys) {
    const value = lower.get(key.toLowerCase());
    if (value === undefined || value === "") continue;
    parts.push(`${key}=${Array.isArray(value) ? value.join("|") : value}`);
  }
  return parts.join(" ");
}

/** The registry entry. */
export const callTimelineQuery: QueryDefinition = {
  name: "call-timeline",
  description: "one call's events in order, by call id or any of its uniqueids",
  params: [
    {
      name: "call",
      kind: "text",
      required: true,
      description: "call id or any uniqueid of the call",
    },
    { name: "server", kind: "text", description: "only this server" },
    {
      name: "all",
      kind: "flag",
      description: "include VarSet, Newexten, CEL and other chatty events",
    },
    {
      name: "tz",
      kind: "text",
      description: "time zone for printed times (default: this machine's)",
    },
  ],
  columns: ["at", "server", "event", "channel", "uniqueid", "details"],
  run: (db, args) =>
    callTimeline(db, {
      call: String(args.call ?? ""),
      server: args.server as string | undefined,
      all: args.all === true,
      tz: args.tz as string | undefined,
    }),
};
