/**
 * Endpoint availability samples (`endpoint_status` rows) from poll answers and pushed
 * status events. Pure: one event in, zero or more samples out.
 *
 * | event | from | endpoint | state from |
 * |---|---|---|---|
 * | `PeerEntry` | SIPPeers / IAXPeers poll | `Channeltype/ObjectName` | `Status: OK (5 ms)`, `LAGGED (..)`, `UNREACHABLE`, `UNKNOWN`, `Unmonitored` |
 * | `PeerStatus` | chan_sip push | `Peer` | `PeerStatus: Reachable/Lagged/Unreachable/Registered/Unregistered/Rejected`, `Time` ms |
 * | `ContactStatus` | res_pjsip push | `PJSIP/EndpointName` | `ContactStatus`, `RoundtripUsec` |
 * | `ContactStatusDetail` | PJSIPShowContacts / ShowEndpoint | `PJSIP/EndpointName` | `Status`, `RoundtripUsec` |
 * | `EndpointList` | PJSIPShowEndpoints poll | `PJSIP/ObjectName` | `DeviceState` |
 * | `DeviceStateChange` | push | `Device` (`Tech/name` only) | `State` |
 *
 * @module
 */
import type { ProjectionEvent } from "./event.ts";

/** Normalised availability. */
export type EndpointState = "reachable" | "lagged" | "unreachable" | "unknown" | "unmonitored";

/** One `endpoint_status` row, without the event id, server and time it takes from the event. */
export interface EndpointSample {
  endpoint: string;
  state: EndpointState;
  latencyMs: number | null;
  source: string;
  detail: string;
}

/** The samples one event gives (none for events that are not about endpoint status). */
export function endpointSamples(event: ProjectionEvent): EndpointSample[] {
  const f = event.fields;
  const sample = (
    endpoint: string | undefined,
    detail: string | undefined,
    state: EndpointState | undefined,
    latencyMs: number | null = null,
  ): EndpointSample[] =>
    endpoint && detail !== undefined && state !== undefined
      ? [{ endpoint, state, latencyMs, source: event.event, detail }]
      : [];

  switch (event.event) {
    case "PeerEntry": {
      const tech = f.get("channeltype");
      const name = f.get("objectname");
      const status = f.get("status");
      const parsed = status === undefined ? undefined : parsePeerEntryStatus(status);
      return sample(
        tech && name ? `${tech}/${name}` : undefined,
        status,
        parsed?.state,
        parsed?.latencyMs,
      );
    }
    case "PeerStatus": {
      const status = f.get("peerstatus");
      const time = Number.parseFloat(f.get("time") ?? "");
      return sample(
        f.get("peer"),
        status,
        status === undefined ? undefined : pushedState(status),
        Number.isFinite(time) ? time : null,
      );
    }
    case "ContactStatus":
    case "ContactStatusDetail": {
      const name = f.get("endpointname");
      const status = event.event === "ContactStatus" ? f.get("contactstatus") : f.get("status");
      const state = status === undefined ? undefined : pushedState(status);
      const rtt = Number.parseFloat(f.get("roundtripusec") ?? "");
      return sample(
        name ? `PJSIP/${name}` : undefined,
        status,
        state,
        Number.isFinite(rtt) && rtt > 0 && (state === "reachable" || state === "lagged")
          ? rtt / 1000
          : null,
      );
    }
    case "EndpointList": {
      const name = f.get("objectname");
      const deviceState = f.get("devicestate");
      return sample(
        name ? `PJSIP/${name}` : undefined,
        deviceState,
        deviceState === undefined ? undefined : deviceStateAvailability(deviceState),
      );
    }
    case "DeviceStateChange": {
      const device = f.get("device");
      // Queue:support, Local/100@internal, Custom:x ... are not endpoints.
      if (
        device === undefined || !/^[A-Za-z0-9]+\/[^@/]+$/.test(device) ||
        device.startsWith("Local/")
      ) {
        return [];
      }
      const state = f.get("state");
      return sample(
        device,
        state,
        state === undefined ? undefined : deviceStateAvailability(state),
      );
    }
    default:
      return [];
  }
}

/**
 * chan_sip's `peer_status()` text: `OK (5 ms)`, `LAGGED (2500 ms)`, `UNREACHABLE`,
 * `UNKNOWN`, `Unmonitored` (qualify off).
 */
export function parsePeerEntryStatus(
  status: string,
): { state: EndpointState; latencyMs: number | null } {
  const match = /^(OK|LAGGED)\s*\((\d+(?:\.\d+)?)\s*ms\)/i.exec(status.trim());
  if (match !== null) {
    return {
      state: match[1].toUpperCase() === "OK" ? "reachable" : "lagged",
      latencyMs: Number(match[2]),
    };
  }
  const upper = status.trim().toUpperCase();
  if (upper === "OK") return { state: "reachable", latencyMs: null };
  if (upper === "UNREACHABLE") return { state: "unreachable", latencyMs: null };
  if (upper === "UNMONITORED") return { state: "unmonitored", latencyMs: null };
  return { state: "unknown", latencyMs: null };
}

/** PeerStatus / ContactStatus words. A registration proves the device is there. */
function pushedState(status: string): EndpointState | undefined {
  switch (status.toLowerCase()) {
    case "reachable":
    case "registered":
    case "created":
    case "updated":
      return "reachable";
    case "lagged":
      return "lagged";
    case "unreachable":
    case "unregistered":
    case "rejected":
    case "removed":
      return "unreachable";
    case "nonqualified":
      return "unmonitored";
    case "unknown":
      return "unknown";
    default:
      return undefined;
  }
}

/**
 * Device states (`NOT_INUSE` from DeviceStateChange, `Not in use` from EndpointList): any
 * in-use or idle state means the device is there; `UNAVAILABLE` that it is not.
 */
function deviceStateAvailability(state: string): EndpointState {
  const s = state.toUpperCase().replaceAll(" ", "_");
  if (s === "UNAVAILABLE") return "unreachable";
  if (s === "UNKNOWN" || s === "INVALID") return "unknown";
  return "reachable";
}
