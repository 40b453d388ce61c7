/**
 * The loop that follows the event stream for useEventStream, apart from
 * React so that it can be tested: it resumes after a break from the last
 * cursor it got, so nothing is missed, and backs off while the stream is
 * refused.
 */

/** LiveStatus says whether live updates arrive: "live" on the event stream, "polling" without it. */
export type LiveStatus = 'connecting' | 'live' | 'polling';

/** A message of the stream: an event with its cursor, or none (a heartbeat). */
export interface StreamMessage<E> {
  event?: E & { cursor?: string };
}

/**
 * Subscribe opens one stream after a cursor (from now without one) and
 * resolves when it ends; it calls onOpen once the coordinator answered.
 */
export type Subscribe<E> = (
  after: string | undefined,
  onMessage: (m: StreamMessage<E>) => void,
  signal: AbortSignal,
  onOpen: () => void,
) => Promise<void>;

export interface FollowHooks<E> {
  onEvent: (e: E) => void;
  onStatus: (s: LiveStatus) => void;
  /**
   * onGap is told when the log no longer holds the cursor to resume from
   * (older than the coordinator's event retention, or from before a
   * restore): the stream goes on from now, and the events in between are
   * not coming.
   */
  onGap: () => void;
  /** sleep waits ms, or less when the signal is aborted. */
  sleep: (ms: number) => Promise<void>;
  isAbort: (e: unknown) => boolean;
}

/** OUT_OF_RANGE is the gRPC code of a cursor the log no longer holds. */
const OUT_OF_RANGE = 11;

function cursorGone(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === OUT_OF_RANGE;
}

/**
 * followEvents follows the stream until signal is aborted. from.cursor is
 * where it resumes, and it keeps it current, so a caller that stops and
 * starts again (a page hidden meanwhile) resumes where this left off.
 */
export async function followEvents<E>(
  subscribe: Subscribe<E>,
  from: { cursor?: string },
  signal: AbortSignal,
  hooks: FollowHooks<E>,
): Promise<void> {
  let failures = 0;
  while (!signal.aborted) {
    try {
      await subscribe(
        from.cursor,
        (m) => {
          if (m.event?.cursor) from.cursor = m.event.cursor;
          failures = 0;
          if (m.event) hooks.onEvent(m.event);
        },
        signal,
        () => hooks.onStatus('live'),
      );
    } catch (e) {
      if (signal.aborted || hooks.isAbort(e)) return;
      if (from.cursor !== undefined && cursorGone(e)) {
        from.cursor = undefined;
        hooks.onGap();
        continue;
      }
      failures++;
      hooks.onStatus('polling');
    }
    if (signal.aborted) return;
    // A stream the coordinator cannot serve (not implemented, refused) is
    // asked for again rarely; a broken one soon.
    await hooks.sleep(failures === 0 ? 200 : Math.min(30_000, 1000 * 2 ** Math.min(failures, 5)));
  }
}
