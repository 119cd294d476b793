/**
 * The daemon as a child process (`deno run daemon/main.ts ...`) with its log records
 * (JSON lines, since stdout is a pipe), for end-to-end tests.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../daemon/main.ts", import.meta.url));

/** A daemon child process with its stdout lines (JSON, since stdout is a pipe). */
export class DaemonProcess {
  readonly lines: string[] = [];
  readonly stderr: Promise<string>;
  readonly status: Promise<Deno.CommandStatus>;
  #child: Deno.ChildProcess;
  #reading: Promise<void>;

  constructor(args: string[], env: Record<string, string>, cwd?: string) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...args],
      env: { NO_COLOR: "1", ...env },
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.status = this.#child.status;
    this.stderr = new Response(this.#child.stderr).text();
    const stdout = this.#child.stdout;
    this.#reading = (async () => {
      let rest = "";
      for await (const chunk of stdout.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
      }
      if (rest !== "") this.lines.push(rest);
    })();
  }

  /** The parsed log records. */
  get records(): Array<{ level: string; logger: string; message: string }> {
    return this.lines.flatMap((line) => {
      try {
        return [JSON.parse(line)];
      } catch {
        return [];
      }
    });
  }

  async waitForLog(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const found = this.records.find((r) => pattern.test(r.message));
      if (found !== undefined) return found.message;
      if (Date.now() > deadline) {
        throw new Error(`no log line matching ${pattern}; got:\n${this.lines.join("\n")}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
  }

  kill(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  async finished(): Promise<{ code: number; output: string; stderr: string }> {
    const status = await this.status;
    await this.#reading;
    return { code: status.code, output: this.lines.join("\n"), stderr: await this.stderr };
  }
}
