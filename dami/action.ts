/**
 * Encoding of actions into AMI bytes, refusing anything Asterisk would misread.
 *
 * @module
 */
import { DAMIInvalidInputError } from "./errors.ts";

/** A scalar value an action header can carry. */
export type ActionScalar = string | number | boolean | bigint;

/**
 * A value of an action field: a scalar; an array (the header is repeated, in order,
 * e.g. several `Variable` lines); or an object (one `Key: name=value` line per entry,
 * the usual way to pass `Variable` to Originate).
 */
export type ActionValue = ActionScalar | ActionScalar[] | Record<string, ActionScalar>;

/** The fields of an action, besides `Action` itself. */
export type ActionData = Record<string, ActionValue | undefined>;

/**
 * Asterisk reads client lines into a 1025-byte buffer (main/manager.c, `inbuf[1025]`):
 * a longer line is rejected with "line too long" and the session desynchronises.
 */
export const MAX_LINE_BYTES = 1024;
/** `AST_MAX_MANHEADERS` (include/asterisk/manager.h:100): headers past it are ignored. */
export const MAX_HEADERS = 128;

const encoder = new TextEncoder();

function scalarText(key: string, value: ActionScalar): string {
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new DAMIInvalidInputError(`field "${key}" is not a finite number`);
  }
  return String(value);
}

function hasLineBreak(text: string): boolean {
  return text.includes("\r") || text.includes("\n");
}

/**
 * Encodes `Action: <action>`, then `data` in insertion order, then `ActionID`.
 * Throws {@linkcode DAMIInvalidInputError} (nothing is sent) for CR or LF in any key or
 * value (header injection), a key with `:`, a line over {@linkcode MAX_LINE_BYTES}
 * bytes or more than {@linkcode MAX_HEADERS} headers. Error messages name the field,
 * never its value (it may be a secret).
 */
export function encodeAction(action: string, data: ActionData, actionId: string): Uint8Array {
  const lines: string[] = [];
  const add = (key: string, value: string) => {
    if (key.length === 0 || hasLineBreak(key) || key.includes(":") || key.trim() !== key) {
      throw new DAMIInvalidInputError(
        `invalid field name ${
          JSON.stringify(key.slice(0, 40))
        }: must be non-empty, without ':', CR, LF or surrounding spaces`,
      );
    }
    if (hasLineBreak(value)) {
      throw new DAMIInvalidInputError(
        `field "${key}" contains CR or LF; AMI values are single lines (refused to prevent header injection)`,
      );
    }
    const line = `${key}: ${value}\r\n`;
    if (line.length > MAX_LINE_BYTES / 3 && encoder.encode(line).length > MAX_LINE_BYTES) {
      throw new DAMIInvalidInputError(
        `field "${key}" makes a line longer than ${MAX_LINE_BYTES} bytes, which Asterisk rejects`,
      );
    }
    lines.push(line);
  };
  add("Action", action);
  for (const [key, value] of Object.entries(data)) {
    if (value === undefined) continue;
    if (key.toLowerCase() === "actionid") continue;
    if (Array.isArray(value)) {
      for (const item of value) add(key, scalarText(key, item));
    } else if (typeof value === "object") {
      for (const [name, item] of Object.entries(value)) {
        if (hasLineBreak(name) || name.includes("=")) {
          throw new DAMIInvalidInputError(
            `field "${key}" has an entry name with CR, LF or '='`,
          );
        }
        add(key, `${name}=${scalarText(key, item)}`);
      }
    } else add(key, scalarText(key, value));
  }
  add("ActionID", actionId);
  if (lines.length > MAX_HEADERS) {
    throw new DAMIInvalidInputError(
      `${action} has ${lines.length} headers; Asterisk reads at most ${MAX_HEADERS}`,
    );
  }
  lines.push("\r\n");
  return encoder.encode(lines.join(""));
}
