"""Test harness: a real executor on 127.0.0.1 and a coordinator played by
the test over real gRPC, both on the test's event loop."""

from __future__ import annotations

import asyncio
import gc
import io
import unittest
import json
import os
import sys
from typing import List, Optional

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
from tasker_executor import Executor, new_logger  # noqa: E402
from tasker_executor.proto import (coordinator_pb2, coordinator_pb2_grpc, executor_pb2,  # noqa: E402
                                   executor_pb2_grpc)

# WAIT bounds every wait for an event; tests never sleep and then assert.
WAIT = 10.0


class AsyncTestCase(unittest.IsolatedAsyncioTestCase):
    """AsyncTestCase collects garbage before each test's event loop closes:
    grpc's aio engine stays bound to a loop while any of its objects lives,
    and a later test's loop would then get the old loop's callbacks."""

    def tearDown(self):
        gc.collect()
        super().tearDown()


def new_executor(**kwargs) -> Executor:
    """new_executor builds an executor logging to memory (its log is in .log_buffer)."""
    buf = io.StringIO()
    kwargs.setdefault("logger", new_logger("debug", buf))
    e = Executor(**kwargs)
    e.log_buffer = buf
    return e


def step(task_id="t1", step_id="s1", attempt=1, handler="echo", **fields) -> executor_pb2.ExecuteRequest:
    """step builds an ExecuteStep request; dict/list values of config, context and parents go as JSON."""
    for name in ("handler_config", "context"):
        if name in fields and not isinstance(fields[name], bytes):
            fields[name] = json.dumps(fields[name]).encode()
    if "parent_results" in fields:
        fields["parent_results"] = {k: v if isinstance(v, bytes) else json.dumps(v).encode()
                                    for k, v in fields["parent_results"].items()}
    return executor_pb2.ExecuteRequest(execute_step=executor_pb2.ExecuteStep(
        task_id=task_id, step_id=step_id, step_name=fields.pop("step_name", step_id), handler=handler,
        attempt=attempt, **fields))


def cancel(task_id="t1", step_id="s1", attempt=1, reason="test") -> executor_pb2.ExecuteRequest:
    """cancel builds a CancelStep request."""
    return executor_pb2.ExecuteRequest(cancel_step=executor_pb2.CancelStep(
        task_id=task_id, step_id=step_id, attempt=attempt, reason=reason))


class Stream:
    """Stream is one Execute stream opened by the test, playing a coordinator.

    Responses are sorted into queues as they arrive: results, heartbeats,
    progress, and every message in order (all).
    """

    def __init__(self, address: str, coordinator_id: str = "test-coordinator", secret: str = ""):
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = executor_pb2_grpc.ExecutorServiceStub(self.channel)
        metadata = [("tasker-coordinator-id", coordinator_id)]
        if secret:
            metadata.append(("authorization", f"Bearer {secret}"))
        self.call = self.stub.Execute(metadata=tuple(metadata))
        self.results: asyncio.Queue = asyncio.Queue()
        self.heartbeats: asyncio.Queue = asyncio.Queue()
        self.progress: asyncio.Queue = asyncio.Queue()
        self.all: List[executor_pb2.ExecuteResponse] = []
        self.ended = asyncio.Event()
        self.status: Optional[grpc.StatusCode] = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.call:
                self.all.append(msg)
                kind = msg.WhichOneof("kind")
                {"step_result": self.results, "heartbeat": self.heartbeats,
                 "progress": self.progress}[kind].put_nowait(getattr(msg, kind))
            self.status = await self.call.code()
        except grpc.aio.AioRpcError as err:
            self.status = err.code()
        except asyncio.CancelledError:
            self.status = grpc.StatusCode.CANCELLED
            raise
        finally:
            self.ended.set()

    async def send(self, *reqs: executor_pb2.ExecuteRequest) -> None:
        """send writes requests in order."""
        for r in reqs:
            await self.call.write(r)

    async def result(self) -> executor_pb2.StepResult:
        """result waits for the next StepResult."""
        return await asyncio.wait_for(self.results.get(), WAIT)

    async def heartbeat(self) -> executor_pb2.Heartbeat:
        """heartbeat waits for the next Heartbeat."""
        return await asyncio.wait_for(self.heartbeats.get(), WAIT)

    async def heartbeat_where(self, pred) -> executor_pb2.Heartbeat:
        """heartbeat_where waits for a heartbeat satisfying pred."""
        async def find():
            while True:
                hb = await self.heartbeats.get()
                if pred(hb):
                    return hb
        return await asyncio.wait_for(find(), WAIT)

    async def half_close(self) -> None:
        """half_close ends the coordinator's side; results still come."""
        await self.call.done_writing()

    async def wait_ended(self) -> Optional[grpc.StatusCode]:
        """wait_ended waits for the stream's end and returns its status."""
        await asyncio.wait_for(self.ended.wait(), WAIT)
        return self.status

    async def break_(self) -> None:
        """break_ drops the stream as a crashing coordinator would."""
        self.call.cancel()
        await self.close()

    async def close(self) -> None:
        """close releases the client side: it cancels the call (a no-op once it
        ended) and lets the reader see that, rather than cancelling the reader
        mid-read, which grpc's aio stream reader does not survive. Idempotent."""
        if self.call is None:
            return
        self.call.cancel()
        await asyncio.wait_for(self.ended.wait(), WAIT)
        await self.channel.close()
        # grpc's aio engine stays bound to this test's event loop while any
        # of its objects is alive; drop them so the next test starts clean.
        self.call = self.stub = self.channel = None


class FakeCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """FakeCoordinator serves RegisterExecutor and ReportStepResult and
    records what it received."""

    def __init__(self, coordinator_id: str = "fake-coordinator", report_code: Optional[grpc.StatusCode] = None,
                 applied: bool = True):
        self.coordinator_id = coordinator_id
        self.report_code = report_code
        self.applied = applied
        self.registered: asyncio.Queue = asyncio.Queue()
        self.authorization: List[str] = []
        self.reports: asyncio.Queue = asyncio.Queue()
        self.server: Optional[grpc.aio.Server] = None
        self.address = ""

    async def start(self) -> str:
        """start serves on a free port of 127.0.0.1."""
        self.server = grpc.aio.server()
        coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        """stop ends the server at once."""
        await self.server.stop(None)
        self.server = None

    async def RegisterExecutor(self, request, context):  # noqa: N802
        self.authorization += [v for k, v in context.invocation_metadata() if k == "authorization"]
        self.registered.put_nowait(request.address)
        return coordinator_pb2.RegisterExecutorResponse(coordinator_id=self.coordinator_id)

    async def ReportStepResult(self, request, context):  # noqa: N802
        if self.report_code is not None:
            await context.abort(self.report_code, "refused by the test")
        self.reports.put_nowait(request.result)
        return coordinator_pb2.ReportStepResultResponse(applied=self.applied)
