/**
 * Bearer-token check of `/api/*` (`http.token` in the config).
 *
 * The comparison takes the same time whatever the first differing byte is: both sides
 * are hashed with SHA-256 first (so their lengths are equal and the token's length does
 * not leak either), then every byte of the digests is compared. A refusal says only
 * that a valid token is needed: never the token, never how close a guess was.
 *
 * @example
 * ```ts
 * import { bearerCheck } from "./auth.ts";
 * const check = bearerCheck("a-long-random-token-value");
 * const refusal = await check(new Request("http://localhost/api/live"));
 * console.log(refusal?.status); // 401
 * ```
 *
 * @module
 */

/** A check that resolves to `undefined` when the request may go on, else the 401 to send. */
export type RequestCheck = (request: Request) => Promise<Response | undefined>;

const encoder = new TextEncoder();

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** Equal digests, compared without an early exit. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let difference = a.length ^ b.length;
  for (let i = 0; i < a.length && i < b.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

/** The 401 answer: the same body whatever was wrong (missing, malformed or wrong token). */
export function unauthorized(): Response {
  return Response.json(
    { error: "unauthorized", message: "send Authorization: Bearer <http.token>" },
    { status: 401, headers: { "www-authenticate": 'Bearer realm="dami"' } },
  );
}

/**
 * A check of `Authorization: Bearer <token>`; with `token` undefined every request
 * passes (allowed by the config only on a loopback address).
 */
export function bearerCheck(token: string | undefined): RequestCheck {
  if (token === undefined) return () => Promise.resolve(undefined);
  const expected = digest(token);
  return async (request) => {
    const header = request.headers.get("authorization") ?? "";
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    const given = await digest(match?.[1] ?? "");
    return match !== null && sameBytes(given, await expected) ? undefined : unauthorized();
  };
}
