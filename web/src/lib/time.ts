// Times and durations as the API sends them, in milliseconds since the
// epoch (or milliseconds long) as floats, so that steps taking less than a
// millisecond still get a width on the waterfall.

const rfc3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/;

/**
 * parseTimestamp reads an RFC 3339 timestamp with up to nanosecond
 * precision. Date.parse keeps only milliseconds, and not every engine
 * accepts nine fraction digits, so the fraction is added separately.
 * Anything unreadable, empty or the zero time gives undefined.
 */
export function parseTimestamp(s: string | null | undefined): number | undefined {
  if (!s) return undefined;
  const m = rfc3339.exec(s);
  if (!m) {
    const t = Date.parse(s);
    return Number.isNaN(t) ? undefined : t;
  }
  const whole = Date.parse(m[1] + m[3]);
  if (Number.isNaN(whole)) return undefined;
  const frac = m[2] ? Number('0.' + m[2]) * 1000 : 0;
  const t = whole + frac;
  // protojson writes an unset Timestamp as nothing, but a zero one as year 1.
  return t <= Date.UTC(1970, 0, 2) ? undefined : t;
}

/** parseDuration reads a protojson Duration ("1.500s", "-0.01s"). */
export function parseDuration(s: string | null | undefined): number | undefined {
  if (!s) return undefined;
  const m = /^(-?\d+(?:\.\d+)?)s$/.exec(s.trim());
  return m ? Number(m[1]) * 1000 : undefined;
}

const goUnits: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * parseGoDuration reads a duration as Go prints it ("10ms", "1.5s",
 * "2m30s", "1h0m0s"), which is how the coordinator writes "retrying in …"
 * into failure reasons.
 */
export function parseGoDuration(s: string): number | undefined {
  const text = s.trim();
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|μs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * goUnits[m[2]];
    matched = re.lastIndex;
  }
  return matched > 0 && matched === text.length ? total : undefined;
}

/** formatDuration writes a length of time for people: 850 µs, 12.3 ms, 1.52 s, 2 m 05 s, 3 h 04 m. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 0) return '-' + formatDuration(-ms);
  if (ms === 0) return '0';
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(ms < 100 ? 1 : 0)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const totalS = Math.round(s);
  const h = Math.floor(totalS / 3600);
  const min = Math.floor((totalS % 3600) / 60);
  const sec = totalS % 60;
  if (h === 0) return `${min} m ${String(sec).padStart(2, '0')} s`;
  if (h < 48) return `${h} h ${String(min).padStart(2, '0')} m`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** formatProtoDuration formats a protojson Duration. */
export function formatProtoDuration(s: string | null | undefined): string {
  return formatDuration(parseDuration(s));
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** formatTime writes a moment in local time to the millisecond: 2024-05-01 13:02:03.456. */
export function formatTime(ms: number | undefined): string {
  if (ms === undefined) return '—';
  const d = new Date(Math.floor(ms));
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

/** formatIn says how long after now a moment comes: "in 4.00 s", "due now". */
export function formatIn(ms: number | undefined, now: number): string {
  if (ms === undefined) return '—';
  if (ms - now < 1000) return 'due now';
  return `in ${formatDuration(Math.round((ms - now) / 1000) * 1000)}`;
}

/** formatAgo says how long before now a moment was: "4 s ago", "just now". */
export function formatAgo(ms: number | undefined, now: number): string {
  if (ms === undefined) return 'never';
  const d = now - ms;
  if (d < 1000) return 'just now';
  return `${formatDuration(Math.round(d / 1000) * 1000)} ago`;
}

/**
 * toLocalInput formats a moment for an <input type="datetime-local">, and
 * fromLocalInput reads one back; both in the browser's time zone.
 */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(s: string): number | undefined {
  if (!s) return undefined;
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(s);
  if (!m) return undefined;
  return new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], m[6] ? +m[6] : 0).getTime();
}

/** toRFC3339 writes a moment as the API takes Timestamps. */
export function toRFC3339(ms: number): string {
  return new Date(ms).toISOString();
}
