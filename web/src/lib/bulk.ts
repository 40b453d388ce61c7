/**
 * Bulk actions on the Tasks page: retry every task in error, or cancel
 * every pending or running one, that the page's filters keep, as `tasker
 * task retry --all` and `task cancel --all` do.
 */

/** A page of a task listing, as the API answers it. */
export interface TaskPage {
  tasks?: { id?: string }[];
  nextPageToken?: string;
}

/** BulkOutcome is what a bulk action did. */
export interface BulkOutcome {
  /** total tasks listed; done of them acted on. */
  total: number;
  done: number;
  /** refused are the tasks the coordinator refused (one moved meanwhile), with why. */
  refused: { id: string; message: string }[];
}

/** MAX_BULK bounds one bulk action, as the CLI's --all does. */
export const MAX_BULK = 10_000;

/** TooMany is thrown when more than MAX_BULK tasks match. */
export class TooMany extends Error {}

/**
 * listAll follows a listing's pages and returns its task ids, refusing more
 * than max so that a filter left out does not walk the whole store.
 */
export async function listAll(page: (token?: string) => Promise<TaskPage>, max = MAX_BULK): Promise<string[]> {
  const ids: string[] = [];
  let token: string | undefined;
  for (;;) {
    const p = await page(token);
    for (const t of p.tasks ?? []) if (t.id) ids.push(t.id);
    if (ids.length > max) throw new TooMany(`more than ${max} tasks match; narrow the filters`);
    if (!p.nextPageToken || (p.tasks ?? []).length === 0) return ids;
    token = p.nextPageToken;
  }
}

/**
 * runBulk acts on each id in turn: one the coordinator refuses is noted
 * and the rest go on. progress is told after each.
 */
export async function runBulk(
  ids: string[],
  act: (id: string) => Promise<unknown>,
  message: (e: unknown) => string,
  progress?: (n: number) => void,
): Promise<BulkOutcome> {
  const out: BulkOutcome = { total: ids.length, done: 0, refused: [] };
  for (const [i, id] of ids.entries()) {
    try {
      await act(id);
      out.done++;
    } catch (e) {
      out.refused.push({ id, message: message(e) });
    }
    progress?.(i + 1);
  }
  return out;
}

/** summary says in words what a bulk action did ("retried 2 of 3 tasks; refused: …"). */
export function summary(o: BulkOutcome, done: string): string {
  let s = `${done} ${o.done} of ${o.total} task${o.total === 1 ? '' : 's'}`;
  if (o.refused.length > 0) {
    s += `; not ${done}: ` + o.refused.map((r) => `${r.id} (${r.message})`).join('; ');
  }
  return s;
}
