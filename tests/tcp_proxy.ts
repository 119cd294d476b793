/**
 * A TCP proxy for outage tests: sits between the code under test and a server
 * (PostgreSQL), and can cut every connection and refuse new ones for a while.
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
  readonly #listener: Deno.TcpListener;
  readonly #target: ProxyTarget;
  readonly #open = new Set<Deno.Conn>();
  readonly #pumps = new Set<Promise<void>>();
  #refuseUntil = 0;
  #accepting: Promise<void>;
  /** Connections accepted and forwarded so far. */
  forwarded = 0;
  /** Connections refused (closed at once) so far. */
  refused = 0;

  private constructor(target: ProxyTarget) {
    this.#target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  /** Starts a proxy to `target`. */
  static start(target: ProxyTarget): TcpProxy {
    return new TcpProxy(target);
  }

  /** The local port to connect to. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Rewrites `postgres://user@host:port/db` to go through this proxy. */
  url(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = "127.0.0.1";
    u.port = String(this.port);
    return u.toString();
  }

  /** Closes every open connection and refuses new ones for `refuseMs` (0: none). */
  cut(refuseMs = 0): void {
    this.#refuseUntil = Date.now() + refuseMs;
    for (const conn of this.#open) closeQuietly(conn);
    this.#open.clear();
  }

  /** Accepts connections again at once. */
  restore(): void {
    this.#refuseUntil = 0;
  }

  /** Whether new connections are refused right now. */
  get refusing(): boolean {
    return Date.now() < this.#refuseUntil;
  }

  /** Stops listening and closes everything. */
  async close(): Promise<void> {
    this.#listener.close();
    this.cut();
    await this.#accepting;
    await Promise.allSettled([...this.#pumps]);
  }

  async #accept(): Promise<void> {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      if (this.refusing) {
        this.refused++;
        closeQuietly(client);
        continue;
      }
      const pump = this.#forward(client);
      this.#pumps.add(pump);
      pump.finally(() => this.#pumps.delete(pump));
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
