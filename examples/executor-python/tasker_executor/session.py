"""One open Execute stream.

Every message for the stream goes through one queue and one writer task, so
results, heartbeats and progress from many handlers never interleave and
leave in the order they were queued: the pending results queued when the
stream opens go out before its first heartbeat.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Callable, Deque, List, Optional, Tuple

import grpc

from .delivery import Deliveries, Delivery
from .log import Logger
from .proto import executor_pb2

# A successful write only means the message reached the local transport:
# results written just before a stream broke may never have reached the
# coordinator. When a stream breaks, the results it wrote within
# RESEND_WINDOW seconds (at most MAX_RESEND of them) are delivered again;
# the coordinator ignores the duplicates.
RESEND_WINDOW = 5.0
MAX_RESEND = 1024

# Progress is dropped rather than queued once this many messages wait:
# results are never dropped, progress is best effort.
MAX_QUEUED_FOR_PROGRESS = 256

COORDINATOR_ID_METADATA = "tasker-coordinator-id"

_END = object()
_BROKEN = object()


class Session:
    """Session is one Execute stream, from open to close.

    closed: nothing more may be written (ended by us or broken).
    half_closed: the coordinator sends no more steps but wants the results
    of those it sent. inflight counts steps admitted on this stream whose
    result was not handed over yet.
    """

    def __init__(self, sid: int, context: grpc.aio.ServicerContext, deliveries: Deliveries,
                 log: Logger, on_closed: Callable[["Session"], None]):
        self.id = sid
        self.coordinator_id = ""
        for key, value in context.invocation_metadata() or ():
            if key == COORDINATOR_ID_METADATA:
                self.coordinator_id = value
        self.log = log.with_(stream=sid, peer=context.peer(), coordinator_id=self.coordinator_id)
        self.closed = False
        self.half_closed = False
        self.inflight = 0
        self._context = context
        self._deliveries = deliveries
        self._on_closed = on_closed
        self._queue: asyncio.Queue = asyncio.Queue()
        # Deliveries queued or being written: parked again if the stream breaks first.
        self._unconfirmed: List[Delivery] = []
        # Results written recently, oldest first, kept for a resend.
        self._sent: Deque[Tuple[executor_pb2.StepResult, float]] = collections.deque()
        self._heartbeat_task: Optional[asyncio.Task] = None

    def send_result(self, d: Delivery) -> None:
        """send_result queues a result; if the stream is gone it waits for redelivery."""
        if self.closed:
            self._deliveries.park(d)
            return
        self._unconfirmed.append(d)
        self._queue.put_nowait(("result", d))

    def send_heartbeat(self, build: Callable[[], executor_pb2.Heartbeat]) -> None:
        """send_heartbeat queues a heartbeat, built when it is written so it is current then."""
        if not self.closed:
            self._queue.put_nowait(("heartbeat", build))

    def send_progress(self, progress: executor_pb2.StepProgress) -> None:
        """send_progress is best effort: dropped when the stream is gone or backed up."""
        if self.closed or self._queue.qsize() >= MAX_QUEUED_FOR_PROGRESS:
            return
        self._queue.put_nowait(("progress", progress))

    def start_heartbeats(self, interval: float, build: Callable[[], executor_pb2.Heartbeat]) -> None:
        """start_heartbeats queues a heartbeat every interval seconds until the stream ends."""
        async def beat() -> None:
            while not self.closed:
                await asyncio.sleep(interval)
                self.send_heartbeat(build)
        self._heartbeat_task = asyncio.get_running_loop().create_task(beat())

    def end(self) -> None:
        """end closes the stream cleanly after everything already queued."""
        if not self.closed:
            self._queue.put_nowait((_END, None))

    def broken(self) -> None:
        """broken tells the writer the stream is gone (the reader saw it fail)."""
        if not self.closed:
            self._queue.put_nowait((_BROKEN, None))

    async def write_loop(self) -> None:
        """write_loop writes queued messages until the stream ends or breaks.

        It returns normally after a clean end (the RPC then finishes with OK)
        and raises nothing on a break: the caller returns either way.
        """
        clean = False
        try:
            while True:
                kind, payload = await self._queue.get()
                if kind is _END:
                    clean = True
                    return
                if kind is _BROKEN:
                    return
                if kind == "result":
                    await self._context.write(executor_pb2.ExecuteResponse(step_result=payload.result))
                    self._unconfirmed.remove(payload)
                    self._deliveries.mark_delivered(payload)
                    self._remember(payload.result)
                elif kind == "heartbeat":
                    await self._context.write(executor_pb2.ExecuteResponse(heartbeat=payload()))
                else:
                    await self._context.write(executor_pb2.ExecuteResponse(progress=payload))
        except asyncio.CancelledError:
            # gRPC cancels the RPC's task when the stream breaks.
            raise
        except Exception as err:  # pylint: disable=broad-except
            self.log.debug("execute stream write failed", err=str(err))
        finally:
            self._close(abnormal=not clean)

    def _remember(self, result: executor_pb2.StepResult) -> None:
        now = time.monotonic()
        while self._sent and (self._sent[0][1] < now - RESEND_WINDOW or len(self._sent) >= MAX_RESEND):
            self._sent.popleft()
        self._sent.append((result, now))

    def _close(self, abnormal: bool) -> None:
        """_close runs once when the stream is over for us, cleanly or not."""
        if self.closed:
            return
        self.closed = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        unsent = list(self._unconfirmed)
        self._unconfirmed.clear()
        resend: List[Delivery] = []
        if abnormal:
            cutoff = time.monotonic() - RESEND_WINDOW
            resend = [self._deliveries.create_resend(r) for r, at in self._sent if at >= cutoff]
            self.log.warn("execute stream broke", unsent=len(unsent), resent=len(resend))
        else:
            self.log.info("execute stream closed")
        self._sent.clear()
        if unsent or resend:
            self._deliveries.park(*unsent, *resend)
        self._on_closed(self)
