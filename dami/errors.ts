/**
 * Typed errors. Every error DAMI throws or rejects with is a `DAMIError`; its `code`
 * says which kind, so callers can `switch` on it.
 *
 * @module
 */
import type { AmiMessage } from "./message.ts";

/**
 * The kinds of failure: `connect` (no connection could be opened), `closed` (the
 * connection ended, or was closed by the caller), `timeout` (an action got no complete
 * answer in time), `action` (Asterisk answered `Response: Error`), `login` (credentials
 * refused), `invalid` (the caller's input cannot be sent), `state` (the call does not
 * fit the client's state, e.g. `connect()` while connected), `dropped` (events were
 * dropped before `listen()`), `protocol` (the server broke the protocol).
 */
export type DAMIErrorCode =
  | "connect"
  | "closed"
  | "timeout"
  | "action"
  | "login"
  | "invalid"
  | "state"
  | "dropped"
  | "protocol";

/** Base class of every DAMI error. */
export class DAMIError extends Error {
  /** Which kind of failure this is. */
  readonly code: DAMIErrorCode;
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
  constructor(code: DAMIErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * No connection could be opened: refused, unreachable, a TLS failure, or no answer
 * within `connectTimeoutMs` (then {@linkcode DAMIConnectError.timedOut} is true).
 */
export class DAMIConnectError extends DAMIError {
  /** True when the attempt was abandoned after `connectTimeoutMs`. */
  readonly timedOut: boolean;
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
  constructor(message: string, timedOut: boolean, options?: ErrorOptions) {
    super("connect", message, options);
    this.timedOut = timedOut;
  }
}

/** The call does not fit the client's state: `connect()` while connected or connecting. */
export class DAMIStateError extends DAMIError {
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
  constructor(message: string) {
    super("state", message);
  }
}

/**
 * More events arrived before `listen()` than `maxBufferedEvents`: the oldest were kept,
 * {@linkcode DAMIEventsDroppedError.dropped} later ones were not delivered to listeners
 * (`onMessage` hooks saw them all). The connection is fine.
 */
export class DAMIEventsDroppedError extends DAMIError {
  /** How many events were not delivered. */
  readonly dropped: number;
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
  constructor(message: string, dropped: number) {
    super("dropped", message);
    this.dropped = dropped;
  }
}

/** The connection is closed (or closed while the action was pending or connecting). */
export class DAMIClosedError extends DAMIError {
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
  constructor(message: string, options?: ErrorOptions) {
    super("closed", message, options);
  }
}

/** No complete answer arrived within the action's timeout. */
export class DAMITimeoutError extends DAMIError {
  /** The ActionID that timed out. */
  readonly actionId: string;
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
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
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
  constructor(action: string, message: string, response: AmiMessage) {
    super("action", `${action} failed: ${message}`);
    this.action = action;
    this.response = response;
  }
}

/** Login was refused (bad credentials, `Login Already In Use`, ...). Never carries the secret. */
export class DAMILoginError extends DAMIError {
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
  constructor(message: string) {
    super("login", message);
  }
}

/** The caller passed something that cannot be sent (CR/LF in a value, too long, ...). Nothing was sent. */
export class DAMIInvalidInputError extends DAMIError {
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
  constructor(message: string) {
    super("invalid", message);
  }
}

/** The peer broke the protocol (a message without end past the size cap, ...). */
export class DAMIProtocolError extends DAMIError {
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
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
  /** Creates the error (DAMI creates these; callers match on the class or `code`). */
  constructor(limitBytes: number, discardedBytes: number) {
    super(
      `a message exceeded ${limitBytes} bytes without ending; closing the connection`,
    );
    this.limitBytes = limitBytes;
    this.discardedBytes = discardedBytes;
  }
}
