/**
 * Serves the dashboard's static files (`web/` in the repository) at `/`: no build step,
 * no CDN, nothing fetched at run time. The files hold no data; everything they show
 * comes from `/api/*`, which the token protects.
 *
 * @module
 */
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../web/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
};

/**
 * The page's policy: scripts, styles and connections to this origin only, so the
 * dashboard cannot load anything from elsewhere even by mistake.
 */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * The response for a dashboard path (`/` is `index.html`), or `undefined` when no file
 * of the dashboard has that path.
 */
export async function serveWeb(path: string, method = "GET"): Promise<Response | undefined> {
  const relative = path === "/" ? "index.html" : decodeURIComponent(path.slice(1));
  const type = TYPES[extname(relative)];
  if (type === undefined || relative.includes("\0")) return undefined;
  const file = normalize(join(ROOT, relative));
  if (!file.startsWith(ROOT.endsWith(sep) ? ROOT : ROOT + sep)) return undefined;
  let body: Uint8Array;
  try {
    body = await Deno.readFile(file);
  } catch {
    return undefined;
  }
  return new Response(method === "HEAD" ? null : body as BodyInit, {
    headers: {
      "content-type": type,
      // Revalidate every time: an upgraded daemon serves the new files at once.
      "cache-control": "no-cache",
      ...SECURITY_HEADERS,
    },
  });
}
