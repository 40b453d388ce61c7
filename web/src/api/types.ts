// The JSON shapes of the coordinator's REST API: the protojson form of the
// messages in proto/tasker/coordinator/v1/coordinator.proto (lowerCamelCase
// names, enums as their names, int64 as strings, Timestamps as RFC 3339,
// Durations as "1.5s"). Every field is optional because protojson leaves
// out fields at their zero value unless the gateway is told otherwise.

export type State =
  | 'STATE_UNSPECIFIED'
  | 'STATE_PENDING'
  | 'STATE_IN_PROGRESS'
  | 'STATE_COMPLETE'
  | 'STATE_ERROR'
  | 'STATE_CANCELLED'
  | 'STATE_RESOLVED_MANUALLY'
  | 'STATE_SKIPPED';

export type JsonObject = { [key: string]: unknown };

export interface Transition {
  seq?: string;
  taskId?: string;
  stepName?: string;
  fromState?: State;
  toState?: State;
  at?: string;
  reason?: string;
  attempt?: number;
  metadata?: JsonObject | null;
  leaseToken?: string;
}

export interface Waiting {
  reason?: string;
  on?: string[];
  until?: string | null;
  handler?: string;
  /** the signal, concurrency key, rate limit or child template waited on */
  key?: string;
}

export interface StepError {
  message?: string;
  errorClass?: string;
  retryable?: boolean;
}

export interface Step {
  id?: string;
  name: string;
  handler?: string;
  dependsOn?: string[];
  state?: State;
  attempts?: number;
  maxAttempts?: number;
  retryable?: boolean;
  results?: unknown;
  error?: StepError | null;
  nextRetryAt?: string | null;
  transitions?: Transition[];
  skippable?: boolean;
  waiting?: Waiting | null;
  /** the for_each step this step is an instance of, and its place in the list */
  instanceOf?: string;
  index?: number;
  /** the child task a `task:` step created */
  childTaskId?: string;
}

export interface Task {
  id: string;
  namespace?: string;
  name?: string;
  version?: string;
  state?: State;
  context?: JsonObject | null;
  idempotencyKey?: string;
  createdAt?: string;
  updatedAt?: string | null;
  completedAt?: string | null;
  steps?: Step[];
  transitions?: Transition[];
  /** for a child task: the task whose step created it, and that step */
  parentTaskId?: string;
  parentStepId?: string;
  parentStep?: string;
}

export interface Backoff {
  initial?: string;
  multiplier?: number;
  max?: string;
}

export interface StepTemplate {
  name: string;
  handler?: string;
  dependsOn?: string[];
  config?: JsonObject | null;
  retryable?: boolean;
  retryLimit?: number;
  backoff?: Backoff | null;
  timeout?: string | null;
  skippable?: boolean;
  concurrency?: Concurrency[];
  rateLimits?: RateLimitUse[];
  decision?: boolean;
  /** CEL over results and context: the step runs once per item */
  forEach?: string;
  /** CEL giving when the wait ends */
  until?: string;
  waitFor?: { signal?: string; timeout?: string | null } | null;
  sleep?: string | null;
  /** a child task's template: namespace/name[@version] */
  task?: string;
  taskContext?: { [field: string]: string };
}

export interface Concurrency {
  key?: string;
  maxRunning?: number;
  strategy?: string;
}

export interface RateLimitUse {
  name?: string;
  units?: number;
  key?: string;
}

export interface TaskTemplate {
  namespace?: string;
  name?: string;
  version?: string;
  description?: string;
  contextSchema?: JsonObject | null;
  steps?: StepTemplate[];
}

export interface ExecutorInfo {
  id?: string;
  address?: string;
  handlers?: string[];
  capacity?: number;
  inFlight?: number;
  language?: string;
  connected?: boolean;
  connectedAt?: string | null;
  lastHeard?: string | null;
  coordinators?: string[];
}

export interface UnhostedHandler {
  handler?: string;
  templates?: string[];
}

export interface ListTasksResponse {
  tasks?: Task[];
  nextPageToken?: string;
}

export interface StateCount {
  state?: State;
  count?: string;
}

export interface CountTasksResponse {
  counts?: StateCount[];
}

export interface ListTemplatesResponse {
  templates?: TaskTemplate[];
}

export interface CreateTaskRequest {
  namespace: string;
  name: string;
  version?: string;
  context?: JsonObject;
  idempotencyKey?: string;
  bypassSteps?: string[];
}

export interface CreateTaskResponse {
  task?: Task;
  created?: boolean;
  warnings?: string[];
}

export interface ListExecutorsResponse {
  executors?: ExecutorInfo[];
  unhosted?: UnhostedHandler[];
}

export interface WatchTaskResponse {
  transition?: Transition;
  taskState?: State;
}

export type EventKind = 'EVENT_KIND_TASK' | 'EVENT_KIND_STEP';

export interface TaskEvent {
  cursor?: string;
  transition?: Transition;
  namespace?: string;
  name?: string;
}

export interface SubscribeEventsResponse {
  event?: TaskEvent;
}

export interface Percentiles {
  count?: string;
  p50?: string | null;
  p95?: string | null;
  p99?: string | null;
}

export interface StepAnalytics {
  name?: string;
  running?: Percentiles | null;
  queueWait?: Percentiles | null;
  attempts?: string;
  retries?: string;
  failures?: string;
  criticalPathShare?: number;
}

export interface ErrorCount {
  stepName?: string;
  errorClass?: string;
  message?: string;
  count?: string;
}

export interface TemplateAnalytics {
  namespace?: string;
  name?: string;
  version?: string;
  since?: string;
  until?: string;
  tasksFinished?: string;
  completed?: string;
  errored?: string;
  cancelled?: string;
  resolved?: string;
  throughputPerMinute?: number;
  successRate?: number;
  errorRate?: number;
  cancelRate?: number;
  duration?: Percentiles | null;
  retryRate?: number;
  steps?: StepAnalytics[];
  topErrors?: ErrorCount[];
  bottleneckStep?: string;
  bottleneckShare?: number;
}

export interface GetAnalyticsResponse {
  analytics?: TemplateAnalytics;
}

export interface Schedule {
  id?: string;
  name: string;
  namespace?: string;
  template?: string;
  /** empty: the highest version at each firing */
  version?: string;
  cron?: string;
  /** IANA name; empty is UTC */
  timezone?: string;
  context?: JsonObject | null;
  /** skip (the default), allow, cancel_previous or buffer_one */
  overlap?: string;
  catchupWindow?: string | null;
  paused?: boolean;
  nextFireTime?: string | null;
  bufferedFireTime?: string | null;
  createTime?: string | null;
  updateTime?: string | null;
}

/** ScheduleRun is what one firing did (a task), or a range of skipped ones. */
export interface ScheduleRun {
  fireTime?: string | null;
  taskId?: string;
  skipped?: string;
  /** int64, as a string */
  count?: string;
  lastFireTime?: string | null;
  /** taskState is the created task's state now; unset when skipped or pruned. */
  taskState?: State;
  /** taskPruned: the created task is no longer stored (retention). */
  taskPruned?: boolean;
}

export interface ListSchedulesResponse {
  schedules?: Schedule[];
}

export interface GetScheduleResponse {
  schedule?: Schedule;
  nextFireTimes?: string[];
  runs?: ScheduleRun[];
}

/** RateLimit is a token bucket: units added per period, at most burst held. */
export interface RateLimit {
  name: string;
  /** int64, as a string */
  units?: string;
  period?: string | null;
  /** int64, as a string */
  burst?: string;
  createdAt?: string | null;
  updatedAt?: string | null;
}

export interface ListRateLimitsResponse {
  rateLimits?: RateLimit[];
}
