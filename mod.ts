/**
 * DAMI: a client for the Asterisk Manager Interface (AMI).
 *
 * @example
 * ```ts ignore
 * import { DAMI } from "./mod.ts";
 * const dami = new DAMI({ hostname: "127.0.0.1", port: 5038, logger: false });
 * await dami.connectAndLogin({ username: "admin", secret: "mysecret" });
 * await dami.listen();
 * dami.on("Hangup", (data) => console.log(data));
 * console.log(await dami.to("SIPPeers", {}));
 * dami.close();
 * ```
 *
 * @module
 */
export {
  type ActionAnswer,
  type ActionOptions,
  DAMI,
  type DAMICloseInfo,
  type DAMIListener,
  type DAMILogger,
  type DAMILoginOptions,
  type DAMIOptions,
} from "./dami/client.ts";
export { type DAMIData, type DAMIValue, losslessNumber, toDAMIData } from "./dami/data.ts";
export {
  type ActionData,
  type ActionScalar,
  type ActionValue,
  encodeAction,
  MAX_HEADERS,
  MAX_LINE_BYTES,
} from "./dami/action.ts";
export {
  type AmiMessage,
  type AmiMessageKind,
  headersToFields,
  headerValue,
  headerValues,
} from "./dami/message.ts";
export { AmiParser, type AmiParserOptions } from "./dami/parser.ts";
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
