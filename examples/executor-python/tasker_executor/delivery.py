"""Result tracking and redelivery.

Results are never dropped silently. Every StepResult is tracked from the
moment it exists until some path has delivered it: the Execute stream the
step came on, the coordinator's unary ReportStepResult, or the next stream
that opens. The coordinator applies a result only for the step's current
attempt, so delivering one twice is harmless; losing one would leave the
step waiting for its timeout.
"""

from __future__ import annotations

import asyncio
from typing import Callable, List, Optional, Sequence

import grpc

from .log import Logger
from .proto import coordinator_pb2, executor_pb2

# How long one ReportStepResult may take, and the retry backoff between
# passes while the coordinator is down: short enough that a recovered
# coordinator gets its results soon, long enough not to hammer a dead one.
REPORT_TIMEOUT = 5.0
RETRY_MIN = 0.1
RETRY_MAX = 5.0

# Answers after which calling ReportStepResult again for the same result
# cannot help: the result is left to a stream instead.
DEFINITIVE_REJECTIONS = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAUTHENTICATED,
})


class Delivery:
    """Delivery is one result on its way to a coordinator.

    resend marks a result already written to a stream that then broke: it
    probably arrived. uncounted marks such a resend that shutdown does not
    wait for, as no ReportStepResult can settle it quickly.
    """

    __slots__ = ("result", "done", "unary_rejected", "uncounted", "resend")

    def __init__(self, result: executor_pb2.StepResult, uncounted: bool = False, resend: bool = False):
        self.result = result
        self.done = False
        self.unary_rejected = False
        self.uncounted = uncounted
        self.resend = resend

    def fields(self) -> dict:
        """fields identifies the result in logs."""
        r = self.result
        return {"task_id": r.task_id, "step_id": r.step_id, "attempt": r.attempt}


class Deliveries:
    """Deliveries tracks undelivered results and redelivers those whose stream is gone.

    Everything runs on the executor's event loop.
    """

    def __init__(self, stubs: Sequence, newest_session: Callable[[], Optional[object]], log: Logger,
                 metadata: Optional[tuple] = None):
        self._stubs = list(stubs)
        self._metadata = metadata
        self._newest_session = newest_session
        self._log = log
        self._undelivered = 0
        self._drained = asyncio.Event()
        self._drained.set()
        # Results whose stream is gone, oldest first; may hold done entries.
        self._pending: List[Delivery] = []
        self._wake = asyncio.Event()
        self._stopped = True
        self._task: Optional[asyncio.Task] = None

    def create(self, result: executor_pb2.StepResult) -> Delivery:
        """create starts tracking a result; it counts as undelivered until mark_delivered."""
        self._undelivered += 1
        self._drained.clear()
        return Delivery(result)

    def create_resend(self, result: executor_pb2.StepResult) -> Delivery:
        """create_resend tracks a result written to a stream that then broke.

        Shutdown waits for it only when ReportStepResult can settle it:
        waiting for a new stream would stall every shutdown that follows a
        coordinator hanging up.
        """
        if self._stubs:
            d = self.create(result)
            d.resend = True
            return d
        return Delivery(result, uncounted=True, resend=True)

    def mark_delivered(self, d: Delivery) -> None:
        """mark_delivered is idempotent: one result may travel two paths at once."""
        if d.done:
            return
        d.done = True
        if d.uncounted:
            return
        self._undelivered -= 1
        if self._undelivered == 0:
            self._drained.set()

    @property
    def undelivered(self) -> int:
        """undelivered counts results no path has delivered yet."""
        return self._undelivered

    def park(self, *ds: Delivery) -> None:
        """park queues results whose stream is gone and wakes the redelivery loop."""
        self._pending.extend(ds)
        self._wake.set()

    def take_pending(self) -> List[Delivery]:
        """take_pending hands every pending result to a stream that just opened."""
        out = [d for d in self._pending if not d.done]
        self._pending = []
        return out

    def stranded(self) -> List[Delivery]:
        """stranded lists results not delivered yet, for shutdown logs."""
        return [d for d in self._pending if not d.done]

    async def drained(self, timeout: float) -> bool:
        """drained waits until nothing is undelivered: True, or False after timeout."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return self._undelivered == 0

    def start(self) -> None:
        """start runs the redelivery loop."""
        self._stopped = False
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """stop ends the loop, cancelling a report in flight, and waits for it."""
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            # The flag ends the loop even if grpc turns the cancellation of a
            # report in flight into an error, or wait_for swallows it.
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=REPORT_TIMEOUT)

    async def _loop(self) -> None:
        delay = RETRY_MIN
        retry = False
        while not self._stopped:
            try:
                await asyncio.wait_for(self._wake.wait(), delay if retry else None)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self._stopped:
                return
            retry = await self._pass()
            delay = min(delay * 2, RETRY_MAX) if retry else RETRY_MIN

    async def _pass(self) -> bool:
        """_pass tries each pending result once: ReportStepResult first, else the
        newest open stream. It reports whether a later retry of the unary call
        may deliver what is left."""
        self._pending = [d for d in self._pending if not d.done]
        unary_up = bool(self._stubs)
        retry = False
        for d in list(self._pending):
            if self._stopped:
                return False
            if d.done:
                continue
            if unary_up and not d.unary_rejected:
                try:
                    await self._report(d)
                    self.mark_delivered(d)
                    continue
                except Exception as err:  # pylint: disable=broad-except
                    # Anything but a definitive answer is treated as transient:
                    # this loop must outlive every error, or results are lost.
                    if isinstance(err, grpc.aio.AioRpcError) and err.code() in DEFINITIVE_REJECTIONS:
                        d.unary_rejected = True
                        self._log.error("coordinator rejected reported result; waiting for a stream to carry it",
                                        err=_describe(err), **d.fields())
                    else:
                        # Probably down: stop calling it this pass, retry later.
                        self._log.warn("report step result failed, will retry", err=_describe(err), **d.fields())
                        unary_up = False
                        retry = True
            elif self._stubs and not d.unary_rejected:
                retry = True
            self._hand_over(d)
        return retry

    async def _report(self, d: Delivery) -> None:
        """_report sends one result through ReportStepResult.

        With several coordinators only the task's owner applies it, so each
        is tried until one does; if every one answers without applying it,
        the result was stale and counts as delivered. It raises the first
        error when no coordinator applied it and some could not be reached.
        """
        errors = []
        for stub in self._stubs:
            try:
                reply = await stub.ReportStepResult(
                    coordinator_pb2.ReportStepResultRequest(result=d.result), timeout=REPORT_TIMEOUT,
                    metadata=self._metadata)
            except Exception as err:  # pylint: disable=broad-except
                errors.append(err)
                continue
            if reply.applied or len(self._stubs) == 1:
                self._log.info("step result reported", applied=reply.applied, **d.fields())
                return
        if errors:
            raise errors[0]
        self._log.info("step result reported; no coordinator needed it", **d.fields())

    def _hand_over(self, d: Delivery) -> None:
        """_hand_over moves a pending result onto the newest open stream, if any."""
        if d.done:
            return
        session = self._newest_session()
        if session is None:
            return
        self._pending = [p for p in self._pending if p is not d]
        session.send_result(d)


def _describe(err: BaseException) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name}: {err.details()}"
    return f"{type(err).__name__}: {err}"
