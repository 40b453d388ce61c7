'use strict';

// Results are never dropped silently. Every StepResult is tracked from the
// moment it exists until some path has delivered it: the Execute stream the
// step came on, the coordinator's unary ReportStepResult, or the next stream
// that opens. The coordinator applies a result only for the step's current
// attempt, so delivering one twice is harmless; losing one would leave the
// step waiting for a timeout.

const { EventEmitter } = require('node:events');
const { Waker, waitFor } = require('./util');
const { unary, definitiveRejection } = require('./rpc');

// How long one ReportStepResult may take, and the retry backoff between
// passes while the coordinator is down: short enough that a recovered
// coordinator gets its results soon, long enough not to hammer a dead one.
const REPORT_TIMEOUT_MS = 5_000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;

/**
 * Deliveries tracks undelivered results and redelivers those whose stream
 * is gone. It emits 'drained' whenever the count of undelivered results
 * drops to zero.
 */
class Deliveries extends EventEmitter {
  #log;
  #clients;
  #newestSession;
  #undelivered = 0;
  /** Results whose stream is gone, oldest first; may hold done entries. */
  #pending = [];
  #waker = new Waker();
  #stopped = true;
  #loopDone = Promise.resolve();
  #call = null;

  /**
   * @param {object} deps
   * @param {object[]} deps.clients coordinator clients; none when the
   *   executor does not register (then only a new stream can carry results)
   * @param {() => (object|null)} deps.newestSession the newest open session
   * @param {object} deps.log logger
   */
  constructor({ clients, newestSession, log }) {
    super();
    this.#clients = clients;
    this.#newestSession = newestSession;
    this.#log = log;
  }

  /** create starts tracking a result; it counts as undelivered until markDelivered. */
  create(result) {
    this.#undelivered++;
    return { result, done: false, unaryRejected: false, uncounted: false };
  }

  /**
   * createResend tracks a result that was written to a stream that then
   * broke, so it probably arrived. Shutdown waits for it only when
   * ReportStepResult can settle it quickly; waiting for a new stream would
   * stall every shutdown that follows a coordinator hanging up.
   */
  createResend(result) {
    if (this.#clients.length > 0) return this.create(result);
    return { result, done: false, unaryRejected: false, uncounted: true };
  }

  /** markDelivered is idempotent: one result may travel two paths at once. */
  markDelivered(d) {
    if (d.done) return;
    d.done = true;
    if (d.uncounted) return;
    this.#undelivered--;
    if (this.#undelivered === 0) this.emit('drained');
  }

  get undelivered() {
    return this.#undelivered;
  }

  /** park queues results whose stream is gone and wakes the redelivery loop. */
  park(...ds) {
    this.#pending.push(...ds);
    this.#waker.wake();
  }

  /**
   * takePending hands every pending result to a stream that just opened:
   * the start of a new stream is one of the two ways a late result reaches
   * the coordinator.
   */
  takePending() {
    const out = this.#pending.filter((d) => !d.done);
    this.#pending = [];
    return out;
  }

  /** stranded lists results not delivered yet, for shutdown logs. */
  stranded() {
    return this.#pending.filter((d) => !d.done);
  }

  /** drained resolves true once nothing is undelivered, or false after ms. */
  drained(ms) {
    return waitFor(() => this.#undelivered === 0, this, 'drained', ms);
  }

  start() {
    this.#stopped = false;
    this.#loopDone = this.#loop();
  }

  /** stop ends the loop, cancelling a report in flight, and waits for it. */
  async stop() {
    this.#stopped = true;
    this.#call?.cancel();
    this.#waker.wake();
    await this.#loopDone;
  }

  async #loop() {
    let delay = RETRY_MIN_MS;
    let retry = false;
    while (!this.#stopped) {
      await this.#waker.wait(retry ? delay : Infinity);
      if (this.#stopped) return;
      retry = await this.#pass();
      delay = retry ? Math.min(delay * 2, RETRY_MAX_MS) : RETRY_MIN_MS;
    }
  }

  /**
   * #pass tries each pending result once: first ReportStepResult, else the
   * newest open stream. It reports whether a later retry of the unary call
   * may deliver what is left.
   */
  async #pass() {
    this.#pending = this.#pending.filter((d) => !d.done);
    const batch = [...this.#pending];
    let unaryUp = this.#clients.length > 0;
    let retry = false;
    for (const d of batch) {
      if (d.done) continue;
      const r = d.result;
      const fields = { task_id: r.task_id, step_id: r.step_id, attempt: r.attempt };
      if (unaryUp && !d.unaryRejected) {
        try {
          await this.#report(d, fields);
          this.markDelivered(d);
          continue;
        } catch (err) {
          if (this.#stopped) return false;
          if (definitiveRejection(err)) {
            d.unaryRejected = true;
            this.#log.error('coordinator rejected reported result; waiting for a stream to carry it', { ...fields, err: err.message });
          } else {
            // Probably down: stop calling it this pass, retry later.
            this.#log.warn('report step result failed, will retry', { ...fields, err: err.message });
            unaryUp = false;
            retry = true;
          }
        }
      } else if (this.#clients.length > 0 && !d.unaryRejected) {
        retry = true;
      }
      this.#handOver(d);
    }
    return retry;
  }

  /**
   * #report sends one result through ReportStepResult. With several
   * coordinators only the task's owner applies it, so each is tried until
   * one does; if every one answers without applying it, the result was
   * stale and counts as delivered. It throws the first error when no
   * coordinator applied it and some could not be reached.
   */
  async #report(d, fields) {
    const errors = [];
    for (const client of this.#clients) {
      try {
        const { call, response } = unary(client, 'ReportStepResult', { result: d.result }, REPORT_TIMEOUT_MS);
        this.#call = call;
        const reply = await response;
        if (reply.applied || this.#clients.length === 1) {
          this.#log.info('step result reported', { ...fields, applied: reply.applied });
          return;
        }
      } catch (err) {
        if (this.#stopped) throw err;
        errors.push(err);
      } finally {
        this.#call = null;
      }
    }
    if (errors.length > 0) throw errors[0];
    this.#log.info('step result reported; no coordinator needed it', fields);
  }

  /** #handOver moves a pending result onto the newest open stream, if any. */
  #handOver(d) {
    if (d.done) return;
    const session = this.#newestSession();
    if (!session) return;
    this.#pending = this.#pending.filter((p) => p !== d);
    session.sendResult(d);
  }
}

module.exports = { Deliveries };
