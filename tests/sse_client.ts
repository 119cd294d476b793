/**
 * A Server-Sent Events reader for the API tests: parses the `text/event-stream` body
 * of a response message by message, the way a browser's `EventSource` does (a message
 * ends at a blank line; a cut message is not one).
 *
 * @module
 */

/** One message of an event stream. */
export interface SseMessage {
  id?: string;
  event: string;
  data: string;
  /** Comment lines before it (`: keepalive`). */
  comments: string[];
}

/** Parses the complete messages in `text`; returns them and the unparsed rest. */
export function parseSse(text: string): { messages: SseMessage[]; rest: string } {
  const messages: SseMessage[] = [];
  let start = 0;
  for (;;) {
    const end = text.indexOf("\n\n", start);
    if (end < 0) break;
    const block = text.slice(start, end);
    start = end + 2;
    const message: SseMessage = { event: "message", data: "", comments: [] };
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) message.comments.push(line.slice(1).trim());
      else if (line.startsWith("id: ")) message.id = line.slice(4);
      else if (line.startsWith("event: ")) message.event = line.slice(7);
      else if (line.startsWith("data: ")) data.push(line.slice(6));
    }
    message.data = data.join("\n");
    messages.push(message);
  }
  return { messages, rest: text.slice(start) };
}

/** Reads messages from a fetch response body. */
export class SseReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buffer = "";
  #queue: SseMessage[] = [];

  constructor(response: Response) {
    this.#reader = response.body!.getReader();
  }

  /** The next message, or undefined at the end of the stream. */
  async next(): Promise<SseMessage | undefined> {
    while (this.#queue.length === 0) {
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      const text = this.#decoder.decode(value, { stream: true });
      const { messages, rest } = parseSse(this.#buffer + text);
      this.#buffer = rest;
      this.#queue.push(...messages);
    }
    return this.#queue.shift();
  }

  /** Stops reading (the connection closes). */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}
