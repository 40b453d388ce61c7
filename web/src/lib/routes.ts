// The dashboard's pages and their URLs. The Go handler serves index.html
// for any path without a file, so each of these can be opened directly.

export type Route =
  | { page: 'tasks' }
  | { page: 'task'; id: string }
  | { page: 'templates'; namespace?: string; name?: string }
  | { page: 'executors' }
  | { page: 'schedules'; name?: string }
  | { page: 'limits' }
  | { page: 'events' }
  | { page: 'analytics'; namespace?: string; name?: string }
  | { page: 'notfound'; path: string };

/** matchRoute reads a location's path. */
export function matchRoute(path: string): Route {
  const parts = path
    .split('/')
    .filter((p) => p !== '')
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
  const [head, a, b, ...rest] = parts;
  if (rest.length > 0) return { page: 'notfound', path };
  switch (head) {
    case undefined:
      return { page: 'tasks' };
    case 'tasks':
      if (b !== undefined) break;
      return a === undefined ? { page: 'tasks' } : { page: 'task', id: a };
    case 'templates':
      if (a !== undefined && b === undefined) break;
      return { page: 'templates', namespace: a, name: b };
    case 'executors':
      if (a !== undefined) break;
      return { page: 'executors' };
    case 'schedules':
      if (b !== undefined) break;
      return { page: 'schedules', name: a };
    case 'limits':
      if (a !== undefined) break;
      return { page: 'limits' };
    case 'events':
      if (a !== undefined) break;
      return { page: 'events' };
    case 'analytics':
      if (a !== undefined && b === undefined) break;
      return { page: 'analytics', namespace: a, name: b };
  }
  return { page: 'notfound', path };
}

const enc = encodeURIComponent;

/** Paths of the pages, for links. */
export const paths = {
  tasks: (query?: URLSearchParams) => '/tasks' + (query && query.toString() ? `?${query}` : ''),
  task: (id: string, step?: string) => `/tasks/${enc(id)}` + (step ? `?step=${enc(step)}` : ''),
  templates: () => '/templates',
  template: (ns: string, name: string, version?: string) =>
    `/templates/${enc(ns)}/${enc(name)}` + (version ? `?version=${enc(version)}` : ''),
  executors: () => '/executors',
  schedules: () => '/schedules',
  schedule: (name: string) => `/schedules/${enc(name)}`,
  limits: () => '/limits',
  events: () => '/events',
  analytics: (ns?: string, name?: string) => (ns && name ? `/analytics/${enc(ns)}/${enc(name)}` : '/analytics'),
};
