// The dashboard's only way to the coordinator: the REST/JSON API under
// /api/v1/ on the same origin. With tokens on, every call carries the
// token kept in this tab's sessionStorage.

import { readNdjson, StreamError } from '../lib/ndjson';
import type {
  CountTasksResponse,
  CreateTaskRequest,
  CreateTaskResponse,
  EventKind,
  GetAnalyticsResponse,
  GetScheduleResponse,
  JsonObject,
  ListExecutorsResponse,
  ListRateLimitsResponse,
  ListSchedulesResponse,
  ListTasksResponse,
  ListTemplatesResponse,
  State,
  SubscribeEventsResponse,
  Task,
  Schedule,
  TaskTemplate,
  WatchTaskResponse,
} from './types';

const TOKEN_KEY = 'tasker.token';

/** gRPC status names by code, for messages. */
const CODES = [
  'OK', 'Cancelled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists',
  'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented',
  'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
];

/** ApiError is a refused or failed call: the HTTP status and the coordinator's message. */
export class ApiError extends Error {
  readonly status: number;
  /** code is the gRPC status code when the API gave one. */
  readonly code?: number;
  constructor(status: number, message: string, code?: number) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
  /** codeName is the gRPC status name ("FailedPrecondition"), or the HTTP status. */
  get codeName(): string {
    if (this.code !== undefined && CODES[this.code]) return CODES[this.code];
    return `HTTP ${this.status}`;
  }
}

/** errorMessage is what to show people for any error. */
export function errorMessage(e: unknown): string {
  if (e instanceof ApiError) return `${e.codeName}: ${e.message}`;
  if (e instanceof StreamError) return e.code ? `${CODES[e.code] ?? e.code}: ${e.message}` : e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === 'AbortError';
}

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

type Listener = (e: ApiError) => void;
const unauthorizedListeners = new Set<Listener>();

/** onUnauthorized calls l whenever a call is refused for want of a (valid) token. */
export function onUnauthorized(l: Listener): () => void {
  unauthorizedListeners.add(l);
  return () => unauthorizedListeners.delete(l);
}

function headers(json: boolean): HeadersInit {
  const h: Record<string, string> = { Accept: 'application/json' };
  if (json) h['Content-Type'] = 'application/json';
  const t = getToken();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** toQuery drops unset values; arrays repeat the key, as the gateway reads them. */
export function toQuery(params: Record<string, string | number | boolean | string[] | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '' || v === false) continue;
    if (Array.isArray(v)) for (const x of v) q.append(k, x);
    else q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function failure(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  let err: ApiError;
  try {
    const body = JSON.parse(text) as { code?: number; message?: string };
    err = new ApiError(res.status, body.message || res.statusText, body.code);
  } catch {
    err = new ApiError(res.status, text.trim() || res.statusText);
  }
  if (res.status === 401) for (const l of unauthorizedListeners) l(err);
  return err;
}

async function call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

/**
 * stream calls a server-streaming method and hands each message to
 * onResult until the server ends the stream; it rejects with the server's
 * error, or an AbortError when signal is aborted.
 */
async function stream<T>(
  path: string,
  onResult: (r: T) => void,
  signal?: AbortSignal,
  onOpen?: () => void,
): Promise<void> {
  const res = await fetch(path, { headers: headers(false), signal });
  if (!res.ok) throw await failure(res);
  onOpen?.();
  if (!res.body) throw new ApiError(res.status, 'the response has no body to stream');
  await readNdjson<T>(res.body, onResult, signal);
}

const enc = encodeURIComponent;

export interface ListTasksParams {
  namespace?: string;
  name?: string;
  state?: State;
  createdAfter?: string;
  createdBefore?: string;
  search?: string;
  /** contextEquals: PATH=VALUE matches, all of which a task's context holds. */
  contextEquals?: string[];
  pageSize?: number;
  pageToken?: string;
}

/** CountTasksParams are ListTasksParams' filters but the state (counts are per state). */
export type CountTasksParams = Omit<ListTasksParams, 'state' | 'pageSize' | 'pageToken'>;

export const api = {
  listTasks(p: ListTasksParams, signal?: AbortSignal) {
    return call<ListTasksResponse>('GET', `/api/v1/tasks${toQuery({ ...p })}`, undefined, signal);
  },
  async getTask(id: string, signal?: AbortSignal): Promise<Task> {
    const r = await call<{ task?: Task }>('GET', `/api/v1/tasks/${enc(id)}`, undefined, signal);
    if (!r.task) throw new ApiError(200, `task ${id}: the response has no task`);
    return r.task;
  },
  /** countTasks counts by state the tasks listTasks would list with the same filters. */
  countTasks(p: CountTasksParams, signal?: AbortSignal) {
    return call<CountTasksResponse>('GET', `/api/v1/task-counts${toQuery({ ...p })}`, undefined, signal);
  },
  listTemplates(namespace?: string, signal?: AbortSignal) {
    return call<ListTemplatesResponse>('GET', `/api/v1/templates${toQuery({ namespace })}`, undefined, signal);
  },
  async getTemplate(namespace: string, name: string, version?: string, signal?: AbortSignal): Promise<TaskTemplate> {
    const r = await call<{ template?: TaskTemplate }>(
      'GET', `/api/v1/templates/${enc(namespace)}/${enc(name)}${toQuery({ version })}`, undefined, signal,
    );
    return r.template ?? {};
  },
  createTask(req: CreateTaskRequest) {
    return call<CreateTaskResponse>('POST', '/api/v1/tasks', req);
  },
  cancelTask(id: string, reason?: string) {
    return call<{ task?: Task }>('POST', `/api/v1/tasks/${enc(id)}:cancel`, { reason: reason ?? '' });
  },
  retryTask(id: string, reason?: string) {
    return call<{ task?: Task }>('POST', `/api/v1/tasks/${enc(id)}:retry`, { reason: reason ?? '' });
  },
  resolveStep(taskId: string, step: string, reason?: string, results?: unknown) {
    const body: JsonObject = { reason: reason ?? '' };
    if (results !== undefined) body.results = results;
    return call<{ task?: Task }>('POST', `/api/v1/tasks/${enc(taskId)}/steps/${enc(step)}:resolve`, body);
  },
  rerunStep(taskId: string, step: string, reason?: string) {
    return call<{ task?: Task }>('POST', `/api/v1/tasks/${enc(taskId)}/steps/${enc(step)}:rerun`, { reason: reason ?? '' });
  },
  /**
   * signalTask sends the task a signal; payload is JSON text (empty for
   * null) and becomes the result of the step that consumes it.
   */
  signalTask(taskId: string, name: string, payload: string) {
    return call<{ task?: Task; consumedBy?: string }>('POST', `/api/v1/tasks/${enc(taskId)}/signals/${enc(name)}`, { payload });
  },
  listExecutors(signal?: AbortSignal) {
    return call<ListExecutorsResponse>('GET', '/api/v1/executors', undefined, signal);
  },
  listRateLimits(signal?: AbortSignal) {
    return call<ListRateLimitsResponse>('GET', '/api/v1/rate-limits', undefined, signal);
  },
  listSchedules(signal?: AbortSignal) {
    return call<ListSchedulesResponse>('GET', '/api/v1/schedules', undefined, signal);
  },
  /** getSchedule returns the schedule with its next fire times and latest runs. */
  getSchedule(name: string, p: { next?: number; runs?: number }, signal?: AbortSignal) {
    return call<GetScheduleResponse>('GET', `/api/v1/schedules/${enc(name)}${toQuery(p)}`, undefined, signal);
  },
  pauseSchedule(name: string) {
    return call<{ schedule?: Schedule }>('POST', `/api/v1/schedules/${enc(name)}:pause`, {});
  },
  resumeSchedule(name: string) {
    return call<{ schedule?: Schedule }>('POST', `/api/v1/schedules/${enc(name)}:resume`, {});
  },
  getAnalytics(ns: string, name: string, p: { since?: string; until?: string; version?: string }, signal?: AbortSignal) {
    return call<GetAnalyticsResponse>('GET', `/api/v1/analytics/${enc(ns)}/${enc(name)}${toQuery(p)}`, undefined, signal);
  },
  watchTask(id: string, afterSeq: number, onMsg: (m: WatchTaskResponse) => void, signal?: AbortSignal, onOpen?: () => void) {
    const q = toQuery({ afterSeq: afterSeq || undefined });
    return stream<WatchTaskResponse>(`/api/v1/tasks/${enc(id)}:watch${q}`, onMsg, signal, onOpen);
  },
  subscribeEvents(
    p: { namespace?: string; name?: string; kinds?: EventKind[]; after?: string; fromNow?: boolean; follow?: boolean },
    onMsg: (m: SubscribeEventsResponse) => void,
    signal?: AbortSignal,
    onOpen?: () => void,
  ) {
    return stream<SubscribeEventsResponse>(`/api/v1/events${toQuery({ ...p })}`, onMsg, signal, onOpen);
  },
};
