import { useCallback, useEffect, useRef, useState } from 'react';
import { api, ApiError, isAbort } from './api/client';
import type { EventKind, TaskEvent } from './api/types';

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

/** LiveStatus says whether live updates arrive: "live" on the event stream, "polling" without it. */
export type LiveStatus = 'connecting' | 'live' | 'polling';

/**
 * useEventStream follows the global event stream (SubscribeEvents) with
 * the given filter, calling onEvent for each event. It resumes after a
 * break from the last cursor it got, so nothing is missed; while the
 * stream is not available it says "polling" and callers poll instead.
 */
export function useEventStream(
  filter: { namespace?: string; name?: string; kinds?: EventKind[] },
  onEvent: (e: TaskEvent) => void,
): LiveStatus {
  const kinds = (filter.kinds ?? []).join(',');
  // The status is kept with the subscription it is about, so a page whose
  // filter just changed is not shown live before the new one answers.
  const key = `${filter.namespace ?? ''}|${filter.name ?? ''}|${kinds}`;
  const [state, setState] = useState<{ key: string; status: LiveStatus }>({ key, status: 'connecting' });
  const ref = useRef(onEvent);
  ref.current = onEvent;
  useEffect(() => {
    const ac = new AbortController();
    let cursor: string | undefined;
    let failures = 0;
    const setStatus = (status: LiveStatus) => setState({ key, status });
    (async () => {
      while (!ac.signal.aborted) {
        try {
          await api.subscribeEvents(
            {
              namespace: filter.namespace, name: filter.name, kinds: filter.kinds, follow: true,
              after: cursor, fromNow: cursor === undefined,
            },
            (m) => {
              if (m.event?.cursor) cursor = m.event.cursor;
              failures = 0;
              if (m.event) ref.current(m.event);
            },
            ac.signal,
            () => setStatus('live'),
          );
        } catch (e) {
          if (ac.signal.aborted || isAbort(e)) return;
          failures++;
          setStatus('polling');
        }
        if (ac.signal.aborted) return;
        // A stream the coordinator cannot serve (not implemented, refused)
        // is asked for again rarely; a broken one soon.
        const wait = failures === 0 ? 200 : Math.min(30_000, 1000 * 2 ** Math.min(failures, 5));
        await new Promise((r) => setTimeout(r, wait));
      }
    })();
    return () => ac.abort();
  }, [filter.namespace, filter.name, kinds]);
  return state.key === key ? state.status : 'connecting';
}

/** isForbidden is true for a call refused because the token may not do it. */
export function isForbidden(e: unknown): boolean {
  return e instanceof ApiError && (e.status === 403 || e.code === 7);
}
