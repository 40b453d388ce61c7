'use strict';

// The executor: a gRPC server implementing tasker.executor.v1 that hosts
// step handlers, registers with a coordinator and answers every ExecuteStep
// with exactly one StepResult. It mirrors the Go SDK (executor/ in this
// repository) so both behave the same towards the coordinator; see
// docs/executor-protocol.md for the contract.

/** The largest ExecuteRequest this executor accepts, in bytes. */
const MAX_RECEIVE_BYTES = 64 << 20;
const { EventEmitter } = require('node:events');
const { randomUUID } = require('node:crypto');
const grpc = require('@grpc/grpc-js');

const { loadProtos } = require('./proto');
const { createLogger } = require('./log');
const { Deliveries } = require('./delivery');
const { Registrar } = require('./registrar');
const { Session } = require('./session');
const { setLongTimeout, waitFor } = require('./util');
const { newStepContext, encodeResults, timestampToMs } = require('./wire');
const { ErrorClass, StepAbortedError, failureOf, messageOf } = require('./errors');

/** SDK_VERSION is reported by Describe so operators can tell builds apart. */
const SDK_VERSION = '0.1.0';
/** PROTOCOL_VERSION is the version of tasker.executor.v1 spoken here. */
const PROTOCOL_VERSION = 1;
/** CAPABILITIES are the optional protocol features this executor supports. */
const CAPABILITIES = Object.freeze(['cancel', 'heartbeat', 'progress', 'report']);

/** Defaults, the same as the Go SDK's. */
const DEFAULTS = Object.freeze({
  capacity: 16,
  language: 'node',
  registerIntervalMs: 1_000,
  heartbeatIntervalMs: 5_000,
  shutdownTimeoutMs: 30_000,
  deliveryTimeoutMs: 10_000,
  maxResultBytes: 16 << 20,
});

// Bounds on shutdown beyond the configurable ones; they only matter when
// something misbehaves (a handler ignoring its signal, a client never
// hanging up), so they are generous but finite.
const CANCEL_GRACE_MS = 5_000;
const STOP_GRACE_MS = 5_000;

class Executor {
  #cfg;
  #log;
  #protos;
  /** @type {Map<string, Function>} fixed once listen() was called */
  #handlers = new Map();
  #started = false;
  /** shuttingDown refuses new steps; closed refuses new streams. */
  #shuttingDown = false;
  #closed = false;
  /** Running attempts by runKey; 'idle' is emitted when it empties. */
  #running = new Map();
  #events = new EventEmitter();
  /** @type {Set<Session>} */
  #sessions = new Set();
  #nextSession = 0;
  #server = null;
  #clients = [];
  #deliveries = null;
  #registrars = [];
  #shutdownPromise = null;

  /**
   * @param {object} [config]
   * @param {string} [config.id] stable for the process; default a random UUID
   * @param {number} [config.capacity] most steps run at once (default 16)
   * @param {string} [config.coordinator] host:port to register with; empty
   *   means don't register (the coordinator must dial us by itself)
   * @param {string[]} [config.coordinators] further coordinators sharing one
   *   database; each gets its own stream and a share of the capacity
   * @param {string} [config.advertise] host:port the coordinator should dial
   *   (default: the bound listen address)
   * @param {object} [config.logger] from createLogger (default: info to stderr)
   * @param {string} [config.protoDir] where tasker/executor/v1/*.proto live
   * @param {number} [config.registerIntervalMs] re-registration period while no stream is open
   * @param {number} [config.heartbeatIntervalMs] heartbeat period after the first one
   * @param {number} [config.shutdownTimeoutMs] wait for running handlers before aborting them
   * @param {number} [config.deliveryTimeoutMs] wait at shutdown for undelivered results
   * @param {number} [config.maxResultBytes] larger results fail as ResultTooLarge
   */
  constructor(config = {}) {
    const cfg = { ...DEFAULTS, id: randomUUID(), coordinator: '', coordinators: [], advertise: '', ...stripUndefined(config) };
    cfg.targets = [...new Set([cfg.coordinator, ...cfg.coordinators].filter(Boolean))];
    if (!Number.isInteger(cfg.capacity) || cfg.capacity < 1 || cfg.capacity > 2 ** 31 - 1) {
      throw new RangeError(`capacity must be an integer from 1 to 2147483647, got ${cfg.capacity}`);
    }
    for (const k of ['registerIntervalMs', 'heartbeatIntervalMs', 'shutdownTimeoutMs', 'deliveryTimeoutMs', 'maxResultBytes']) {
      if (!(Number.isFinite(cfg[k]) && cfg[k] > 0)) throw new RangeError(`${k} must be a positive number, got ${cfg[k]}`);
    }
    if (typeof cfg.id !== 'string' || cfg.id === '') throw new TypeError('id must be a non-empty string');
    this.#cfg = Object.freeze(cfg);
    this.#log = (cfg.logger ?? createLogger()).with({ executor_id: cfg.id });
    this.#protos = loadProtos(cfg.protoDir);
  }

  /** id is the executor id reported to coordinators and in every result. */
  get id() {
    return this.#cfg.id;
  }

  /**
   * handle registers fn under name. fn receives a step context (taskId,
   * stepId, stepName, attempt, config, context, parents, signal, ...) and
   * returns (or resolves to) the step's results. Handlers must be added
   * before listen(), since Describe tells the coordinator the set once.
   */
  handle(name, fn) {
    if (typeof name !== 'string' || name === '') throw new TypeError('handler name must be a non-empty string');
    if (typeof fn !== 'function') throw new TypeError(`handler ${JSON.stringify(name)} must be a function`);
    if (this.#started) throw new Error(`handle ${JSON.stringify(name)}: executor already started`);
    if (this.#handlers.has(name)) throw new Error(`handle ${JSON.stringify(name)}: handler already registered`);
    this.#handlers.set(name, fn);
    return this;
  }

  /** handlerNames lists the hosted handlers, sorted. */
  handlerNames() {
    return [...this.#handlers.keys()].sort();
  }

  /**
   * listen serves on address (host:port; port 0 picks a free one), starts
   * registering when a coordinator is configured, and resolves to the bound
   * address. It may be called once.
   */
  async listen(address) {
    if (this.#started) throw new Error('listen: executor already started');
    this.#started = true;
    this.#clients = this.#cfg.targets.map((t) => new this.#protos.CoordinatorClient(t, grpc.credentials.createInsecure()));
    this.#deliveries = new Deliveries({ clients: this.#clients, newestSession: () => this.#newestSession(), log: this.#log });
    // Declared in Describe (max_receive_bytes), so the coordinator never
    // sends a step larger than this stream accepts.
    this.#server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_RECEIVE_BYTES });
    this.#server.addService(this.#protos.executorService, {
      Describe: (call, callback) => callback(null, this.#describe(call)),
      Execute: (call) => this.#serveSession(call),
    });
    const port = await new Promise((resolve, reject) => {
      this.#server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    const bound = `${hostOf(address)}:${port}`;
    const advertise = this.#cfg.advertise || bound;
    this.#deliveries.start();
    this.#registrars = this.#clients.map((client, i) => new Registrar({
      client, target: this.#cfg.targets[i], address: advertise, intervalMs: this.#cfg.registerIntervalMs,
      hasSession: (coordinatorId) => this.#hasSessionFrom(coordinatorId), log: this.#log,
    }));
    for (const r of this.#registrars) r.start();
    this.#log.info('executor serving', {
      address: bound, advertise, coordinators: this.#cfg.targets.join(','), handlers: this.handlerNames().join(','), capacity: this.#cfg.capacity,
    });
    return bound;
  }

  /**
   * shutdown stops gracefully: it stops registering, refuses new steps,
   * waits up to shutdownTimeoutMs for running handlers (then aborts them),
   * delivers their results and stops the server. Calling it again returns
   * the same promise.
   */
  shutdown() {
    this.#shutdownPromise ??= this.#shutdown();
    return this.#shutdownPromise;
  }

  async #shutdown() {
    if (!this.#started) return;
    this.#log.info('executor shutting down');
    await Promise.all(this.#registrars.map((r) => r.stop()));
    await this.#drainRuns();
    await this.#awaitDelivery();
    await this.#deliveries.stop();
    this.#closed = true;
    for (const s of [...this.#sessions]) s.end();
    await this.#stopServer();
    for (const c of this.#clients) c.close();
    this.#log.info('executor stopped');
  }

  async #drainRuns() {
    this.#shuttingDown = true;
    const idle = () => this.#running.size === 0;
    if (!idle()) this.#log.info('waiting for running handlers', { running: this.#running.size, timeout_ms: this.#cfg.shutdownTimeoutMs });
    if (await waitFor(idle, this.#events, 'idle', this.#cfg.shutdownTimeoutMs)) return;
    for (const run of this.#running.values()) {
      run.log.warn('cancelling handler at shutdown', { timeout_ms: this.#cfg.shutdownTimeoutMs });
      run.controller.abort(new StepAbortedError('shutdown', 'cancelled: executor shutting down'));
    }
    if (await waitFor(idle, this.#events, 'idle', CANCEL_GRACE_MS)) return;
    for (const run of this.#running.values()) {
      run.log.error('abandoning handler that ignored its abort signal; its result is lost');
    }
  }

  async #awaitDelivery() {
    if (await this.#deliveries.drained(this.#cfg.deliveryTimeoutMs)) return;
    for (const d of this.#deliveries.stranded()) {
      const r = d.result;
      const fields = { task_id: r.task_id, step_id: r.step_id, attempt: r.attempt };
      if (d.uncounted) this.#log.warn('result sent on a stream that then broke may not have arrived', fields);
      else this.#log.error('result not delivered before shutdown', fields);
    }
  }

  async #stopServer() {
    const graceful = new Promise((resolve) => this.#server.tryShutdown(() => resolve(true)));
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(false), STOP_GRACE_MS);
    });
    const ok = await Promise.race([graceful, timeout]);
    clearTimeout(timer);
    if (!ok) {
      this.#log.warn('graceful stop timed out, forcing', { timeout_ms: STOP_GRACE_MS });
      this.#server.forceShutdown();
    }
  }

  #describe(call) {
    this.#log.debug('describe', { coordinator_id: call.request.coordinator_id, peer: call.getPeer() });
    return {
      executor_id: this.#cfg.id,
      handlers: this.handlerNames(),
      capacity: this.#cfg.capacity,
      language: this.#cfg.language,
      sdk_version: SDK_VERSION,
      protocol_version: PROTOCOL_VERSION,
      capabilities: [...CAPABILITIES],
      coordinators: [...this.#cfg.targets],
      max_receive_bytes: String(MAX_RECEIVE_BYTES),
    };
  }

  /**
   * #serveSession takes one Execute stream. Pending results go first (a new
   * stream is one of the ways a late result reaches the coordinator), then
   * the first heartbeat at once rather than one interval later: a restarted
   * coordinator relies on it to learn which attempts still run here before
   * it gives up on them.
   */
  #serveSession(call) {
    if (this.#closed) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'executor is shutting down' });
      return;
    }
    const id = ++this.#nextSession;
    const s = new Session({
      id, call, deliveries: this.#deliveries, log: this.#log,
      onClosed: (closed) => {
        this.#sessions.delete(closed);
        for (const r of this.#registrars) r.wake();
      },
    });
    this.#sessions.add(s);
    s.log.info('execute stream opened');
    // The other coordinators' shares shrink now: tell them at once.
    for (const o of this.#sessions) if (o !== s) o.sendHeartbeat(this.#heartbeat());
    for (const d of this.#deliveries.takePending()) s.sendResult(d);
    s.sendHeartbeat(this.#heartbeat());
    s.startHeartbeats(this.#cfg.heartbeatIntervalMs, () => this.#heartbeat());

    call.on('data', (req) => {
      switch (req.kind) {
        case 'execute_step':
          this.#startStep(s, req.execute_step);
          break;
        case 'cancel_step':
          this.#cancelStep(req.cancel_step);
          break;
        default:
          s.log.warn('ignoring unknown execute request', { kind: req.kind ?? 'none' });
      }
    });
    // The coordinator sends no more steps but still wants the results of
    // those it sent: end the stream once they are out.
    call.on('end', () => {
      s.halfClosed = true;
      if (s.inflight === 0) s.end();
    });
  }

  /**
   * #hasSessionFrom reports whether the coordinator named coordinatorId has
   * a stream open here. A stream whose coordinator did not name itself
   * counts for it when there is only one coordinator, so an older
   * coordinator is not re-registered every interval.
   */
  #hasSessionFrom(coordinatorId) {
    for (const s of this.#sessions) {
      if (s.coordinatorId === coordinatorId) return true;
      if (s.coordinatorId === '' && this.#cfg.targets.length === 1) return true;
    }
    return false;
  }

  #newestSession() {
    let newest = null;
    for (const s of this.#sessions) if (!newest || s.id > newest.id) newest = s;
    return newest;
  }

  /**
   * #heartbeat lists every attempt running here, whichever stream sent it,
   * so a reconnected or restarted coordinator learns which of its attempts
   * are alive and where. Sorted so consecutive heartbeats compare easily;
   * running_step_ids names steps, so it has one entry per step. capacity is
   * each connected coordinator's share: the capacity split evenly between
   * them (at least 1 each), so together they never send more than runs here.
   */
  #heartbeat() {
    const running = [...this.#running.values()]
      .map((r) => ({ task_id: r.step.task_id, step_id: r.step.step_id, attempt: r.step.attempt }))
      .sort((a, b) => cmp(a.task_id, b.task_id) || cmp(a.step_id, b.step_id) || a.attempt - b.attempt);
    const ids = [...new Set(running.map((r) => r.step_id))].sort(cmp);
    const coordinators = new Set([...this.#sessions].map((s) => s.coordinatorId)).size;
    const capacity = Math.max(1, Math.floor(this.#cfg.capacity / Math.max(coordinators, 1)));
    return { heartbeat: { running_step_ids: ids, running, capacity } };
  }

  /** #startStep admits one ExecuteStep, or answers it at once with a failure when it cannot run here. */
  #startStep(session, step) {
    const key = runKey(step.step_id, step.attempt);
    const log = this.#log.with({
      task_id: step.task_id, step_id: step.step_id, attempt: step.attempt, step_name: step.step_name, handler: step.handler,
    });
    if (this.#running.has(key)) {
      // The running attempt will answer; a second result could only confuse the coordinator.
      log.warn('ignoring duplicate ExecuteStep for a running attempt');
      return;
    }
    const handler = this.#handlers.get(step.handler);
    const deadlineMs = timestampToMs(step.deadline);
    let refusal = null;
    if (this.#shuttingDown) {
      refusal = { message: 'executor is shutting down', error_class: ErrorClass.SHUTTING_DOWN, permanent: false };
    } else if (!handler) {
      refusal = {
        message: `unknown handler ${JSON.stringify(step.handler)}: executor ${this.#cfg.id} hosts ${this.handlerNames().join(', ')}`,
        error_class: ErrorClass.UNKNOWN_HANDLER, permanent: true,
      };
    } else if (this.#running.size >= this.#cfg.capacity) {
      refusal = {
        message: `executor ${this.#cfg.id} is at capacity (${this.#cfg.capacity} steps running)`,
        error_class: ErrorClass.OVER_CAPACITY, permanent: false,
      };
    } else if (deadlineMs !== null && deadlineMs <= Date.now()) {
      refusal = {
        message: `deadline ${new Date(deadlineMs).toISOString()} passed before the step started`,
        error_class: ErrorClass.DEADLINE_EXCEEDED, permanent: false,
      };
    }
    const controller = new AbortController();
    let ctx;
    if (!refusal) {
      try {
        ctx = newStepContext(step, {
          signal: controller.signal,
          progress: (percent, message) => this.#progress(session, step, percent, message),
        });
      } catch (err) {
        refusal = failureOf(err);
      }
    }
    if (refusal) {
      log.warn('refusing step', { error_class: refusal.error_class, err: refusal.message });
      this.#deliver(session, this.#deliveries.create(this.#result(step, { failure: refusal })), false);
      return;
    }

    const run = { key, step, session, controller, log, stopDeadline: () => {} };
    if (deadlineMs !== null) {
      run.stopDeadline = setLongTimeout(() => {
        controller.abort(new StepAbortedError('deadline', `deadline ${new Date(deadlineMs).toISOString()} exceeded`));
      }, deadlineMs - Date.now());
    }
    this.#running.set(key, run);
    session.inflight++;
    log.debug('step started');
    // #execute catches what handlers throw; anything reaching here is a bug
    // in this file, worth a loud log rather than an unhandled rejection.
    this.#execute(run, handler, ctx).catch((err) => log.error('executor bug while finishing a step', { err: err?.stack ?? String(err) }));
  }

  /** #cancelStep aborts a running attempt; its handler's result is still sent. */
  #cancelStep(c) {
    const run = this.#running.get(runKey(c.step_id, c.attempt));
    if (!run) {
      this.#log.debug('cancel for a step not running here', { task_id: c.task_id, step_id: c.step_id, attempt: c.attempt, reason: c.reason });
      return;
    }
    run.log.info('cancelling step', { reason: c.reason });
    const message = c.reason ? `cancelled by coordinator: ${c.reason}` : 'cancelled by coordinator';
    run.controller.abort(new StepAbortedError('cancel', message));
  }

  /**
   * #execute runs the handler and hands its result over. The slot is freed
   * before the result goes out, so a coordinator that dispatches the next
   * step as soon as it reads this result never finds the executor full.
   */
  async #execute(run, handler, ctx) {
    const started = performance.now();
    let value;
    let error;
    let failed = false;
    try {
      // Called from a promise job so that a handler throwing synchronously
      // is caught like a rejection and never runs inside the stream's data
      // callback.
      value = await Promise.resolve().then(() => handler(ctx));
    } catch (err) {
      error = err;
      failed = true;
    }
    const result = this.#resultOf(run, failed, value, error);
    run.stopDeadline();
    this.#running.delete(run.key);
    if (this.#running.size === 0) this.#events.emit('idle');

    const took_ms = Math.round(performance.now() - started);
    if (result.failure) {
      const f = result.failure;
      run.log.warn('step failed', { took_ms, error_class: f.error_class, permanent: f.permanent, err: f.message });
    } else {
      run.log.info('step succeeded', { took_ms });
    }
    this.#deliver(run.session, this.#deliveries.create(result), true);
  }

  /** #resultOf turns what the handler returned or threw into the wire result. */
  #resultOf(run, failed, value, error) {
    if (!failed) {
      try {
        const bytes = encodeResults(value);
        if (bytes.length > this.#cfg.maxResultBytes) {
          const e = new Error(`results are ${bytes.length} bytes, over the executor's limit of ${this.#cfg.maxResultBytes} (maxResultBytes)`);
          Object.assign(e, { permanent: true, errorClass: ErrorClass.RESULT_TOO_LARGE });
          throw e;
        }
        return this.#result(run.step, { success: { results: bytes } });
      } catch (err) {
        error = err;
      }
    }
    const reason = run.controller.signal.aborted ? run.controller.signal.reason : null;
    if (reason instanceof StepAbortedError) {
      if (reason.kind === 'deadline') return this.#result(run.step, { failure: failureOf(error, ErrorClass.DEADLINE_EXCEEDED) });
      // Whatever the handler made of it, the attempt was abandoned on
      // purpose: retryable, so a shutdown hands the step to another
      // executor, while a coordinator cancel settles the step anyway.
      const message = error === reason ? reason.message : `${reason.message} (handler threw: ${messageOf(error)})`;
      return this.#result(run.step, { failure: { message, error_class: ErrorClass.CANCELLED, permanent: false } });
    }
    return this.#result(run.step, { failure: failureOf(error) });
  }

  #result(step, outcome) {
    return { task_id: step.task_id, step_id: step.step_id, attempt: step.attempt, executor_id: this.#cfg.id, ...outcome };
  }

  /**
   * #deliver sends d on the stream the step came from, or parks it for
   * redelivery when that stream is gone. fromRun says d ends a step that
   * was admitted on session.
   */
  #deliver(session, d, fromRun) {
    if (fromRun) session.inflight--;
    if (session.closed) {
      this.#log.info('step result waits for redelivery', { task_id: d.result.task_id, step_id: d.result.step_id, attempt: d.result.attempt });
    }
    session.sendResult(d);
    if (session.halfClosed && session.inflight === 0) session.end();
  }

  #progress(session, step, percent, message) {
    const p = Number.isFinite(percent) ? Math.min(100, Math.max(0, percent)) : 0;
    session.sendProgress({ task_id: step.task_id, step_id: step.step_id, attempt: step.attempt, message: String(message ?? ''), percent: p });
  }
}

function runKey(stepId, attempt) {
  return `${stepId}\u0000${attempt}`;
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** hostOf returns the host part of host:port, keeping IPv6 brackets. */
function hostOf(address) {
  const i = address.lastIndexOf(':');
  return i < 0 ? address : address.slice(0, i);
}

function stripUndefined(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

module.exports = { Executor, SDK_VERSION, PROTOCOL_VERSION, CAPABILITIES, DEFAULTS };
