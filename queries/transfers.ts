/**
 * `transfers`: blind and attended transfers (Asterisk's `BlindTransfer` and
 * `AttendedTransfer` events), with the call they belong to.
 *
 * @module
 */
import { sql } from "drizzle-orm";
import { callLegs } from "../schema/mod.ts";
import { selectRows, type SqlExecutor } from "./db.ts";
import {
  localTime,
  type QueryDefinition,
  RANGE_PARAMS,
  rangeArgs,
  type RangeParams,
  rangeWhere,
  timeZone,
} from "./query.ts";

/** One transfer. */
export interface TransferRow {
  [column: string]: string | null;
  at: string;
  /** `blind` or `attended`. */
  kind: string;
  /** `Success`, `Fail`, `Invalid`, `Not Permitted`. */
  result: string | null;
  call_id: string | null;
  transferer: string | null;
  transferee: string | null;
  /** `exten@context` (blind) or the target channel (attended). */
  target: string | null;
}

/** Transfers in the range (by time received). */
export async function transfers(db: SqlExecutor, params: RangeParams = {}): Promise<TransferRow[]> {
  const tz = timeZone(params.tz);
  const f = (key: string) => sql`e.fields->>${key}`;
  return await selectRows<TransferRow>(
    db,
    sql`select ${localTime(sql`e.received_at`, tz)} as at,
          case e.event when 'BlindTransfer' then 'blind' else 'attended' end as kind,
          ${f("Result")} as result, l.call_id,
          coalesce(${f("TransfererChannel")}, ${f("OrigTransfererChannel")}) as transferer,
          ${f("TransfereeChannel")} as transferee,
          case e.event when 'BlindTransfer' then (${f("Extension")}) || '@' || (${f("Context")})
            else coalesce(${f("TransferTargetChannel")}, ${f("DestApp")}, ${
      f("DestBridgeUniqueid")
    }) end as target
        from ami_events e
        left join ${callLegs} l on l.server = e.server
          and l.uniqueid = coalesce(${f("TransfereeUniqueid")}, ${f("TransfererUniqueid")}, ${
      f("OrigTransfererUniqueid")
    })
        where e.event in ('BlindTransfer', 'AttendedTransfer')
          and ${rangeWhere(sql`e.received_at`, params, sql`e.server`)}
        order by e.received_at, e.id`,
  );
}

/** The registry entry. */
export const transfersQuery: QueryDefinition = {
  name: "transfers",
  description: "blind and attended transfers with their call, parties and target",
  params: RANGE_PARAMS,
  columns: ["at", "kind", "result", "call_id", "transferer", "transferee", "target"],
  run: (db, args) => transfers(db, rangeArgs(args)),
};
