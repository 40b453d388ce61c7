'use strict';

// One open Execute stream. Node runs JavaScript on one thread, so writes
// from handlers, heartbeats and redelivery cannot interleave mid-message:
// each goes straight to the stream, which keeps them in order.

// A successful write only means the message reached the local transport:
// results written just before a stream broke may never have reached the
// coordinator. When a stream breaks, the results it wrote within
// RESEND_WINDOW_MS (at most MAX_RESEND of them) are delivered again; the
// coordinator ignores the duplicates. The window covers round trips and
// transport buffers with a wide margin.
const RESEND_WINDOW_MS = 5_000;
const MAX_RESEND = 1024;

/** Request metadata key in which a coordinator names itself when it opens a stream. */
const COORDINATOR_ID_METADATA = 'tasker-coordinator-id';

class Session {
  /** closed: nothing more may be written (ended by us or broken). */
  closed = false;
  /** halfClosed: the coordinator sends no more steps but wants the results of those it sent. */
  halfClosed = false;
  /** inflight counts steps admitted on this stream whose result was not handed over yet. */
  inflight = 0;

  #call;
  #deliveries;
  #onClosed;
  #endedByUs = false;
  #heartbeatTimer = null;
  /** Results written recently, oldest first, kept for a resend. */
  #sent = [];
  /** Deliveries written whose write has not completed yet. */
  #unconfirmed = new Set();

  /**
   * @param {object} deps
   * @param {number} deps.id increasing per stream; the newest takes redeliveries
   * @param {object} deps.call grpc-js ServerDuplexStream
   * @param {object} deps.log logger
   * @param {import('./delivery').Deliveries} deps.deliveries
   * @param {(s: Session) => void} deps.onClosed called once when the stream is over for us
   */
  constructor({ id, call, log, deliveries, onClosed }) {
    this.id = id;
    /** coordinatorId names the coordinator that opened the stream; '' when it did not say. */
    this.coordinatorId = String(call.metadata?.get(COORDINATOR_ID_METADATA)[0] ?? '');
    this.log = log.with({ stream: id, peer: call.getPeer(), coordinator_id: this.coordinatorId });
    this.#call = call;
    this.#deliveries = deliveries;
    this.#onClosed = onClosed;
    // grpc-js reports every end of the HTTP/2 stream as 'cancelled', also
    // after our own end(); #endedByUs tells the two apart.
    call.on('cancelled', () => this.#close());
    call.on('error', (err) => this.log.debug('execute stream error', { err: err.message }));
  }

  /** sendResult writes a result; if the stream is gone the result waits for redelivery. */
  sendResult(d) {
    if (this.closed) {
      this.#deliveries.park(d);
      return;
    }
    this.#unconfirmed.add(d);
    this.#call.write({ step_result: d.result }, (err) => {
      // Already handed to redelivery by #close: nothing left to do here.
      if (!this.#unconfirmed.delete(d)) return;
      if (err) {
        this.#deliveries.park(d);
        return;
      }
      this.#deliveries.markDelivered(d);
      this.#remember(d.result);
    });
  }

  /** sendHeartbeat writes a heartbeat message built by the executor. */
  sendHeartbeat(msg) {
    if (!this.closed) this.#call.write(msg);
  }

  /**
   * sendProgress is best effort: it is dropped when the stream is gone or
   * backed up, rather than growing memory for a slow coordinator. Results
   * are never dropped.
   */
  sendProgress(progress) {
    if (this.closed || this.#call.writableNeedDrain) return;
    this.#call.write({ progress });
  }

  /** startHeartbeats sends build() every intervalMs until the stream ends. */
  startHeartbeats(intervalMs, build) {
    this.#heartbeatTimer = setInterval(() => this.sendHeartbeat(build()), intervalMs);
  }

  /**
   * end closes the stream cleanly after everything already written: a clean
   * end promises that what was sent was meant to be read, so no resend.
   */
  end() {
    if (this.closed) return;
    this.#endedByUs = true;
    this.#finish();
    this.#call.end();
    this.log.info('execute stream closed');
  }

  #remember(result) {
    const now = Date.now();
    const cutoff = now - RESEND_WINDOW_MS;
    let drop = 0;
    while (drop < this.#sent.length && (this.#sent[drop].at < cutoff || this.#sent.length - drop >= MAX_RESEND)) drop++;
    this.#sent = this.#sent.slice(drop);
    this.#sent.push({ result, at: now });
  }

  /** #close runs when the HTTP/2 stream is gone, cleanly or not. */
  #close() {
    const abnormal = !this.#endedByUs;
    this.#finish();
    const unsent = [...this.#unconfirmed];
    this.#unconfirmed.clear();
    let resend = [];
    if (abnormal) {
      const cutoff = Date.now() - RESEND_WINDOW_MS;
      resend = this.#sent.filter((s) => s.at >= cutoff).map((s) => this.#deliveries.createResend(s.result));
      this.log.warn('execute stream broke', { unsent: unsent.length, resent: resend.length });
    }
    this.#sent = [];
    if (unsent.length + resend.length > 0) this.#deliveries.park(...unsent, ...resend);
  }

  /** #finish stops writing and tells the executor, once. */
  #finish() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.#heartbeatTimer);
    this.#onClosed(this);
  }
}

module.exports = { Session, RESEND_WINDOW_MS, COORDINATOR_ID_METADATA };
