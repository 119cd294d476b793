/**
 * The protocol building blocks under the public API of `mod.ts`, for the daemon and
 * for advanced users (`import ... from "@dami/dami/internal"`): the incremental parser,
 * the action encoder and its limits, the converters from lossless messages to
 * `DAMIData` and to the daemon's stored `fields`. Unlike `mod.ts`, these may change
 * between minor versions.
 *
 * @example Parse bytes into lossless messages
 * ```ts
 * import { AmiParser, headersToFields, toDAMIData } from "./internal.ts";
 * const parser = new AmiParser();
 * const [event] = parser.push(new TextEncoder().encode(
 *   "Asterisk Call Manager/9.0.0\r\nEvent: Hangup\r\nCause: 16\r\nExten: 0123\r\n\r\n",
 * ));
 * console.log(toDAMIData(event)); // { Event: "Hangup", Cause: 16, Exten: "0123" }
 * console.log(headersToFields(event.headers)); // { Event: "Hangup", Cause: "16", Exten: "0123" }
 * ```
 *
 * @module
 */
export { encodeAction, MAX_HEADERS, MAX_LINE_BYTES } from "./action.ts";
export { losslessNumber, toDAMIData } from "./data.ts";
export { headersToFields } from "./message.ts";
export {
  AmiParser,
  type AmiParserOptions,
  DEFAULT_MAX_MESSAGE_BYTES,
  type EventBytesSink,
} from "./parser.ts";
