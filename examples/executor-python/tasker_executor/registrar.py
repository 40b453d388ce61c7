"""Registration with a coordinator.

The coordinator dials executors, not the other way round, so an executor
tells it where to dial (RegisterExecutor) whenever no Execute stream from
that coordinator is open: at start, every interval while it has none, and
at once when a stream closes. That is how a restarted coordinator, which has
forgotten every executor, finds them again. One Registrar runs per
coordinator address.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Optional

import grpc

from .log import Logger
from .proto import coordinator_pb2

REGISTER_TIMEOUT = 10.0


class Registrar:
    """Registrar keeps one coordinator informed of this executor's address."""

    def __init__(self, stub, target: str, address: str, interval: float,
                 has_session: Callable[[str], bool], log: Logger, metadata: Optional[tuple] = None):
        self._stub = stub
        self._metadata = metadata
        self._address = address
        self._interval = interval
        self._has_session = has_session
        self._log = log.with_(coordinator=target)
        self._wake = asyncio.Event()
        self._stopped = False
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        """start runs the registration loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def wake(self) -> None:
        """wake re-checks at once, e.g. right after a stream closed."""
        self._wake.set()

    async def stop(self) -> None:
        """stop ends the loop, cancelling a call in flight, and waits for it.

        The flag, not only the cancellation, ends the loop: grpc may turn the
        cancellation of a call in flight into an error the loop handles, and
        Python 3.11's wait_for can swallow one that races its timeout.
        """
        self._stopped = True
        self._wake.set()
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.wait({self._task}, timeout=REGISTER_TIMEOUT)

    async def _loop(self) -> None:
        registered = False
        failing = False
        coordinator_id = ""
        while not self._stopped:
            if not self._has_session(coordinator_id):
                try:
                    reply = await self._stub.RegisterExecutor(
                        coordinator_pb2.RegisterExecutorRequest(address=self._address), timeout=REGISTER_TIMEOUT,
                        metadata=self._metadata)
                    coordinator_id = reply.coordinator_id
                    if not registered:
                        self._log.info("registered with coordinator", coordinator_id=coordinator_id,
                                       address=self._address)
                    registered, failing = True, False
                except Exception as err:  # pylint: disable=broad-except
                    if self._stopped:
                        return
                    # Warn once per outage: a down coordinator is retried
                    # every interval and would flood the log otherwise.
                    detail = (f"{err.code().name}: {err.details()}" if isinstance(err, grpc.aio.AioRpcError)
                              else f"{type(err).__name__}: {err}")
                    (self._log.debug if failing else self._log.warn)("register with coordinator failed", err=detail)
                    registered, failing = False, True
            else:
                registered = False
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
