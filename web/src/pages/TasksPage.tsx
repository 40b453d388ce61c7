import { useMemo, useState, type FormEvent } from 'react';
import { useAccess } from '../access';
import { api, errorMessage, type CountTasksParams } from '../api/client';
import type { State, TaskTemplate } from '../api/types';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorNote, LiveDot, Mono, StateBadge } from '../components/common';
import { listAll, runBulk, summary } from '../lib/bulk';
import { useAsync, useEventStream, useInterval, useNow, useThrottled } from '../hooks';
import { paths } from '../lib/routes';
import { STATES, isTerminal, parseState, stateColor, stateLabel, stateTextColor } from '../lib/states';
import { formatDuration, formatTime, fromLocalInput, parseTimestamp, toRFC3339 } from '../lib/time';
import { Link, useRouter } from '../router';

const PAGE_SIZE = 50;

const plural = (n: number) => (n === 1 ? 'task' : 'tasks');

interface Filters {
  namespace: string;
  name: string;
  state?: State;
  after: string;
  before: string;
  q: string;
  /** ctx is one PATH=VALUE the task's context must hold (context_equals). */
  ctx: string;
}

function filtersFrom(search: URLSearchParams): Filters {
  return {
    namespace: search.get('namespace') ?? '',
    name: search.get('name') ?? '',
    state: parseState(search.get('state')),
    after: search.get('after') ?? '',
    before: search.get('before') ?? '',
    q: search.get('q') ?? '',
    ctx: search.get('ctx') ?? '',
  };
}

function queryOf(f: Filters): URLSearchParams {
  const q = new URLSearchParams();
  if (f.namespace) q.set('namespace', f.namespace);
  if (f.name) q.set('name', f.name);
  if (f.state) q.set('state', stateLabel(f.state));
  if (f.after) q.set('after', f.after);
  if (f.before) q.set('before', f.before);
  if (f.q) q.set('q', f.q);
  if (f.ctx) q.set('ctx', f.ctx);
  return q;
}

/** templateNames lists namespaces and, per namespace, template names. */
function templateNames(ts: TaskTemplate[] | undefined): Map<string, string[]> {
  const m = new Map<string, Set<string>>();
  for (const t of ts ?? []) {
    const ns = t.namespace ?? '';
    if (!m.has(ns)) m.set(ns, new Set());
    m.get(ns)!.add(t.name ?? '');
  }
  return new Map([...m].sort().map(([k, v]) => [k, [...v].sort()]));
}

export function TasksPage() {
  const { search, navigate } = useRouter();
  const filters = useMemo(() => filtersFrom(search), [search]);
  const [draft, setDraft] = useState<Filters>(filters);
  const [draftKey, setDraftKey] = useState(search.toString());
  if (draftKey !== search.toString()) {
    // The address changed (back button, a count clicked): show its filters.
    setDraftKey(search.toString());
    setDraft(filters);
  }
  const [pages, setPages] = useState<string[]>(['']); // page tokens visited; last is current
  const pageToken = pages[pages.length - 1];
  const filterKey = search.toString();
  const [pagesKey, setPagesKey] = useState(filterKey);
  if (pagesKey !== filterKey) {
    setPagesKey(filterKey);
    setPages(['']);
  }

  const templates = useAsync((s) => api.listTemplates(undefined, s), []);
  const names = useMemo(() => templateNames(templates.data?.templates), [templates.data]);

  const after = fromLocalInput(filters.after);
  const before = fromLocalInput(filters.before);
  // The list and its counts share every filter but the state, so the
  // counts above the list add up to what it pages through.
  const shared: CountTasksParams = {
    namespace: filters.namespace || undefined,
    name: filters.name || undefined,
    createdAfter: after !== undefined ? toRFC3339(after) : undefined,
    createdBefore: before !== undefined ? toRFC3339(before) : undefined,
    search: filters.q.trim() || undefined,
    contextEquals: filters.ctx.trim() ? [filters.ctx.trim()] : undefined,
  };
  const list = useAsync(
    (s) => api.listTasks({ ...shared, state: filters.state, pageSize: PAGE_SIZE, pageToken: pageToken || undefined }, s),
    [filterKey, pageToken],
  );
  const countKey = queryOf({ ...filters, state: undefined }).toString();
  const counts = useAsync((s) => api.countTasks(shared, s), [countKey]);

  // Live: any task transition in scope reloads the counts, and the list
  // while it shows the newest tasks.
  const refresh = useThrottled(() => {
    counts.reload();
    if (pageToken === '') list.reload();
  }, 700);
  const live = useEventStream(
    { namespace: filters.namespace || undefined, name: filters.name || undefined, kinds: ['EVENT_KIND_TASK'] },
    refresh,
    refresh,
  );
  useInterval(refresh, 5000, live !== 'live');
  const now = useNow(5000);

  const apply = (e: FormEvent) => {
    e.preventDefault();
    navigate(paths.tasks(queryOf(draft)));
  };
  const setState = (st?: State) => navigate(paths.tasks(queryOf({ ...filters, state: st })));

  const total = (counts.data?.counts ?? []).reduce((n, c) => n + Number(c.count ?? 0), 0);
  const countOf = (st: State) => Number(counts.data?.counts?.find((c) => c.state === st)?.count ?? 0);

  // Bulk actions take the tasks of the chosen state under every filter:
  // retry the ones in error (after an outage), cancel pending or running
  // ones (a backlog). They list first, then act one task at a time.
  const access = useAccess();
  // bulk is the action asked for, with the count and state it was asked on.
  const [bulk, setBulk] = useState<{ kind: 'retry' | 'cancel'; count: number; state: State }>();
  const [progress, setProgress] = useState<{ done: number; total: number }>();
  const [bulkResult, setBulkResult] = useState<string>();
  const bulkKind =
    filters.state === 'STATE_ERROR'
      ? 'retry'
      : filters.state === 'STATE_PENDING' || filters.state === 'STATE_IN_PROGRESS'
        ? 'cancel'
        : undefined;
  const bulkCount = filters.state ? countOf(filters.state) : 0;
  const runBulkAction = async (kind: 'retry' | 'cancel', state: State, reason: string) => {
    const done = kind === 'retry' ? 'retried' : 'cancelled';
    setProgress(undefined);
    const ids = await listAll((token) => api.listTasks({ ...shared, state, pageSize: 500, pageToken: token }));
    setProgress({ done: 0, total: ids.length });
    const out = await runBulk(
      ids,
      (id) => (kind === 'retry' ? api.retryTask(id, reason) : api.cancelTask(id, reason)),
      errorMessage,
      (n) => setProgress({ done: n, total: ids.length }),
    );
    refresh();
    if (out.refused.length > 0) throw new Error(summary(out, done));
    setBulkResult(summary(out, done));
  };
  const tasks = list.data?.tasks ?? [];
  const next = list.data?.nextPageToken;

  return (
    <div className="page">
      <div className="title-row">
        <h1>Tasks</h1>
        <LiveDot status={live} />
      </div>

      <div className="counts" data-counts>
        <button className={`count${filters.state ? '' : ' active'}`} onClick={() => setState(undefined)} data-count="all">
          <span className="count-n">{counts.data ? total : '…'}</span> all
        </button>
        {STATES.map((st) => (
          <button
            key={st}
            className={`count${filters.state === st ? ' active' : ''}`}
            style={{ borderColor: stateColor(st) }}
            onClick={() => setState(filters.state === st ? undefined : st)}
            data-count={stateLabel(st)}
          >
            <span className="count-n" style={{ background: stateColor(st), color: stateTextColor(st) }}>
              {counts.data ? countOf(st) : '…'}
            </span>{' '}
            {stateLabel(st)}
          </button>
        ))}
      </div>
      <ErrorNote error={counts.error} prefix="Counts" />
      {bulkKind && (
        <div className="bulk-actions">
          <button
            className={bulkKind === 'cancel' ? 'danger' : 'primary'}
            data-action={`${bulkKind}-all`}
            disabled={!!access.refusal || !counts.data || bulkCount === 0}
            title={
              access.refusal ??
              (bulkKind === 'retry'
                ? 'give every task in error that these filters keep fresh attempts of its failed steps'
                : `cancel every ${stateLabel(filters.state!)} task that these filters keep`)
            }
            onClick={() => {
              setBulkResult(undefined);
              setBulk({ kind: bulkKind, count: bulkCount, state: filters.state! });
            }}
          >
            {bulkKind === 'retry' ? 'Retry' : 'Cancel'} all {counts.data ? bulkCount : '…'}
          </button>
          {bulkResult && (
            <span className="muted" data-bulk-result>
              {bulkResult}
            </span>
          )}
        </div>
      )}
      {bulk && (
        <ConfirmDialog
          title={
            bulk.kind === 'retry'
              ? `Retry the ${bulk.count} ${plural(bulk.count)} in error?`
              : `Cancel the ${bulk.count} ${stateLabel(bulk.state)} ${plural(bulk.count)}?`
          }
          body={
            <p>
              {bulk.kind === 'retry'
                ? 'Every task in error that the filters keep goes back to pending and its failed steps get fresh attempts, '
                : 'Every such task that the filters keep is cancelled (pending steps cancelled, running ones abandoned), '}
              one task at a time. A task that has moved meanwhile is refused and named; the others go on.
            </p>
          }
          confirmLabel={bulk.kind === 'retry' ? 'Retry all' : 'Cancel all'}
          danger={bulk.kind === 'cancel'}
          withReason
          onConfirm={(reason) => runBulkAction(bulk.kind, bulk.state, reason)}
          onClose={() => {
            setBulk(undefined);
            setProgress(undefined);
          }}
        >
          {progress && (
            <p className="muted" data-bulk-progress>
              {progress.done} of {progress.total}
            </p>
          )}
        </ConfirmDialog>
      )}

      <form className="filters" onSubmit={apply}>
        <label>
          Namespace
          <select value={draft.namespace} onChange={(e) => setDraft({ ...draft, namespace: e.target.value, name: '' })}>
            <option value="">any</option>
            {[...names.keys()].map((ns) => (
              <option key={ns}>{ns}</option>
            ))}
          </select>
        </label>
        <label>
          Template
          <select value={draft.name} onChange={(e) => setDraft({ ...draft, name: e.target.value })}>
            <option value="">any</option>
            {(draft.namespace ? names.get(draft.namespace) ?? [] : [...new Set([...names.values()].flat())].sort()).map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        </label>
        <label>
          State
          <select
            value={draft.state ? stateLabel(draft.state) : ''}
            onChange={(e) => setDraft({ ...draft, state: parseState(e.target.value) })}
          >
            <option value="">any</option>
            {STATES.map((st) => (
              <option key={st} value={stateLabel(st)}>
                {stateLabel(st)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Created after
          <input type="datetime-local" value={draft.after} onChange={(e) => setDraft({ ...draft, after: e.target.value })} />
        </label>
        <label>
          Created before
          <input type="datetime-local" value={draft.before} onChange={(e) => setDraft({ ...draft, before: e.target.value })} />
        </label>
        <label className="grow">
          Id or idempotency key
          <input
            value={draft.q}
            placeholder="exact id or key"
            onChange={(e) => setDraft({ ...draft, q: e.target.value })}
            name="search"
          />
        </label>
        <label className="grow">
          Context field
          <input
            value={draft.ctx}
            placeholder="path=value, e.g. order_id=A-1"
            title='A value the task context holds: order_id=A-1, customer.id=c-7, amount=5 (the number), amount="5" (the string)'
            onChange={(e) => setDraft({ ...draft, ctx: e.target.value })}
            name="context"
          />
        </label>
        <div className="filter-buttons">
          <button className="primary" type="submit">
            Apply
          </button>
          <button type="button" onClick={() => navigate(paths.tasks())}>
            Clear
          </button>
        </div>
      </form>

      <ErrorNote error={list.error} />
      <table className="table tasks-table">
        <thead>
          <tr>
            <th>id</th>
            <th>template</th>
            <th>state</th>
            <th>created</th>
            <th>duration</th>
            <th>idempotency key</th>
          </tr>
        </thead>
        <tbody>
          {tasks.map((t) => {
            const created = parseTimestamp(t.createdAt);
            const end = parseTimestamp(t.completedAt) ?? (isTerminal(t.state) ? parseTimestamp(t.updatedAt) : now);
            return (
              <tr key={t.id} data-task={t.id}>
                <td>
                  <Link to={paths.task(t.id)}>
                    <Mono>{t.id}</Mono>
                  </Link>
                </td>
                <td>
                  {t.namespace}/{t.name}
                  <span className="muted">@{t.version}</span>
                </td>
                <td>
                  <StateBadge state={t.state} />
                </td>
                <td className="nowrap">{formatTime(created)}</td>
                <td className="num">{created !== undefined && end !== undefined ? formatDuration(end - created) : '—'}</td>
                <td className="key" title={t.idempotencyKey}>
                  <Mono>{t.idempotencyKey}</Mono>
                </td>
              </tr>
            );
          })}
          {list.data && tasks.length === 0 && (
            <tr>
              <td colSpan={6} className="muted">
                No tasks match.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <div className="pager">
        <button disabled={pages.length <= 1} onClick={() => setPages(pages.slice(0, -1))}>
          ← Newer
        </button>
        <span className="muted">
          page {pages.length}
          {list.loading ? ' · loading…' : ''}
        </span>
        <button disabled={!next} onClick={() => next && setPages([...pages, next])}>
          Older →
        </button>
      </div>
    </div>
  );
}
