'use strict';

// Registration: the coordinator dials executors, not the other way round,
// so an executor tells it where to dial (RegisterExecutor) whenever no
// Execute stream is open: at start, every interval while it has none, and
// at once when a stream closes. That is how a restarted coordinator, which
// has forgotten every executor, finds them again. One Registrar runs per
// coordinator address; streams name their coordinator in metadata, so each
// knows whether its own coordinator has a stream open.

const { Waker } = require('./util');
const { unary } = require('./rpc');

const REGISTER_TIMEOUT_MS = 10_000;

class Registrar {
  #client;
  #address;
  #intervalMs;
  #hasSession;
  #log;
  #waker = new Waker();
  #stopped = true;
  #call = null;
  #loopDone = Promise.resolve();

  /**
   * @param {object} deps
   * @param {object} deps.client coordinator client
   * @param {string} deps.target the coordinator's address, for logs
   * @param {string} deps.address host:port the coordinator should dial
   * @param {number} deps.intervalMs re-registration period while no stream is open
   * @param {(coordinatorId: string) => boolean} deps.hasSession whether a
   *   stream from that coordinator is open ('' before it has answered once)
   * @param {object} deps.log logger
   */
  constructor({ client, target, address, intervalMs, hasSession, log }) {
    this.#client = client;
    this.#address = address;
    this.#intervalMs = intervalMs;
    this.#hasSession = hasSession;
    this.#log = log.with({ coordinator: target });
  }

  start() {
    this.#stopped = false;
    this.#loopDone = this.#loop();
  }

  /** wake re-checks at once, e.g. right after a stream closed. */
  wake() {
    this.#waker.wake();
  }

  /** stop ends the loop, cancelling a call in flight, and waits for it. */
  async stop() {
    this.#stopped = true;
    this.#call?.cancel();
    this.#waker.wake();
    await this.#loopDone;
  }

  async #loop() {
    let registered = false;
    let failing = false;
    let coordinatorId = '';
    while (!this.#stopped) {
      if (!this.#hasSession(coordinatorId)) {
        try {
          const { call, response } = unary(this.#client, 'RegisterExecutor', { address: this.#address }, REGISTER_TIMEOUT_MS);
          this.#call = call;
          const reply = await response;
          if (this.#stopped) return;
          coordinatorId = reply.coordinator_id;
          if (!registered) {
            this.#log.info('registered with coordinator', { coordinator_id: reply.coordinator_id, address: this.#address });
          }
          registered = true;
          failing = false;
        } catch (err) {
          if (this.#stopped) return;
          // Warn once per outage: a down coordinator is retried every
          // interval and would flood the log otherwise.
          (failing ? this.#log.debug : this.#log.warn)('register with coordinator failed', { err: err.message });
          registered = false;
          failing = true;
        } finally {
          this.#call = null;
        }
      } else {
        registered = false;
      }
      await this.#waker.wait(this.#intervalMs);
    }
  }
}

module.exports = { Registrar };
