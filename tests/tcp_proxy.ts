/**
 * A TCP proxy for outage tests: sits between the code under test and a server
 * (PostgreSQL), and can cut every connection and refuse new ones for a while (it
 * stops listening, so connecting fails with ECONNREFUSED as when the server is down),
 * or black-hole it: connections stay open and new ones are accepted, but no byte goes
 * through in either direction until the network "heals" (as with a pulled cable or a
 * firewall that drops packets, where nothing fails, everything just waits).
 *
 * @example
 * ```ts
 * import { TcpProxy } from "./tcp_proxy.ts";
 * const proxy = TcpProxy.start({ hostname: "127.0.0.1", port: 5432 });
 * // connect to 127.0.0.1:proxy.port ...
 * proxy.cut(3000); // drop all connections, refuse new ones for 3 s
 * proxy.blackhole(3000); // let no byte through for 3 s, then deliver what waited
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
  /** Set while black-holed: resolves when bytes may flow again. */
  #heal: PromiseWithResolvers<void> | undefined;
  #healTimer: ReturnType<typeof setTimeout> | undefined;
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

  /**
   * Lets no byte through for `ms` (or until {@linkcode TcpProxy.restore}): open
   * connections stall, new ones are accepted and never answered. When it heals, what
   * waited is delivered, unless {@linkcode TcpProxy.cut} dropped it meanwhile.
   */
  blackhole(ms = Infinity): void {
    this.#heal ??= Promise.withResolvers<void>();
    clearTimeout(this.#healTimer);
    if (Number.isFinite(ms)) this.#healTimer = setTimeout(() => this.restore(), ms);
  }

  /** Listens again and lets bytes through at once. */
  restore(): void {
    clearTimeout(this.#relisten);
    clearTimeout(this.#healTimer);
    this.#heal?.resolve();
    this.#heal = undefined;
    if (!this.#listener && !this.#closed) this.#listen(this.#port);
  }

  /** Whether new connections are refused right now. */
  get refusing(): boolean {
    return this.#listener === undefined;
  }

  /** Whether bytes are held right now. */
  get blackholed(): boolean {
    return this.#heal !== undefined;
  }

  /** Stops listening and closes everything. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#relisten);
    clearTimeout(this.#healTimer);
    this.#heal?.resolve();
    this.#heal = undefined;
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
    this.#open.add(client);
    await this.#flowing();
    if (!this.#open.has(client)) return; // cut while it waited
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect(this.#target);
    } catch {
      this.#open.delete(client);
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
          await this.#flowing();
          const n = await from.read(buf);
          if (n === null) break;
          await this.#flowing();
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

  /** Resolves at once, or when the black hole heals. */
  #flowing(): Promise<void> | undefined {
    return this.#heal?.promise;
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
