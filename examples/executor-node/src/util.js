'use strict';

// Small timing helpers shared by the executor's background loops.

// setTimeout silently turns any delay above 2^31-1 ms (about 24.8 days) into
// 1 ms, so a step with a far-away deadline would be aborted at once.
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls fn after ms milliseconds, however large ms is, by chaining timers.
 * Returns a function that cancels the call.
 */
function setLongTimeout(fn, ms) {
  let timer;
  let cancelled = false;
  const due = Date.now() + ms;
  const arm = () => {
    const left = due - Date.now();
    if (left <= 0) {
      fn();
      return;
    }
    timer = setTimeout(() => {
      if (!cancelled) arm();
    }, Math.min(left, MAX_TIMER_MS));
  };
  arm();
  return () => {
    cancelled = true;
    clearTimeout(timer);
  };
}

/**
 * Waker lets a loop sleep until either a timeout passes or someone calls
 * wake(). A wake() that arrives while nobody waits is remembered, so a nudge
 * is never lost (like a Go channel with capacity 1).
 */
class Waker {
  #pending = false;
  #resolve = null;

  wake() {
    if (this.#resolve) {
      const resolve = this.#resolve;
      this.#resolve = null;
      resolve();
      return;
    }
    this.#pending = true;
  }

  /** Resolves on wake() or after ms (never on its own when ms is Infinity). */
  wait(ms) {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let timer = null;
      this.#resolve = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      if (Number.isFinite(ms)) {
        timer = setTimeout(() => {
          this.#resolve = null;
          resolve();
        }, Math.max(0, Math.min(ms, MAX_TIMER_MS)));
      }
    });
  }
}

/**
 * Resolves true as soon as check() holds, re-checking whenever emitter emits
 * event, or false once ms have passed.
 */
function waitFor(check, emitter, event, ms) {
  if (check()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok) => {
      clearTimeout(timer);
      emitter.off(event, onEvent);
      resolve(ok);
    };
    const onEvent = () => {
      if (check()) done(true);
    };
    const timer = setTimeout(() => done(check()), Math.max(0, Math.min(ms, MAX_TIMER_MS)));
    emitter.on(event, onEvent);
  });
}

module.exports = { setLongTimeout, Waker, waitFor, MAX_TIMER_MS };
