/**
 * A TCP proxy for outage tests: sits between the code under test and a server
 * (PostgreSQL), and can cut every connection and refuse new ones for a while (it
 * stops listening, so connecting fails with ECONNREFUSED as when the server is down).
 *
 * @example
 * ```ts
 * import { TcpProxy } from "./tcp_proxy.ts";
 * const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
 * // connect to 127.0.0.1:proxy.port ...
 * proxy.cut(3000); // drop all connections, refuse new ones for 3 s
 * await proxy.close();
 * ```
 *
 * @module
 */

/** Where the proxy forwards to. */
export interface ProxyTarget {
  hostname: string;
  port: number;
}

/** Listens on 127.0.0.1 (random port) and forwards each connection to the target. */
export class TcpProxy {
  readonly #target: ProxyTarget;
  readonly #port: number;
  readonly #open = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  #listener: Deno.TcpListener | undefined;
  #relisten: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #cutAfter: { bytes: number; refuseMs: number } | undefined;
  /** Connections accepted and forwarded so far. */
  forwarded = 0;

  private constructor(target: ProxyTarget) {
    this.#target = target;
    this.#listen(0);
    this.#port = this.#listener!.addr.port;
  }

  /** Starts a proxy to `target`. */
  static start(target: ProxyTarget): TcpProxy {
    return new TcpProxy(target);
  }

  /** The local port to connect to. */
  get port(): number {
    return this.#port;
  }

  /** Rewrites `postgres://user@host:port/db` to go through this proxy. */
  url(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  /**
   * Closes every open connection; with `refuseMs`, also stops listening for that long
   * (or until {@linkcode TcpProxy.restore}).
   */
  cut(refuseMs = 0): void {
    for (const conn of this.#open) closeQuietly(conn);
    this.#open.clear();
    if (refuseMs <= 0) return;
    clearTimeout(this.#relisten);
    this.#listener?.close();
    this.#listener = undefined;
    this.#relisten = setTimeout(() => this.restore(), refuseMs);
  }

  /**
   * Cuts (as {@linkcode TcpProxy.cut}) once `bytes` more bytes have gone from the
   * client to the server: a cut in the middle of a large write, whatever the timing.
   */
  cutAfter(bytes: number, refuseMs = 0): void {
    this.#cutAfter = { bytes, refuseMs };
  }

  /** Listens again at once. */
  restore(): void {
    clearTimeout(this.#relisten);
    if (!this.#listener && !this.#closed) this.#listen(this.#port);
  }

  /** Whether new connections are refused right now. */
  get refusing(): boolean {
    return this.#listener === undefined;
  }

  /** Stops listening and closes everything. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#relisten);
    this.#listener?.close();
    this.#listener = undefined;
    this.cut();
    await Promise.allSettled([...this.#tasks]);
  }

  #listen(port: number): void {
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    this.#listener = listener;
    this.#track(this.#accept(listener));
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch {
        return; // listener closed
      }
      this.#track(this.#forward(client));
    }
  }

  async #forward(client: Deno.Conn): Promise<void> {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect(this.#target);
    } catch {
      closeQuietly(client);
      return;
    }
    this.forwarded++;
    this.#open.add(client);
    this.#open.add(upstream);
    const copy = async (from: Deno.Conn, to: Deno.Conn) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          if (from === client && this.#cutAfter) {
            this.#cutAfter.bytes -= n;
            if (this.#cutAfter.bytes <= 0) {
              const { refuseMs } = this.#cutAfter;
              this.#cutAfter = undefined;
              this.cut(refuseMs);
              break;
            }
          }
          for (let done = 0; done < n;) done += await to.write(buf.subarray(done, n));
        }
      } catch {
        // cut, or the peer went away
      }
      closeQuietly(from);
      closeQuietly(to);
      this.#open.delete(from);
      this.#open.delete(to);
    };
    await Promise.all([copy(client, upstream), copy(upstream, client)]);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
