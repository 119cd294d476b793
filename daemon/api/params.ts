/**
 * What every API route does with its query string: unknown parameters are refused
 * (a typo like `?sever=pbx1` would otherwise silently return everything), and a bad
 * value is a 400 whose JSON names the parameter.
 *
 * @module
 */

/** The 400 answer for parameter `param`. */
export function badRequest(param: string, message: string): Response {
  return Response.json({ error: "bad parameter", param, message }, { status: 400 });
}

/** A 400 for the first parameter of `url` not in `allowed`, else undefined. */
export function checkParams(url: URL, allowed: readonly string[]): Response | undefined {
  for (const name of url.searchParams.keys()) {
    if (!allowed.includes(name)) {
      return badRequest(
        name,
        `unknown parameter "${name}" (expected one of: ${allowed.join(", ")})`,
      );
    }
  }
  return undefined;
}
