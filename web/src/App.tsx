import { useEffect, useMemo, useState } from 'react';
import { getToken, onUnauthorized, setToken } from './api/client';
import { AccessContext } from './access';
import { matchRoute, paths } from './lib/routes';
import { AnalyticsPage } from './pages/AnalyticsPage';
import { EventsPage } from './pages/EventsPage';
import { ExecutorsPage } from './pages/ExecutorsPage';
import { LimitsPage } from './pages/LimitsPage';
import { SchedulesPage } from './pages/SchedulesPage';
import { TaskPage } from './pages/TaskPage';
import { TasksPage } from './pages/TasksPage';
import { TemplatesPage } from './pages/TemplatesPage';
import { Link, RouterProvider, useRouter } from './router';

function TokenPrompt({ reason, onDone }: { reason: string; onDone: () => void }) {
  const [value, setValue] = useState('');
  return (
    <div className="modal-back">
      <form
        className="modal"
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim() === '') return;
          setToken(value.trim());
          onDone();
        }}
      >
        <h3>This coordinator wants a token</h3>
        <p className="muted">{reason}</p>
        <p>
          Paste a bearer token from its tokens file (or a JWT). It is kept in this browser tab only (sessionStorage) and sent
          as <code>Authorization: Bearer …</code> with every call. A <em>read</em> token shows everything but cannot act.
        </p>
        <label className="field">
          Token
          <input type="password" autoFocus value={value} onChange={(e) => setValue(e.target.value)} name="token" autoComplete="off" />
        </label>
        <div className="modal-actions">
          <button className="primary" type="submit">
            Use token
          </button>
        </div>
      </form>
    </div>
  );
}

function Pages() {
  const { path } = useRouter();
  const route = matchRoute(path);
  switch (route.page) {
    case 'tasks':
      return <TasksPage />;
    case 'task':
      return <TaskPage key={route.id} id={route.id} />;
    case 'templates':
      return <TemplatesPage namespace={route.namespace} name={route.name} />;
    case 'executors':
      return <ExecutorsPage />;
    case 'schedules':
      return <SchedulesPage name={route.name} />;
    case 'limits':
      return <LimitsPage />;
    case 'events':
      return <EventsPage />;
    case 'analytics':
      return <AnalyticsPage namespace={route.namespace} name={route.name} />;
    default:
      return (
        <div className="page">
          <h1>Not found</h1>
          <p>
            Nothing lives at <code>{route.path}</code>. <Link to={paths.tasks()}>Go to the tasks.</Link>
          </p>
        </div>
      );
  }
}

function Shell() {
  const { path } = useRouter();
  const [askToken, setAskToken] = useState<string>();
  const [authGen, setAuthGen] = useState(0);
  const [refusal, setRefusal] = useState<string>();
  const access = useMemo(() => ({ refusal, refuse: (m: string) => setRefusal(m) }), [refusal]);
  useEffect(
    () =>
      onUnauthorized((e) => {
        setAskToken(getToken() ? `The token given was refused: ${e.message}` : 'Calls are refused without a token.');
      }),
    [],
  );
  const section = matchRoute(path).page;
  const tab = (to: string, label: string, active: boolean) => (
    <Link to={to} className={active ? 'active' : undefined}>
      {label}
    </Link>
  );
  return (
    <AccessContext.Provider value={access}>
      <header className="top">
        <Link to={paths.tasks()} className="brand">
          Tasker
        </Link>
        <nav>
          {tab(paths.tasks(), 'Tasks', section === 'tasks' || section === 'task')}
          {tab(paths.templates(), 'Templates', section === 'templates')}
          {tab(paths.executors(), 'Executors', section === 'executors')}
          {tab(paths.schedules(), 'Schedules', section === 'schedules')}
          {tab(paths.limits(), 'Limits', section === 'limits')}
          {tab(paths.events(), 'Events', section === 'events')}
          {tab(paths.analytics(), 'Analytics', section === 'analytics')}
        </nav>
        <div className="spacer" />
        {getToken() && (
          <button
            className="link light"
            onClick={() => {
              setToken(null);
              setRefusal(undefined);
              setAuthGen((g) => g + 1);
            }}
            title="forget the token kept in this tab"
          >
            forget token
          </button>
        )}
      </header>
      <main key={authGen}>
        <Pages />
      </main>
      {askToken !== undefined && (
        <TokenPrompt
          reason={askToken}
          onDone={() => {
            setAskToken(undefined);
            setRefusal(undefined);
            setAuthGen((g) => g + 1);
          }}
        />
      )}
    </AccessContext.Provider>
  );
}

export function App() {
  return (
    <RouterProvider>
      <Shell />
    </RouterProvider>
  );
}
