import { describe, expect, it } from 'vitest';
import { matchRoute, paths } from './routes';

describe('matchRoute', () => {
  it('knows every page', () => {
    expect(matchRoute('/')).toEqual({ page: 'tasks' });
    expect(matchRoute('/tasks')).toEqual({ page: 'tasks' });
    expect(matchRoute('/tasks/')).toEqual({ page: 'tasks' });
    expect(matchRoute('/tasks/01a2')).toEqual({ page: 'task', id: '01a2' });
    expect(matchRoute('/templates')).toEqual({ page: 'templates', namespace: undefined, name: undefined });
    expect(matchRoute('/templates/demo/order%20x')).toEqual({ page: 'templates', namespace: 'demo', name: 'order x' });
    expect(matchRoute('/executors')).toEqual({ page: 'executors' });
    expect(matchRoute('/schedules')).toEqual({ page: 'schedules', name: undefined });
    expect(matchRoute('/limits')).toEqual({ page: 'limits' });
    expect(matchRoute('/events')).toEqual({ page: 'events' });
    expect(matchRoute('/schedules/nightly%20eu')).toEqual({ page: 'schedules', name: 'nightly eu' });
    expect(matchRoute('/analytics/demo/order')).toEqual({ page: 'analytics', namespace: 'demo', name: 'order' });
  });
  it('says what it does not know', () => {
    for (const p of ['/nope', '/tasks/a/b', '/templates/demo', '/executors/x', '/schedules/a/b', '/limits/x', '/events/x', '/analytics/demo', '/a/b/c/d']) {
      expect(matchRoute(p)).toEqual({ page: 'notfound', path: p });
    }
  });
  it('round-trips the paths it makes', () => {
    expect(matchRoute(paths.task('a/b c'))).toEqual({ page: 'task', id: 'a/b c' });
    expect(matchRoute(paths.template('n s', 'x/y'))).toEqual({ page: 'templates', namespace: 'n s', name: 'x/y' });
    expect(paths.task('t', 'step one')).toBe('/tasks/t?step=step%20one');
    expect(paths.tasks(new URLSearchParams({ state: 'error' }))).toBe('/tasks?state=error');
    expect(paths.tasks(new URLSearchParams())).toBe('/tasks');
    expect(paths.analytics()).toBe('/analytics');
    expect(matchRoute(paths.schedule('a/b c'))).toEqual({ page: 'schedules', name: 'a/b c' });
  });
});
