// A rate limit's rate in words, as `tasker limit set --rate` takes it.

import type { RateLimit } from '../api/types';
import { formatDuration, parseDuration } from './time';

const named: Record<number, string> = { 1000: 's', 60_000: 'm', 3_600_000: 'h' };

/** formatRate writes units per period: 100/s, 5000/h, or 3 per 250 ms. */
export function formatRate(l: RateLimit): string {
  const units = l.units ?? '?';
  const ms = parseDuration(l.period);
  if (ms === undefined) return `${units} per ?`;
  const unit = named[ms];
  return unit ? `${units}/${unit}` : `${units} per ${formatDuration(ms)}`;
}
