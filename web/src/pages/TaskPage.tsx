import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { api, errorMessage, isAbort } from '../api/client';
import type { Step, Task, Transition, WatchTaskResponse } from '../api/types';
import { useAccess } from '../access';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { DagGraph } from '../components/DagGraph';
import { Gantt } from '../components/Gantt';
import { ErrorNote, JsonView, LiveDot, Mono, Section, StateBadge } from '../components/common';
import { closeOnPageHide, useAsync, useInterval, useNow, usePageActive, useThrottled, type LiveStatus } from '../hooks';
import { criticalPath, rowOrder, sortTransitions, stepTimelines, timeAxis, type StepTimeline } from '../lib/gantt';
import { parseJsonText } from '../lib/jsontext';
import { paths } from '../lib/routes';
import { isTerminal, stateLabel } from '../lib/states';
import { applyTransition, graphSteps, maxSeq, waitingText } from '../lib/taskmodel';
import { formatDuration, formatTime, parseTimestamp } from '../lib/time';
import { Link, useRouter } from '../router';

type Action = 'cancel' | 'retry' | { resolve: string } | { rerun: string } | { signal: string; step: string };

export function TaskPage({ id }: { id: string }) {
  const { search, navigate } = useRouter();
  const selected = search.get('step') ?? undefined;
  const [task, setTask] = useState<Task>();
  const [error, setError] = useState<unknown>();
  const [watchGen, setWatchGen] = useState(0);
  const [live, setLive] = useState<LiveStatus | 'stopped'>('connecting');
  const [action, setAction] = useState<Action>();
  const access = useAccess();
  const taskRef = useRef<Task | undefined>(undefined);
  taskRef.current = task;

  const load = useCallback(async () => {
    try {
      const t = await api.getTask(id);
      setTask(t);
      setError(undefined);
      return t;
    } catch (e) {
      if (!isAbort(e)) setError(e);
      return undefined;
    }
  }, [id]);
  // A large task is a large answer: reload it less often while it runs.
  const large = (task?.steps?.length ?? 0) > 200;
  const reloadSoon = useThrottled(load, large ? 2000 : 400);
  // Streamed transitions are applied in batches, one render per batch,
  // however fast a wide DAG's steps finish.
  const pending = useRef<WatchTaskResponse[]>([]);
  const applySoon = useThrottled(() => {
    const batch = pending.current;
    pending.current = [];
    setTask((cur) => batch.reduce((t, m) => (t && m.transition ? applyTransition(t, m.transition, m.taskState) : t), cur));
  }, 100);

  useEffect(() => {
    setTask(undefined);
    setError(undefined);
    void load();
  }, [load]);

  // Follow the task while it runs: apply each streamed transition at once,
  // reload the whole task (waiting reasons, errors, results) shortly after.
  // Not while the page is hidden: the stream would hold one of the
  // browser's few connections (usePageActive); it resumes after the
  // transitions already applied.
  const loaded = task !== undefined;
  const active = usePageActive();
  useEffect(() => {
    const t = taskRef.current;
    if (!t) return;
    if (isTerminal(t.state)) {
      setLive('stopped');
      return;
    }
    if (active === null) return;
    const ac = new AbortController();
    const stopListening = closeOnPageHide(ac);
    setLive('connecting');
    api
      .watchTask(
        id,
        maxSeq(t),
        (m) => {
          pending.current.push(m);
          applySoon();
          reloadSoon();
        },
        ac.signal,
        () => setLive('live'),
      )
      .then(
        async () => {
          const final = await load();
          setLive(final && !isTerminal(final.state) ? 'polling' : 'stopped');
        },
        (e) => {
          if (!ac.signal.aborted && !isAbort(e)) setLive('polling');
        },
      );
    return () => {
      stopListening();
      ac.abort();
    };
  }, [id, loaded, watchGen, active]);

  useInterval(
    async () => {
      const t = await load();
      if (t && isTerminal(t.state)) setLive('stopped');
    },
    2000,
    live === 'polling',
  );

  const running = !!task && !isTerminal(task.state);
  const now = useNow(1000, running);
  const rows = useMemo(() => (task ? stepTimelines(task, now) : []), [task, now]);
  const axis = useMemo(() => (task ? timeAxis(task, rows, now) : { start: 0, end: 1 }), [task, rows, now]);
  const critical = useMemo(
    () => criticalPath(task?.steps ?? [], new Map(rows.map((r) => [r.name, r.doneAt]))),
    [task?.steps, rows],
  );
  const ordered = useMemo(() => rowOrder(rows), [rows]);
  const graph = useMemo(() => graphSteps(task?.steps ?? []), [task?.steps]);

  const select = useCallback(
    (name?: string) => navigate(paths.task(id, name), { replace: true }),
    [id, navigate],
  );

  if (error && !task) {
    return (
      <div className="page">
        <h1>Task {id}</h1>
        <ErrorNote error={error} />
        <Link to={paths.tasks()}>← all tasks</Link>
      </div>
    );
  }
  if (!task) return <div className="page muted">Loading task {id}…</div>;

  const step = task.steps?.find((s) => s.name === selected);
  const timeline = rows.find((r) => r.name === selected);
  const created = parseTimestamp(task.createdAt);
  const finished = parseTimestamp(task.completedAt) ?? (isTerminal(task.state) ? parseTimestamp(task.updatedAt) : undefined);
  const afterAction = async () => {
    await load();
    setWatchGen((g) => g + 1);
  };
  const denied = access.refusal;

  return (
    <div className="page task-page">
      <div className="title-row">
        <h1>
          Task <Mono>{task.id}</Mono>
        </h1>
        <StateBadge state={task.state} />
        {live !== 'stopped' && <LiveDot status={live} />}
        <div className="spacer" />
        <div className="actions">
          <button
            className="danger"
            data-action="cancel"
            disabled={!!denied || task.state === 'STATE_CANCELLED' || task.state === 'STATE_ERROR'}
            title={
              denied ??
              (task.state === 'STATE_ERROR'
                ? 'a task in error cannot be cancelled: retry it, or resolve its failed steps'
                : 'cancel pending steps and abandon running ones')
            }
            onClick={() => setAction('cancel')}
          >
            Cancel task
          </button>
          <button
            className="primary"
            data-action="retry"
            disabled={!!denied || task.state !== 'STATE_ERROR'}
            title={denied ?? (task.state === 'STATE_ERROR' ? 'give the failed steps fresh attempts' : 'only a task in error can be retried')}
            onClick={() => setAction('retry')}
          >
            Retry task
          </button>
        </div>
      </div>
      <div className="meta">
        <span>
          template{' '}
          <Link to={paths.template(task.namespace ?? '', task.name ?? '', task.version)}>
            {task.namespace}/{task.name}@{task.version}
          </Link>
        </span>
        <span>created {formatTime(created)}</span>
        {finished !== undefined && <span>finished {formatTime(finished)}</span>}
        <span>
          {finished !== undefined ? 'took' : 'running for'} {formatDuration((finished ?? now) - (created ?? now))}
        </span>
        {task.idempotencyKey && (
          <span>
            key <Mono>{task.idempotencyKey}</Mono>
          </span>
        )}
        {task.parentTaskId && (
          <span data-parent-task={task.parentTaskId}>
            child of{' '}
            <Link to={paths.task(task.parentTaskId, task.parentStep || undefined)}>
              <Mono>{task.parentTaskId}</Mono>
            </Link>
            {task.parentStep ? ` (its step ${task.parentStep})` : ''}
          </span>
        )}
      </div>
      {denied && <div className="note warn">This token can look but not act: {denied}</div>}
      <ErrorNote error={error} prefix="Reloading failed" />

      <div className="task-grid">
        <div className="task-main">
          <Section
            title={`Steps (${task.steps?.length ?? 0})`}
            right={<span className="muted">click a step for its details · scroll to zoom · drag to pan</span>}
          >
            <DagGraph
              steps={graph}
              selected={selected}
              onSelect={select}
              critical={critical}
              height={(task.steps?.length ?? 0) > 40 ? 560 : 380}
            />
          </Section>
          <Section title="Waterfall" right={<span className="muted">every attempt on one time axis</span>}>
            <Gantt rows={ordered} axis={axis} critical={critical} selected={selected} onSelect={select} />
          </Section>
        </div>
        <aside className="task-side">
          {step ? (
            <StepPanel
              task={task}
              step={step}
              timeline={timeline}
              onClose={() => select(undefined)}
              onResolve={() => setAction({ resolve: step.name })}
              onRerun={() => setAction({ rerun: step.name })}
              onSignal={(name) => setAction({ signal: name, step: step.name })}
              onSelect={select}
              critical={critical.includes(step.name)}
            />
          ) : (
            <TaskDetails task={task} onSelect={select} />
          )}
        </aside>
      </div>

      {action === 'cancel' && (
        <ConfirmDialog
          title="Cancel this task?"
          body={<p>Pending steps are cancelled and executors are told to abandon running ones. This cannot be undone.</p>}
          confirmLabel="Cancel task"
          danger
          withReason
          onConfirm={async (reason) => {
            await api.cancelTask(task.id, reason);
            await afterAction();
          }}
          onClose={() => setAction(undefined)}
        />
      )}
      {action === 'retry' && (
        <ConfirmDialog
          title="Retry this task?"
          body={<p>The task goes back to pending and its failed steps get fresh attempts.</p>}
          confirmLabel="Retry task"
          withReason
          onConfirm={async (reason) => {
            await api.retryTask(task.id, reason);
            await afterAction();
          }}
          onClose={() => setAction(undefined)}
        />
      )}
      {typeof action === 'object' && 'rerun' in action && (
        <ConfirmDialog
          title={`Rerun from step ${action.rerun}?`}
          body={
            <p>
              The step and every step after it run again with fresh attempts and a new idempotency key; every other
              step keeps its result. The reason is recorded with each transition.
            </p>
          }
          confirmLabel="Rerun"
          withReason
          onConfirm={async (reason) => {
            await api.rerunStep(task.id, action.rerun, reason);
            await afterAction();
          }}
          onClose={() => setAction(undefined)}
        />
      )}
      {typeof action === 'object' && 'signal' in action && (
        <SignalDialog
          taskId={task.id}
          name={action.signal}
          step={action.step}
          onDone={afterAction}
          onClose={() => setAction(undefined)}
        />
      )}
      {typeof action === 'object' && 'resolve' in action && (
        <ResolveDialog
          taskId={task.id}
          template={{ namespace: task.namespace ?? '', name: task.name ?? '', version: task.version }}
          step={action.resolve}
          onDone={afterAction}
          onClose={() => setAction(undefined)}
        />
      )}
    </div>
  );
}

/**
 * optionalJson parses a dialog's optional JSON field: undefined when it is
 * empty, and an error naming what the field holds (and where the text
 * goes wrong) when it is not JSON.
 */
function optionalJson(text: string, what: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    return parseJsonText(text).value;
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${errorMessage(e)}`);
  }
}

function ResolveDialog({
  taskId, template, step, onDone, onClose,
}: {
  taskId: string;
  template: { namespace: string; name: string; version?: string };
  step: string;
  onDone: () => Promise<void>;
  onClose: () => void;
}) {
  const [results, setResults] = useState('');
  // A decision step's results choose its branches; the operator is told
  // so, since without "next" every branch runs.
  const tmpl = useAsync((s) => api.getTemplate(template.namespace, template.name, template.version, s), [
    template.namespace, template.name, template.version,
  ]);
  const st = tmpl.data?.steps?.find((x) => x.name === step);
  const children = (tmpl.data?.steps ?? []).filter((x) => (x.dependsOn ?? []).includes(step)).map((x) => x.name ?? '');
  return (
    <ConfirmDialog
      title={`Resolve step ${step} manually?`}
      body={
        <>
          <p>The step is marked resolved_manually, which satisfies its children as if it had completed.</p>
          {st?.decision && (
            <p className="note info" data-decision-hint>
              A decision step: {'{"next": [...]}'} in the results chooses which of its children run ({children.join(', ')}), the
              others are skipped; without &quot;next&quot; every branch runs.
            </p>
          )}
        </>
      }
      confirmLabel="Resolve step"
      withReason
      onConfirm={async (reason) => {
        const value = optionalJson(results, 'the results');
        await api.resolveStep(taskId, step, reason, value);
        await onDone();
      }}
      onClose={onClose}
    >
      <label className="field">
        Results for its children (JSON, optional)
        <textarea rows={4} value={results} onChange={(e) => setResults(e.target.value)} placeholder={st?.decision ? `{"next": ["${children[0] ?? ''}"]}` : '{"shipped": true}'} />
      </label>
    </ConfirmDialog>
  );
}

function SignalDialog({
  taskId, name, step, onDone, onClose,
}: { taskId: string; name: string; step: string; onDone: () => Promise<void>; onClose: () => void }) {
  const [payload, setPayload] = useState('');
  return (
    <ConfirmDialog
      title={`Send signal ${name}?`}
      body={
        <p>
          Step {step} waits for it: the step completes with the payload as its result, and the steps after it may run.
        </p>
      }
      confirmLabel="Send signal"
      onConfirm={async () => {
        // Checked here too, so the field's mistake is named, with its line
        // and column, before anything is sent.
        optionalJson(payload, 'the payload');
        await api.signalTask(taskId, name, payload.trim());
        await onDone();
      }}
      onClose={onClose}
    >
      <label className="field">
        Payload (JSON, optional; none is null)
        <textarea rows={4} value={payload} onChange={(e) => setPayload(e.target.value)} placeholder='{"approved_by": "ana"}' />
      </label>
    </ConfirmDialog>
  );
}

function clock(ms: number | undefined): string {
  return ms === undefined ? '—' : formatTime(ms).slice(11);
}

function TransitionsList({ transitions }: { transitions: Transition[] }) {
  if (transitions.length === 0) return <div className="muted">none yet</div>;
  return (
    <ol className="transitions">
      {transitions.map((t, i) => {
        const at = parseTimestamp(t.at);
        const executor = typeof t.metadata?.executor === 'string' ? t.metadata.executor : undefined;
        return (
          <li key={t.seq ?? i}>
            <div className="tr-head">
              <span className="muted num">#{t.seq}</span>
              <span className="nowrap" title={formatTime(at)}>
                {clock(at)}
              </span>
              <span>
                {t.fromState && t.fromState !== 'STATE_UNSPECIFIED' ? stateLabel(t.fromState) : '·'} →{' '}
                <strong>{stateLabel(t.toState)}</strong>
              </span>
              {t.attempt ? <span className="muted">attempt {t.attempt}</span> : null}
            </div>
            {t.reason && <div className="tr-reason">{t.reason}</div>}
            {executor && !t.reason?.includes(executor) && <div className="tr-reason muted">executor {executor}</div>}
          </li>
        );
      })}
    </ol>
  );
}

/** retryPlanned is true for an errored step the coordinator will retry by itself. */
function retryPlanned(step: Step): boolean {
  return (
    step.state === 'STATE_ERROR' &&
    parseTimestamp(step.nextRetryAt) !== undefined &&
    step.retryable !== false &&
    step.error?.retryable !== false &&
    (step.attempts ?? 0) < (step.maxAttempts ?? Infinity)
  );
}

function StepPanel({
  task, step, timeline, onClose, onResolve, onRerun, onSignal, onSelect, critical,
}: {
  task: Task;
  step: Step;
  timeline?: StepTimeline;
  onClose: () => void;
  onResolve: () => void;
  onRerun: () => void;
  onSignal: (name: string) => void;
  onSelect: (name: string) => void;
  critical: boolean;
}) {
  const access = useAccess();
  const waiting = waitingText(step.waiting);
  const canResolve = step.state === 'STATE_PENDING' || step.state === 'STATE_ERROR';
  // The coordinator decides the rest (a step running below it, a task that
  // cannot finish); a finished step of a task that is not running is the
  // common case, offered here.
  const canRerun =
    ['STATE_COMPLETE', 'STATE_ERROR', 'STATE_RESOLVED_MANUALLY', 'STATE_SKIPPED'].includes(step.state ?? '') &&
    ['STATE_COMPLETE', 'STATE_ERROR'].includes(task.state ?? '');
  const signal = step.waiting?.reason === 'signal' ? step.waiting.key : undefined;
  const attempts = timeline?.attempts ?? [];
  return (
    <div className="panel step-panel" data-step-panel={step.name}>
      <header className="panel-head">
        <h2>
          {step.name} <StateBadge state={step.state} />
        </h2>
        <button className="link" onClick={onClose} title="back to the task">
          ✕
        </button>
      </header>
      {waiting && (
        <div className={`note ${step.waiting?.reason === 'no_executor' || step.waiting?.reason === 'capacity' ? 'warn' : 'info'}`} data-waiting={step.waiting?.reason}>
          <strong>Waiting:</strong> {waiting}
        </div>
      )}
      <dl className="kv">
        <dt>handler</dt>
        <dd>
          {step.handler ? <Mono>{step.handler}</Mono> : <span className="muted">none: the coordinator runs it (a wait or a child task)</span>}
        </dd>
        {step.childTaskId && (
          <>
            <dt>child task</dt>
            <dd data-child-task={step.childTaskId}>
              <Link to={paths.task(step.childTaskId)}>
                <Mono>{step.childTaskId}</Mono>
              </Link>
            </dd>
          </>
        )}
        <dt>attempts</dt>
        <dd>
          {step.attempts ?? 0} of {step.maxAttempts ?? '?'} {step.retryable === false && <span className="muted">(not retryable)</span>}
        </dd>
        {(step.dependsOn?.length ?? 0) > 0 && (
          <>
            <dt>depends on</dt>
            <dd>
              {step.dependsOn!.map((d) => (
                <button key={d} className="chip" onClick={() => onSelect(d)}>
                  {d}
                </button>
              ))}
            </dd>
          </>
        )}
        {step.skippable && (
          <>
            <dt>skippable</dt>
            <dd>yes</dd>
          </>
        )}
        {retryPlanned(step) && (
          <>
            <dt>next retry</dt>
            <dd>{formatTime(parseTimestamp(step.nextRetryAt))}</dd>
          </>
        )}
        {critical && (
          <>
            <dt>critical path</dt>
            <dd>on it: this step decided when the task finished</dd>
          </>
        )}
      </dl>
      {step.error && (step.error.message || step.error.errorClass) && (
        <div className="note error step-error" data-step-error>
          <div>
            <strong>{step.error.errorClass || 'Error'}</strong>
            {step.error.retryable === false && <span className="muted"> · permanent</span>}
          </div>
          <div className="error-message">{step.error.message}</div>
        </div>
      )}
      <div className="actions">
        {signal && (
          <button
            className="primary"
            data-action="signal"
            disabled={!!access.refusal}
            title={access.refusal ?? `send the task signal ${signal}: this step completes with its payload`}
            onClick={() => onSignal(signal)}
          >
            Send signal
          </button>
        )}
        <button
          data-action="resolve"
          disabled={!!access.refusal || !canResolve}
          title={access.refusal ?? (canResolve ? 'mark it resolved_manually: its children may run' : 'only a pending or errored step can be resolved')}
          onClick={onResolve}
        >
          Resolve step
        </button>
        <button
          data-action="rerun"
          disabled={!!access.refusal || !canRerun}
          title={access.refusal ?? (canRerun ? 'run it and every step after it again, keeping the other results' : 'a finished step of a complete or errored task can be rerun')}
          onClick={onRerun}
        >
          Rerun from here
        </button>
      </div>

      <h3>Attempts</h3>
      {attempts.length === 0 ? (
        <div className="muted">none yet</div>
      ) : (
        <table className="table compact attempts">
          <thead>
            <tr>
              <th>#</th>
              <th>executor</th>
              <th>queued</th>
              <th>ran</th>
              <th>outcome</th>
            </tr>
          </thead>
          <tbody>
            {attempts.map((a) => (
              <tr key={a.attempt} className={a.outcome === 'STATE_ERROR' ? 'failed' : undefined}>
                <td className="num">{a.attempt}</td>
                <td>
                  <Mono title={a.executor}>{a.executor ?? '—'}</Mono>
                </td>
                <td className="num">
                  {a.readyAt !== undefined && a.dispatchedAt !== undefined ? formatDuration(a.dispatchedAt - a.readyAt) : '—'}
                </td>
                <td className="num">
                  {a.dispatchedAt !== undefined ? formatDuration((a.endedAt ?? Date.now()) - a.dispatchedAt) : '—'}
                </td>
                <td>
                  {a.outcome ? stateLabel(a.outcome) : 'running'}
                  {a.outcome === 'STATE_ERROR' && (
                    <div className="attempt-error">
                      {a.errorClass && <strong>{a.errorClass}: </strong>}
                      {a.errorMessage ?? a.reason}
                    </div>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <h3>Results</h3>
      {step.results === undefined || step.results === null ? <div className="muted">none</div> : <JsonView value={step.results} />}

      <h3>Transitions</h3>
      <TransitionsList transitions={sortTransitions(step.transitions)} />

      <details className="task-context">
        <summary>Task context</summary>
        <JsonView value={task.context ?? {}} />
      </details>
      <div className="muted small ids">
        task <Mono>{task.id}</Mono> · step id <Mono>{step.id}</Mono>
      </div>
    </div>
  );
}

function TaskDetails({ task, onSelect }: { task: Task; onSelect: (name: string) => void }) {
  const counts = new Map<string, number>();
  for (const s of task.steps ?? []) counts.set(stateLabel(s.state), (counts.get(stateLabel(s.state)) ?? 0) + 1);
  const waiting = (task.steps ?? []).filter((s) => s.waiting?.reason === 'no_executor' || s.waiting?.reason === 'capacity');
  // Every other wait but for parents: a signal, a sleep, a key, a limit, a
  // child task. Parents are drawn in the graph already.
  const holds = (task.steps ?? []).filter(
    (s) => s.waiting?.reason && !['parents', 'no_executor', 'capacity'].includes(s.waiting.reason),
  );
  return (
    <div className="panel">
      <header className="panel-head">
        <h2>Task</h2>
      </header>
      <p className="muted">Select a step in the graph or the waterfall for its handler, attempts, results and transitions.</p>
      <div className="chips">
        {[...counts].map(([k, v]) => (
          <span key={k} className="chip static">
            {k}: {v}
          </span>
        ))}
      </div>
      {waiting.length > 0 && (
        <div className="note warn">
          {waiting.map((s) => (
            <div key={s.name}>
              <strong>{s.name}</strong>: {waitingText(s.waiting)}
            </div>
          ))}
        </div>
      )}
      {holds.length > 0 && (
        <div className="note info" data-waits>
          {holds.map((s) => (
            <div key={s.name} data-wait-step={s.name}>
              <button className="link" onClick={() => onSelect(s.name)}>
                <strong>{s.name}</strong>
              </button>
              : {waitingText(s.waiting)}
            </div>
          ))}
        </div>
      )}
      <h3>Context</h3>
      <JsonView value={task.context ?? {}} />
      <h3>Task transitions</h3>
      <TransitionsList transitions={sortTransitions(task.transitions)} />
    </div>
  );
}
