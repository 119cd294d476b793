/**
 * Typed errors. Every error DAMI throws or rejects with is a `DAMIError`; its `code`
 * says which kind, so callers can `switch` on it.
 *
 * @module
 */
import type { AmiMessage } from "./message.ts";

/** The kinds of failure. */
export type DAMIErrorCode = "closed" | "timeout" | "action" | "login" | "invalid" | "protocol";

/** Base class of every DAMI error. */
export class DAMIError extends Error {
  /** Which kind of failure this is. */
  readonly code: DAMIErrorCode;
  constructor(code: DAMIErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The connection is closed (or closed while the action was pending). */
export class DAMIClosedError extends DAMIError {
  constructor(message: string, options?: ErrorOptions) {
    super("closed", message, options);
  }
}

/** No complete answer arrived within the action's timeout. */
export class DAMITimeoutError extends DAMIError {
  /** The ActionID that timed out. */
  readonly actionId: string;
  constructor(message: string, actionId: string) {
    super("timeout", message);
    this.actionId = actionId;
  }
}

/** Asterisk answered `Response: Error` (its `Message` is this error's message). */
export class DAMIActionError extends DAMIError {
  /** The error response as received. */
  readonly response: AmiMessage;
  /** The action that failed. */
  readonly action: string;
  constructor(action: string, message: string, response: AmiMessage) {
    super("action", `${action} failed: ${message}`);
    this.action = action;
    this.response = response;
  }
}

/** Login was refused (bad credentials, `Login Already In Use`, ...). Never carries the secret. */
export class DAMILoginError extends DAMIError {
  constructor(message: string) {
    super("login", message);
  }
}

/** The caller passed something that cannot be sent (CR/LF in a value, too long, ...). Nothing was sent. */
export class DAMIInvalidInputError extends DAMIError {
  constructor(message: string) {
    super("invalid", message);
  }
}

/** The peer broke the protocol (a message without end past the size cap, ...). */
export class DAMIProtocolError extends DAMIError {
  constructor(message: string) {
    super("protocol", message);
  }
}

/**
 * A message grew past the size cap (`maxMessageBytes`) without ending. The message is
 * dropped whole and the client closes the connection: after it the stream cannot be
 * trusted to be in step, and holding more would break the bound on memory.
 */
export class DAMIMessageTooLargeError extends DAMIProtocolError {
  /** The cap that was exceeded, in bytes. */
  readonly limitBytes: number;
  /** Bytes of the unfinished message thrown away. */
  readonly discardedBytes: number;
  constructor(limitBytes: number, discardedBytes: number) {
    super(
      `a message exceeded ${limitBytes} bytes without ending; closing the connection`,
    );
    this.limitBytes = limitBytes;
    this.discardedBytes = discardedBytes;
  }
}
