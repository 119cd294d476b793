/**
 * A realistic AMI event stream for benchmarks: every event of the fixtures' real
 * calls (sip-calls, queue-call, originate-local), in recorded order, cycled.
 *
 * @module
 */
const FIXTURES = ["sip-calls", "queue-call", "originate-local"];

/** The fixtures' events, each as its exact wire text including the blank line. */
export function fixtureEvents(): string[] {
  const events: string[] = [];
  for (const name of FIXTURES) {
    const url = new URL(`../tests/fixtures/${name}.jsonl`, import.meta.url);
    const text = Deno.readTextFileSync(url).trim().split("\n")
      .map((line) => JSON.parse(line) as { dir: string; text?: string })
      .filter((record) => record.dir === "in")
      .map((record) => record.text ?? "").join("");
    for (const message of text.split("\r\n\r\n")) {
      if (message.startsWith("Event:")) events.push(message + "\r\n\r\n");
    }
  }
  return events;
}

/** A block of `count` events (the mix cycled) as bytes, and its average event size. */
export function eventBlock(count: number): { bytes: Uint8Array; averageBytes: number } {
  const events = fixtureEvents();
  const parts: string[] = [];
  for (let i = 0; i < count; i++) parts.push(events[i % events.length]);
  const bytes = new TextEncoder().encode(parts.join(""));
  return { bytes, averageBytes: bytes.length / count };
}

/** Peak resident set size of this process in MB (Linux `VmHWM`). */
export function peakRssMb(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  const match = status.match(/VmHWM:\s+(\d+) kB/);
  return match ? Number(match[1]) / 1024 : Deno.memoryUsage().rss / 1024 / 1024;
}
