// How values are written on the page: times in the viewer's own time zone (UTC on hover), counts, sizes.

const pad = (number, width = 2) => String(number).padStart(width, "0");

/** The browser's time zone name, e.g. Europe/Berlin. */
export const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

/** An RFC 3339 time as YYYY-MM-DD HH:MM:SS.mmm in the viewer's time zone ("" when absent or invalid). */
export function localTime(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return "";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** A time as the value of an <input type=datetime-local> (seconds precision, local time). */
export function toLocalInput(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  const date = new Date(ms);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** A short label for a chart axis: the date when the span is days, else the time. */
export function axisLabel(ms, spanMs) {
  const date = new Date(ms);
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return spanMs > 2 * 86400e3 ? day : spanMs > 12 * 3600e3 ? `${day} ${time}` : time;
}

export const count = (n) => n.toLocaleString("en-US");

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Characters that reorder or hide text (Trojan Source): shown as a warning next to a value holding them. */
const INVISIBLE = /[\u061C\u200B-\u200F\u202A-\u202E\u2066-\u2069\uFEFF]/g;

/** The code points of the direction / invisible characters in ``text`` ("U+202E, U+200B"), "" when none. */
export function invisibleCharacters(text) {
  const found = new Set(String(text).match(INVISIBLE) || []);
  return [...found].map((c) => `U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`).join(", ");
}
