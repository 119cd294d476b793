/**
 * DAMI: a client for the Asterisk Manager Interface (AMI).
 *
 * One TCP (or TLS) connection: send any action and get its whole answer (lists
 * aggregated, `Command` output as lines), listen to events as `DAMIData` (key → value)
 * or as lossless {@linkcode AmiMessage}s (every header, in order, original case).
 * Failures are typed {@linkcode DAMIError}s with a `code`.
 *
 * This entry is the public API. Protocol building blocks (the parser, the action
 * encoder, the `DAMIData` converter) are in `dami/internal.ts` (`@dami/dami/internal`),
 * for the daemon and for advanced users; they may change between minor versions.
 *
 * @example Connect, log in, listen, send actions
 * ```ts
 * import { DAMI } from "./mod.ts";
 * import { startFakeAmi } from "./tests/fake_ami_server.ts";
 * await using pbx = await startFakeAmi(); // a simulated Asterisk 20; use your PBX's address
 *
 * const dami = new DAMI({ hostname: pbx.hostname, port: pbx.port, logger: false });
 * await dami.connectAndLogin({ username: "dami", secret: "dami-secret" });
 * const hangups: string[] = [];
 * dami.on("Hangup", (data) => void hangups.push(`${data.Channel}: ${data["Cause-txt"]}`));
 * await dami.listen();
 * const [response, ...items] = await dami.to("SIPPeers", {});
 * console.log(response.Response, items.length); // Success 4 (3 PeerEntry, PeerlistComplete)
 * console.log(await dami.ping()); // true
 * await dami.logoff();
 * ```
 *
 * @module
 */
export {
  type ActionAnswer,
  type ActionOptions,
  DAMI,
  type DAMICallback,
  type DAMICloseInfo,
  type DAMIListener,
  type DAMILogger,
  type DAMILoginOptions,
  type DAMIOptions,
} from "./dami/client.ts";
export type { DAMIData, DAMIValue } from "./dami/data.ts";
export type { ActionData, ActionScalar, ActionValue } from "./dami/action.ts";
export { type AmiMessage, type AmiMessageKind, headerValue, headerValues } from "./dami/message.ts";
export type { EventBytesSink } from "./dami/parser.ts";
export {
  DAMIActionError,
  DAMIClosedError,
  DAMIConnectError,
  DAMIError,
  type DAMIErrorCode,
  DAMIEventsDroppedError,
  DAMIInvalidInputError,
  DAMILoginError,
  DAMIMessageTooLargeError,
  DAMIProtocolError,
  DAMIStateError,
  DAMITimeoutError,
} from "./dami/errors.ts";
