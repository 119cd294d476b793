// Times shown in the chosen time zone (default: the browser's). The server does every
// calendar computation in SQL with the same zone (`tz=`), so days and hours are right
// across DST changes; the browser only formats instants and names local dates.

const ZONE_KEY = "dami.tz";

/** The chosen IANA time zone. */
export function zone() {
  return localStorage.getItem(ZONE_KEY) || Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** Chooses a zone; false when the name is not a zone. */
export function setZone(name) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: name });
  } catch {
    return false;
  }
  localStorage.setItem(ZONE_KEY, name);
  return true;
}

const formats = new Map();
function format(tz) {
  let f = formats.get(tz);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("sv-SE", {
      timeZone: tz,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
    });
    formats.set(tz, f);
  }
  return f;
}

/** An instant (ISO text or Date) as `YYYY-MM-DD HH:MM:SS` in the chosen zone. */
export function formatTime(value, tz = zone()) {
  if (value === null || value === undefined || value === "") return "";
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return format(tz).format(date).replace("T", " ");
}

/** Today's date in the zone, `YYYY-MM-DD`. */
export function today(tz = zone()) {
  return formatTime(new Date(), tz).slice(0, 10);
}

/** A local date plus `days` calendar days (DST-proof: pure calendar arithmetic). */
export function addDays(date, days) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** Seconds as `1:02:03` / `2:03`. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return "";
  const s = Math.max(0, Math.floor(Number(seconds)));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/** Every IANA zone this browser knows (for the picker). */
export function zones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return [zone(), "UTC"];
  }
}
