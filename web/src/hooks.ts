import { useCallback, useEffect, useRef, useState } from 'react';
import { api, ApiError, isAbort } from './api/client';
import type { EventKind, TaskEvent } from './api/types';
import { followEvents, type LiveStatus } from './lib/follow';

export interface Async<T> {
  data?: T;
  error?: unknown;
  loading: boolean;
  /** reload fetches again, keeping the data shown until the answer comes. */
  reload: () => void;
}

/** useAsync runs fn whenever deps change, aborting the call it replaces. */
export function useAsync<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Async<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [gen, setGen] = useState(0);
  useEffect(() => {
    const ac = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    fn(ac.signal).then(
      (data) => setState({ data, loading: false }),
      (error) => {
        if (!isAbort(error)) setState((s) => ({ data: s.data, error, loading: false }));
      },
    );
    return () => ac.abort();
  }, [...deps, gen]);
  const reload = useCallback(() => setGen((g) => g + 1), []);
  return { ...state, reload };
}

/** useNow re-renders every ms milliseconds (while enabled) and returns the time. */
export function useNow(ms: number, enabled = true): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!enabled) return;
    const id = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(id);
  }, [ms, enabled]);
  return enabled ? now : Date.now();
}

/** useInterval calls fn every ms milliseconds while enabled. */
export function useInterval(fn: () => void, ms: number, enabled = true): void {
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => {
    if (!enabled) return;
    const id = setInterval(() => ref.current(), ms);
    return () => clearInterval(id);
  }, [ms, enabled]);
}

/**
 * useThrottled returns a function that calls fn at most once per ms, at
 * the end of the window, so a burst of events causes one reload.
 */
export function useThrottled(fn: () => void, ms: number): () => void {
  const ref = useRef(fn);
  ref.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => () => {
    if (timer.current) clearTimeout(timer.current);
  }, []);
  return useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      ref.current();
    }, ms);
  }, [ms]);
}

export type { LiveStatus };

/**
 * usePageActive is null while the page is hidden (another tab in front, a
 * minimized window), and otherwise a number that changes each time the
 * page comes back from the browser's back-forward cache. Streams are open
 * only while it is not null, and close synchronously on pagehide (see
 * closeOnPageHide): over plain HTTP a browser keeps at most six
 * connections to a host and each open stream holds one, so streams left
 * open by hidden tabs and by pages kept in the back-forward cache starved
 * every other request of the dashboard (in TestDashboard, the fifth page
 * opened in a row hung on its first call).
 */
export function usePageActive(): number | null {
  const [visible, setVisible] = useState(() => document.visibilityState !== 'hidden');
  const [epoch, setEpoch] = useState(0);
  useEffect(() => {
    const onVisibility = () => setVisible(document.visibilityState !== 'hidden');
    const onShow = (e: PageTransitionEvent) => {
      if (e.persisted) setEpoch((n) => n + 1);
      onVisibility();
    };
    document.addEventListener('visibilitychange', onVisibility);
    window.addEventListener('pageshow', onShow);
    return () => {
      document.removeEventListener('visibilitychange', onVisibility);
      window.removeEventListener('pageshow', onShow);
    };
  }, []);
  return visible ? epoch : null;
}

/**
 * closeOnPageHide aborts ac when the page is hidden for good or frozen in
 * the back-forward cache: a React update would come too late, after the
 * freeze. It returns the function that stops listening.
 */
export function closeOnPageHide(ac: AbortController): () => void {
  const hide = () => ac.abort();
  window.addEventListener('pagehide', hide);
  return () => window.removeEventListener('pagehide', hide);
}

/**
 * useEventStream follows the global event stream (SubscribeEvents) with
 * the given filter, calling onEvent for each event. It resumes after a
 * break from the last cursor it got, so nothing is missed, also when the
 * page was hidden meanwhile (the stream is closed then, usePageActive);
 * when the log no longer holds that cursor it goes on from now and calls
 * onGap. While the stream is not available it says "polling" and callers
 * poll instead. The loop itself is followEvents (lib/follow.ts).
 */
export function useEventStream(
  filter: { namespace?: string; name?: string; kinds?: EventKind[] },
  onEvent: (e: TaskEvent) => void,
  onGap?: () => void,
): LiveStatus {
  const kinds = (filter.kinds ?? []).join(',');
  // The status is kept with the subscription it is about, so a page whose
  // filter just changed is not shown live before the new one answers.
  const key = `${filter.namespace ?? ''}|${filter.name ?? ''}|${kinds}`;
  const [state, setState] = useState<{ key: string; status: LiveStatus }>({ key, status: 'connecting' });
  const ref = useRef({ onEvent, onGap });
  ref.current = { onEvent, onGap };
  // The last cursor of this filter outlives a stream closed while the page
  // was hidden.
  const last = useRef<{ key: string; cursor?: string }>({ key });
  const active = usePageActive();
  useEffect(() => {
    if (active === null) return;
    const ac = new AbortController();
    const stopListening = closeOnPageHide(ac);
    if (last.current.key !== key) last.current = { key };
    void followEvents<TaskEvent>(
      (after, onMessage, signal, onOpen) =>
        api.subscribeEvents(
          { namespace: filter.namespace, name: filter.name, kinds: filter.kinds, follow: true, after, fromNow: after === undefined },
          onMessage,
          signal,
          onOpen,
        ),
      last.current,
      ac.signal,
      {
        onEvent: (e) => ref.current.onEvent(e),
        onStatus: (status) => setState({ key, status }),
        onGap: () => ref.current.onGap?.(),
        sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
        isAbort,
      },
    );
    return () => {
      stopListening();
      ac.abort();
    };
  }, [filter.namespace, filter.name, kinds, key, active]);
  return state.key === key ? state.status : 'connecting';
}

/** isForbidden is true for a call refused because the token may not do it. */
export function isForbidden(e: unknown): boolean {
  return e instanceof ApiError && (e.status === 403 || e.code === 7);
}
