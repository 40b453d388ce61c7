import { useMemo, useRef, useState, type FormEvent } from 'react';
import { api, ApiError, errorMessage } from '../api/client';
import type { TaskTemplate } from '../api/types';
import { useAccess } from '../access';
import { DagGraph } from '../components/DagGraph';
import { ErrorNote, JsonView, Mono, Section } from '../components/common';
import { isForbidden, useAsync } from '../hooks';
import { paths } from '../lib/routes';
import { checkContextText, exampleContext, fieldLabel, newValidator, type ContextValidator } from '../lib/schema';
import { stepRuns, stepTraits } from '../lib/steptemplate';
import { formatProtoDuration } from '../lib/time';
import { Link, useRouter } from '../router';

/** compareVersions orders semantic versions, highest first. */
function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
  const pb = b.split(/[.+-]/).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? -1;
    const y = pb[i] ?? -1;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return y - x;
    return String(y).localeCompare(String(x));
  }
  return 0;
}

type Catalog = Map<string, Map<string, string[]>>;

function catalog(ts: TaskTemplate[] | undefined): Catalog {
  const c: Catalog = new Map();
  for (const t of ts ?? []) {
    const ns = t.namespace ?? '';
    if (!c.has(ns)) c.set(ns, new Map());
    const names = c.get(ns)!;
    if (!names.has(t.name ?? '')) names.set(t.name ?? '', []);
    names.get(t.name ?? '')!.push(t.version ?? '');
  }
  for (const names of c.values()) for (const v of names.values()) v.sort(compareVersions);
  return new Map([...c].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, new Map([...v].sort(([a], [b]) => a.localeCompare(b)))]));
}

export function TemplatesPage({ namespace, name }: { namespace?: string; name?: string }) {
  const list = useAsync((s) => api.listTemplates(undefined, s), []);
  const cat = useMemo(() => catalog(list.data?.templates), [list.data]);
  return (
    <div className="page">
      <h1>Templates</h1>
      <ErrorNote error={list.error} />
      <div className="two-col">
        <nav className="template-list">
          {list.data && cat.size === 0 && <div className="muted">No templates registered yet.</div>}
          {[...cat].map(([ns, names]) => (
            <div key={ns} className="ns-group">
              <div className="ns-name">{ns}</div>
              {[...names].map(([n, versions]) => (
                <Link
                  key={n}
                  to={paths.template(ns, n)}
                  className={`template-link${ns === namespace && n === name ? ' active' : ''}`}
                >
                  <span>{n}</span>
                  <span className="muted small">
                    {versions.length > 1 ? `${versions.length} versions · ` : ''}
                    {versions[0]}
                  </span>
                </Link>
              ))}
            </div>
          ))}
        </nav>
        <div className="template-detail">
          {namespace && name ? (
            <TemplateDetail
              key={`${namespace}/${name}`}
              namespace={namespace}
              name={name}
              versions={cat.get(namespace)?.get(name) ?? []}
            />
          ) : (
            <div className="muted">Pick a template to see its steps and context schema, and to start a task from it.</div>
          )}
        </div>
      </div>
    </div>
  );
}

function TemplateDetail({ namespace, name, versions }: { namespace: string; name: string; versions: string[] }) {
  const { search, navigate } = useRouter();
  const version = search.get('version') ?? '';
  const t = useAsync((s) => api.getTemplate(namespace, name, version || undefined, s), [namespace, name, version]);
  const tmpl = t.data;
  // A node shows what its step runs: the handler, or what the coordinator
  // does instead (a wait, a sleep, a child task).
  const graph = useMemo(() => (tmpl?.steps ?? []).map((s) => (s.handler ? s : { ...s, handler: stepRuns(s) })), [tmpl]);
  return (
    <>
      <div className="title-row">
        <h2 className="big">
          {namespace}/{name}
        </h2>
        <label className="inline">
          version{' '}
          <select
            value={version || tmpl?.version || ''}
            onChange={(e) => navigate(paths.template(namespace, name, e.target.value), { replace: true })}
          >
            {(versions.length ? versions : [tmpl?.version ?? '']).map((v) => (
              <option key={v}>{v}</option>
            ))}
          </select>
        </label>
        <div className="spacer" />
        <Link to={paths.analytics(namespace, name)}>Analytics →</Link>
        <Link to={paths.tasks(new URLSearchParams({ namespace, name }))}>Tasks →</Link>
      </div>
      <ErrorNote error={t.error} />
      {tmpl && (
        <>
          {tmpl.description && <p>{tmpl.description}</p>}
          <Section title={`DAG (${tmpl.steps?.length ?? 0} steps)`}>
            <DagGraph steps={graph} plain height={(tmpl.steps?.length ?? 0) > 40 ? 520 : 300} />
          </Section>
          <Section title="Steps">
            <table className="table compact">
              <thead>
                <tr>
                  <th>step</th>
                  <th>runs</th>
                  <th>depends on</th>
                  <th>attempts</th>
                  <th>backoff</th>
                  <th>timeout</th>
                  <th>config</th>
                </tr>
              </thead>
              <tbody>
                {(tmpl.steps ?? []).map((s) => (
                  <tr key={s.name}>
                    <td>
                      {s.name}
                      {s.skippable && <span className="chip static small">skippable</span>}
                    </td>
                    <td data-step-runs={s.name}>
                      {s.handler ? <Mono>{s.handler}</Mono> : stepRuns(s)}
                      {stepTraits(s).map((t) => (
                        <div key={t} className="muted small">
                          {t}
                        </div>
                      ))}
                    </td>
                    <td>{(s.dependsOn ?? []).join(', ') || <span className="muted">—</span>}</td>
                    <td className="num">
                      {s.retryable === false ? '1 (not retryable)' : s.retryLimit ?? 3}
                    </td>
                    <td className="nowrap">
                      {s.backoff
                        ? `${formatProtoDuration(s.backoff.initial)} ×${s.backoff.multiplier ?? 2} ≤ ${formatProtoDuration(s.backoff.max)}`
                        : 'default'}
                    </td>
                    <td>{s.timeout ? formatProtoDuration(s.timeout) : <span className="muted">none</span>}</td>
                    <td>{s.config && Object.keys(s.config).length ? <Mono>{JSON.stringify(s.config)}</Mono> : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Section>
          <div className="two-even">
            <Section title="Context schema">
              {tmpl.contextSchema && Object.keys(tmpl.contextSchema).length ? (
                <JsonView value={tmpl.contextSchema} />
              ) : (
                <div className="muted">none: any JSON object is accepted</div>
              )}
            </Section>
            <Section title="Start a task">
              <CreateTaskForm template={tmpl} />
            </Section>
          </div>
        </>
      )}
    </>
  );
}

function CreateTaskForm({ template }: { template: TaskTemplate }) {
  const { navigate } = useRouter();
  const access = useAccess();
  const [text, setText] = useState(() => JSON.stringify(exampleContext(template.contextSchema), null, 2));
  const [key, setKey] = useState('');
  const [bypass, setBypass] = useState<string[]>([]);
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const [refusal, setRefusal] = useState<unknown>();
  const gutter = useRef<HTMLDivElement>(null);

  const { validator, schemaProblem } = useMemo((): { validator: ContextValidator; schemaProblem?: string } => {
    try {
      return { validator: newValidator(template.contextSchema) };
    } catch (e) {
      // The coordinator accepted the schema, so it will judge; say so.
      return { validator: newValidator(null), schemaProblem: errorMessage(e) };
    }
  }, [template.contextSchema]);
  const check = useMemo(() => checkContextText(text, validator), [text, validator]);
  const errorLines = new Map<number, string[]>();
  if (!check.ok) {
    if (check.syntax) errorLines.set(check.syntax.pos.line, [check.syntax.message]);
    for (const e of check.errors) {
      const line = e.pos?.line ?? 1;
      errorLines.set(line, [...(errorLines.get(line) ?? []), `${fieldLabel(e.path)}: ${e.message}`]);
    }
  }
  const lineCount = text.split('\n').length;
  const skippable = (template.steps ?? []).filter((s) => s.skippable);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setTouched(true);
    setRefusal(undefined);
    if (!check.ok) return;
    setBusy(true);
    try {
      const res = await api.createTask({
        namespace: template.namespace ?? '',
        name: template.name ?? '',
        version: template.version,
        context: check.value,
        idempotencyKey: key.trim() || undefined,
        bypassSteps: bypass.length ? bypass : undefined,
      });
      if (!res.task?.id) throw new ApiError(200, 'the coordinator answered without a task');
      navigate(paths.task(res.task.id));
    } catch (err) {
      if (isForbidden(err)) access.refuse(errorMessage(err));
      setRefusal(err);
      setBusy(false);
    }
  };

  const show = touched || text !== JSON.stringify(exampleContext(template.contextSchema), null, 2);
  return (
    <form className="create-form" onSubmit={submit} noValidate>
      <label className="field">Context (JSON)</label>
      <div className={`editor${show && !check.ok ? ' invalid' : ''}`}>
        <div className="gutter" ref={gutter} aria-hidden>
          {Array.from({ length: lineCount }, (_, i) => (
            <div key={i} className={show && errorLines.has(i + 1) ? 'bad' : undefined} title={errorLines.get(i + 1)?.join('\n')}>
              {i + 1}
            </div>
          ))}
        </div>
        <textarea
          name="context"
          spellCheck={false}
          rows={Math.min(18, Math.max(6, lineCount + 1))}
          value={text}
          onChange={(e) => setText(e.target.value)}
          onScroll={(e) => {
            if (gutter.current) gutter.current.scrollTop = e.currentTarget.scrollTop;
          }}
          aria-invalid={show && !check.ok}
        />
      </div>
      {schemaProblem && <div className="note warn">The browser cannot check this schema ({schemaProblem}); the coordinator will.</div>}
      {show && !check.ok && (
        <ul className="field-errors" data-field-errors>
          {check.syntax && (
            <li>
              <span className="where">line {check.syntax.pos.line}</span> not valid JSON: {check.syntax.message.replace(/^line \d+, column \d+: /, '')}
            </li>
          )}
          {check.errors.map((e) => (
            <li key={e.path + e.message} data-path={e.path}>
              <span className="where">
                {e.pos ? `line ${e.pos.line} · ` : ''}
                <Mono>{fieldLabel(e.path)}</Mono>
              </span>{' '}
              {e.message}
            </li>
          ))}
        </ul>
      )}
      {show && check.ok && <div className="ok-note">meets the context schema</div>}
      <label className="field">
        Idempotency key (optional)
        <input value={key} onChange={(e) => setKey(e.target.value)} placeholder="a repeat with this key returns the same task" name="idempotencyKey" />
      </label>
      {skippable.length > 0 && (
        <fieldset className="field">
          <legend>Bypass skippable steps</legend>
          {skippable.map((s) => (
            <label key={s.name} className="inline">
              <input
                type="checkbox"
                checked={bypass.includes(s.name)}
                onChange={(e) => setBypass(e.target.checked ? [...bypass, s.name] : bypass.filter((b) => b !== s.name))}
              />{' '}
              {s.name}
            </label>
          ))}
        </fieldset>
      )}
      {refusal !== undefined && (
        <div className="note error refusal" role="alert">
          Refused — {errorMessage(refusal)}
        </div>
      )}
      <div className="actions">
        <button className="primary" type="submit" disabled={busy || !!access.refusal} title={access.refusal} data-action="create">
          {busy ? 'Creating…' : `Create task from ${template.name}@${template.version}`}
        </button>
      </div>
    </form>
  );
}
