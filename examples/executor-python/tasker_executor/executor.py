"""The executor: a gRPC server implementing tasker.executor.v1 that hosts
step handlers, registers with coordinators and answers every ExecuteStep
with exactly one StepResult.

It mirrors the Go SDK (executor/) and the Node executor
(examples/executor-node/) so all three behave the same towards the
coordinator; docs/executor-protocol.md is the contract.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import inspect
import math
import os
import signal
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Union

import grpc

from .delivery import Deliveries, Delivery
from .errors import ErrorClass, PermanentError, StepCancelled, failure_of, message_of
from .log import Logger, new_logger
from .proto import coordinator_pb2_grpc, executor_pb2, executor_pb2_grpc
from .registrar import Registrar
from .session import Session
from .wire import Cancellation, StepContext, deadline_of, encode_results

SDK_VERSION = "0.1.0"
"""SDK_VERSION is reported by Describe so operators can tell builds apart."""
PROTOCOL_VERSION = 1
"""PROTOCOL_VERSION is the version of tasker.executor.v1 spoken here."""
CAPABILITIES = ("cancel", "heartbeat", "progress", "report")
"""CAPABILITIES are the optional protocol features this executor supports."""
MAX_RECEIVE_BYTES = 64 << 20
"""MAX_RECEIVE_BYTES is the largest ExecuteRequest the server accepts, and
what Describe declares (max_receive_bytes). Declared, the coordinator fails
a step whose request would be larger (InputTooLarge) rather than send it: a
message over the limit would end the stream and every attempt on it.
Undeclared, it would assume gRPC's default, 4 MiB."""

DEFAULT_CAPACITY = 16
DEFAULT_REGISTER_INTERVAL = 1.0
DEFAULT_HEARTBEAT_INTERVAL = 5.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_DELIVERY_TIMEOUT = 10.0
DEFAULT_MAX_RESULT_BYTES = 16 << 20
MIN_SECRET_LENGTH = 16
"""MIN_SECRET_LENGTH is the shortest executor secret accepted, as in the Go SDK."""

# Bounds on shutdown beyond the configurable ones; they only matter when
# something misbehaves (a handler ignoring cancellation, a client never
# hanging up), so they are generous but finite.
CANCEL_GRACE = 5.0
STOP_GRACE = 5.0
# How long a half-closed stream with nothing in flight stays open, so that a
# reset read as end-of-stream is reported as the break it is first.
HALF_CLOSE_GRACE = 0.2

# gRPC backs off reconnecting to a coordinator that went away, up to 2
# minutes by default, and fails calls at once meanwhile: a restarted
# coordinator would wait that long for registrations and reported results.
# Capped at 2 s here, which costs a dead coordinator one connect attempt
# every 2 s.
_COORDINATOR_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

Handler = Callable[[StepContext], Union[Any, Awaitable[Any]]]


class _Run:
    """_Run is one admitted attempt, from admission until its result is handed over."""

    __slots__ = ("key", "step", "session", "cancellation", "log", "deadline_timer", "task")

    def __init__(self, key, step, session, cancellation, log):
        self.key = key
        self.step = step
        self.session = session
        self.cancellation = cancellation
        self.log = log
        self.deadline_timer: Optional[asyncio.TimerHandle] = None
        self.task: Optional[asyncio.Task] = None


class Executor:
    """Executor hosts handlers and serves tasker.executor.v1.ExecutorService.

    Create it, add handlers with the handler decorator (or handle), then
    start it on an event loop (start / serve) or run it with run(). Handlers
    are async functions, run on the executor's event loop, or plain
    functions, run on a worker thread each; both get a StepContext and
    return the step's results (any JSON value) or raise.
    """

    def __init__(self, *, id: Optional[str] = None, capacity: int = DEFAULT_CAPACITY,
                 coordinators: Sequence[str] = (), advertise: str = "", logger: Optional[Logger] = None,
                 register_interval: float = DEFAULT_REGISTER_INTERVAL,
                 heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
                 shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
                 delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT,
                 max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES, language: str = "python",
                 secret: str = "", token: str = ""):
        # pylint: disable=redefined-builtin,too-many-arguments
        if id is not None and (not isinstance(id, str) or id == ""):
            raise ValueError("id must be a non-empty string")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= 2**31 - 1:
            raise ValueError(f"capacity must be a whole number from 1 to 2147483647, got {capacity!r}")
        for name, value in (("register_interval", register_interval), ("heartbeat_interval", heartbeat_interval),
                            ("shutdown_timeout", shutdown_timeout), ("delivery_timeout", delivery_timeout),
                            ("max_result_bytes", max_result_bytes)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if secret and len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"secret must be at least {MIN_SECRET_LENGTH} characters (shorter ones are guessable), "
                             f"got {len(secret)}")
        if isinstance(coordinators, str):
            coordinators = [coordinators]
        self.id = id or str(uuid.uuid4())
        self.capacity = capacity
        self.language = language
        self._targets = list(dict.fromkeys(c for c in coordinators if c))
        self._advertise = advertise
        self._register_interval = register_interval
        self._heartbeat_interval = heartbeat_interval
        self._shutdown_timeout = shutdown_timeout
        self._delivery_timeout = delivery_timeout
        self._max_result_bytes = max_result_bytes
        # The digest of the secret coordinators must send: comparing digests
        # takes the same time whatever a caller sent.
        self._secret_digest = hashlib.sha256(secret.encode()).digest() if secret else None
        # Sent on the calls to coordinators that require credentials.
        self._call_metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._log = (logger or new_logger()).with_(executor_id=self.id)
        self._handlers: Dict[str, Handler] = {}
        self._started = False
        # shutting_down refuses new steps; closed refuses new streams.
        self._shutting_down = False
        self._closed = False
        self._running: Dict[tuple, _Run] = {}
        self._idle: Optional[asyncio.Event] = None
        self._sessions: Dict[int, Session] = {}
        self._next_session = 0
        self._server: Optional[grpc.aio.Server] = None
        self._channels: List[grpc.aio.Channel] = []
        self._deliveries: Optional[Deliveries] = None
        self._registrars: List[Registrar] = []
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._shutdown_task: Optional[asyncio.Task] = None
        self.abandoned = 0
        """abandoned counts handlers that ignored cancellation at shutdown."""

    # -- handlers -------------------------------------------------------

    def handler(self, name: str) -> Callable[[Handler], Handler]:
        """handler registers the decorated function under name:

            @executor.handler("charge")
            async def charge(ctx): ...
        """
        def register(fn: Handler) -> Handler:
            self.handle(name, fn)
            return fn
        return register

    def handle(self, name: str, fn: Handler) -> None:
        """handle registers fn under name. Handlers must be added before the
        executor starts: Describe tells the coordinator the set once."""
        if not isinstance(name, str) or name == "":
            raise ValueError("handler name must be a non-empty string")
        if not callable(fn):
            raise TypeError(f"handler {name!r} must be callable")
        if self._started:
            raise RuntimeError(f"handle {name!r}: executor already started")
        if name in self._handlers:
            raise ValueError(f"handle {name!r}: handler already registered")
        self._handlers[name] = fn

    def handler_names(self) -> List[str]:
        """handler_names lists the hosted handlers, sorted."""
        return sorted(self._handlers)

    # -- life cycle -----------------------------------------------------

    async def start(self, address: str) -> str:
        """start serves on address (host:port; port 0 picks a free one),
        starts registering when coordinators are configured and returns the
        bound address. It may be called once."""
        if self._started:
            raise RuntimeError("start: executor already started")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.capacity,
                                                           thread_name_prefix="tasker-handler")
        self._channels = [grpc.aio.insecure_channel(t, options=_COORDINATOR_CHANNEL_OPTIONS) for t in self._targets]
        stubs = [coordinator_pb2_grpc.CoordinatorServiceStub(c) for c in self._channels]
        self._deliveries = Deliveries(stubs, self._newest_session, self._log, self._call_metadata)
        # Without so_reuseport=0 gRPC binds with SO_REUSEPORT, and a second
        # executor on a taken port would share it instead of failing.
        self._server = grpc.aio.server(options=(("grpc.so_reuseport", 0),
                                                ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)))
        executor_pb2_grpc.add_ExecutorServiceServicer_to_server(_Servicer(self), self._server)
        try:
            port = self._server.add_insecure_port(address)
        except RuntimeError as err:
            port, cause = 0, err
        else:
            cause = None
        if port == 0:
            raise OSError(f"cannot listen on {address!r} (--listen): the address is taken or not host:port") from cause
        await self._server.start()
        bound = f"{address.rsplit(':', 1)[0]}:{port}"
        advertise = self._advertise or bound
        self._deliveries.start()
        self._registrars = [Registrar(stub, target, advertise, self._register_interval,
                                      self._has_session_from, self._log, self._call_metadata)
                            for stub, target in zip(stubs, self._targets)]
        for r in self._registrars:
            r.start()
        self._log.info("executor serving", address=bound, advertise=advertise,
                       coordinators=",".join(self._targets), handlers=",".join(self.handler_names()),
                       capacity=self.capacity)
        return bound

    def shutdown(self) -> "asyncio.Task":
        """shutdown stops gracefully: stop registering, refuse new steps, wait
        up to shutdown_timeout for running handlers (then cancel them),
        deliver their results and stop the server. Calling it again returns
        the same task; await it."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown())
        return self._shutdown_task

    async def _shutdown(self) -> None:
        if not self._started:
            return
        self._log.info("executor shutting down")
        for r in self._registrars:
            await r.stop()
        await self._drain_runs()
        await self._await_delivery()
        self._log.debug("shutdown: results delivered")
        await self._deliveries.stop()
        self._closed = True
        for s in list(self._sessions.values()):
            s.end()
        self._log.debug("shutdown: stopping the server", streams=len(self._sessions))
        await self._server.stop(STOP_GRACE)
        self._log.debug("shutdown: server stopped")
        for c in self._channels:
            await c.close()
        # grpc's aio engine stays bound to this event loop while any of its
        # objects lives: drop them, so an embedding program can run another
        # loop (tests run one per case).
        self._server, self._channels = None, []
        self._pool.shutdown(wait=False)
        self._log.info("executor stopped")

    async def _drain_runs(self) -> None:
        self._shutting_down = True
        if self._running:
            self._log.info("waiting for running handlers", running=len(self._running),
                           timeout_s=self._shutdown_timeout)
        if await self._wait_idle(self._shutdown_timeout):
            return
        for run in list(self._running.values()):
            run.log.warn("cancelling handler at shutdown", timeout_s=self._shutdown_timeout)
            run.cancellation.fire("shutdown", "cancelled: executor shutting down")
        if await self._wait_idle(CANCEL_GRACE):
            return
        for run in list(self._running.values()):
            self.abandoned += 1
            run.log.error("abandoning handler that ignored its cancellation; its result is lost")

    async def _wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return not self._running

    async def _await_delivery(self) -> None:
        if await self._deliveries.drained(self._delivery_timeout):
            return
        for d in self._deliveries.stranded():
            if d.resend:
                self._log.warn("result sent on a stream that then broke may not have arrived", **d.fields())
            else:
                self._log.error("result not delivered before shutdown", **d.fields())

    async def serve(self, address: str, stop: Optional[asyncio.Event] = None) -> None:
        """serve starts the executor and shuts it down gracefully when stop is set
        (or on SIGTERM/SIGINT when stop is None; a second signal exits at once)."""
        loop = asyncio.get_running_loop()
        signals = 0
        if stop is None:
            stop = asyncio.Event()

            def on_signal(sig: signal.Signals) -> None:
                nonlocal signals
                signals += 1
                if signals > 1:
                    # A second signal means "now": skip the graceful wait,
                    # and the interpreter's wait for handler threads.
                    self._log.warn("second signal, exiting at once", signal=sig.name)
                    os._exit(1)
                self._log.info("signal received, shutting down", signal=sig.name)
                stop.set()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig)
        try:
            await self.start(address)
        except Exception:
            await self.shutdown()
            raise
        await stop.wait()
        await self.shutdown()

    def run(self, address: str) -> None:
        """run serves on address until SIGTERM or SIGINT, then shuts down
        gracefully; it blocks, running its own event loop."""
        asyncio.run(self.serve(address))

    # -- the ExecutorService ---------------------------------------------

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> None:
        """_authenticate refuses a caller without the secret, when one is set,
        as the Go SDK does: metadata "authorization: Bearer <secret>"."""
        if self._secret_digest is None:
            return
        values = [v for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
        if len(values) != 1:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                'executor secret required: send metadata "authorization: Bearer <secret>"')
        scheme, _, given = values[0].strip().partition(" ")
        digest = hashlib.sha256(given.strip().encode()).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(digest, self._secret_digest):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong executor secret")

    def describe(self) -> executor_pb2.DescribeResponse:
        """describe is the answer to Describe."""
        return executor_pb2.DescribeResponse(
            executor_id=self.id, handlers=self.handler_names(), capacity=self.capacity,
            language=self.language, sdk_version=SDK_VERSION, protocol_version=PROTOCOL_VERSION,
            capabilities=list(CAPABILITIES), coordinators=self._targets,
            max_receive_bytes=MAX_RECEIVE_BYTES)

    async def _serve_session(self, context: grpc.aio.ServicerContext) -> None:
        """_serve_session takes one Execute stream.

        Pending results go first (a new stream is one of the ways a late
        result reaches the coordinator), then the first heartbeat at once
        rather than one interval later: a restarted coordinator relies on it
        to learn which attempts still run here before it gives up on them.
        """
        if self._closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "executor is shutting down")
        self._next_session += 1
        s = Session(self._next_session, context, self._deliveries, self._log, self._session_closed)
        self._sessions[s.id] = s
        s.log.info("execute stream opened")
        # The other coordinators' shares shrink now: tell them at once.
        for other in self._sessions.values():
            if other is not s:
                other.send_heartbeat(self._heartbeat)
        for d in self._deliveries.take_pending():
            s.send_result(d)
        s.send_heartbeat(self._heartbeat)
        s.start_heartbeats(self._heartbeat_interval, self._heartbeat)
        context.add_done_callback(lambda _ctx: s.broken())
        reader = asyncio.get_running_loop().create_task(self._read_loop(s, context))
        try:
            await s.write_loop()
        finally:
            reader.cancel()

    async def _read_loop(self, s: Session, context: grpc.aio.ServicerContext) -> None:
        try:
            while True:
                req = await context.read()
                if req is grpc.aio.EOF:
                    # The coordinator sends no more steps but still wants the
                    # results of those it sent: end the stream once they are
                    # out. A stream reset also reads as EOF, with the break
                    # reported just after: ending at once could take a break
                    # for a clean end and skip the resend of recent results,
                    # so a stream with nothing left to send ends after a grace.
                    s.half_closed = True
                    if s.inflight == 0:
                        asyncio.get_running_loop().call_later(HALF_CLOSE_GRACE, s.end)
                    return
                kind = req.WhichOneof("kind")
                if kind == "execute_step":
                    self._start_step(s, req.execute_step)
                elif kind == "cancel_step":
                    self._cancel_step(req.cancel_step)
                else:
                    s.log.warn("ignoring unknown execute request", kind=kind or "none")
        except asyncio.CancelledError:
            raise
        except Exception as err:  # pylint: disable=broad-except
            s.log.debug("execute stream read failed", err=str(err))
            s.broken()

    def _session_closed(self, s: Session) -> None:
        self._sessions.pop(s.id, None)
        for r in self._registrars:
            r.wake()

    def _has_session_from(self, coordinator_id: str) -> bool:
        """_has_session_from reports whether the coordinator named coordinator_id
        has a stream open here. A stream whose coordinator did not name itself
        counts for it when there is only one coordinator, so an older
        coordinator is not re-registered every interval."""
        for s in self._sessions.values():
            if s.coordinator_id == coordinator_id:
                return True
            if s.coordinator_id == "" and len(self._targets) == 1:
                return True
        return False

    def _newest_session(self) -> Optional[Session]:
        return self._sessions[max(self._sessions)] if self._sessions else None

    def _heartbeat(self) -> executor_pb2.Heartbeat:
        """_heartbeat lists every attempt running here, whichever stream sent it,
        sorted, and this coordinator's share of the capacity: split evenly
        between the connected coordinators (at least 1 each) so together they
        never send more than runs here."""
        running = sorted((r.step.task_id, r.step.step_id, r.step.attempt) for r in self._running.values())
        coordinators = len({s.coordinator_id for s in self._sessions.values()})
        return executor_pb2.Heartbeat(
            running=[executor_pb2.RunningStep(task_id=t, step_id=s, attempt=a) for t, s, a in running],
            running_step_ids=sorted({s for _, s, _ in running}),
            capacity=max(1, self.capacity // max(coordinators, 1)))

    # -- running steps ----------------------------------------------------

    def _start_step(self, session: Session, step: executor_pb2.ExecuteStep) -> None:
        """_start_step admits one ExecuteStep, or answers it at once with a
        failure when it cannot run here. Never blocks: the handler runs in its
        own task."""
        key = (step.step_id, step.attempt)
        log = self._log.with_(task_id=step.task_id, step_id=step.step_id, attempt=step.attempt,
                              step_name=step.step_name, handler=step.handler)
        if key in self._running:
            # The running attempt will answer; a second result could only confuse.
            log.warn("ignoring duplicate ExecuteStep for a running attempt")
            return
        fn = self._handlers.get(step.handler)
        deadline = deadline_of(step)
        refusal: Optional[executor_pb2.StepFailure] = None
        if self._shutting_down:
            refusal = executor_pb2.StepFailure(message="executor is shutting down",
                                               error_class=ErrorClass.SHUTTING_DOWN)
        elif fn is None:
            refusal = executor_pb2.StepFailure(
                message=f"unknown handler {step.handler!r}: executor {self.id} hosts "
                        f"{', '.join(self.handler_names()) or 'no handlers'}",
                error_class=ErrorClass.UNKNOWN_HANDLER, permanent=True)
        elif len(self._running) >= self.capacity:
            refusal = executor_pb2.StepFailure(
                message=f"executor {self.id} is at capacity ({self.capacity} steps running)",
                error_class=ErrorClass.OVER_CAPACITY)
        elif deadline is not None and deadline <= time.time():
            refusal = executor_pb2.StepFailure(
                message=f"deadline {step.deadline.ToJsonString()} passed before the step started",
                error_class=ErrorClass.DEADLINE_EXCEEDED)
        cancellation = Cancellation(self._loop)
        ctx = None
        if refusal is None:
            try:
                ctx = StepContext(step, cancellation, lambda p, m: self._progress(session, step, p, m))
            except PermanentError as err:
                refusal = failure_of(err)
        if refusal is not None:
            log.warn("refusing step", error_class=refusal.error_class, err=refusal.message)
            self._deliver(session, self._deliveries.create(self._result(step, failure=refusal)), from_run=False)
            return

        run = _Run(key, step, session, cancellation, log)
        if deadline is not None:
            # call_later on the monotonic clock: the deadline is wall time,
            # converted once here.
            run.deadline_timer = self._loop.call_later(
                max(0.0, deadline - time.time()), cancellation.fire, "deadline",
                f"deadline {step.deadline.ToJsonString()} exceeded")
        self._running[key] = run
        self._idle.clear()
        session.inflight += 1
        log.debug("step started")
        run.task = self._loop.create_task(self._execute(run, fn, ctx))

    def _cancel_step(self, c: executor_pb2.CancelStep) -> None:
        """_cancel_step cancels a running attempt; its handler's result is still sent."""
        run = self._running.get((c.step_id, c.attempt))
        if run is None:
            self._log.debug("cancel for a step not running here", task_id=c.task_id, step_id=c.step_id,
                            attempt=c.attempt, reason=c.reason)
            return
        run.log.info("cancelling step", reason=c.reason)
        run.cancellation.fire("cancel", f"cancelled by coordinator: {c.reason}" if c.reason
                              else "cancelled by coordinator")

    async def _execute(self, run: _Run, fn: Handler, ctx: StepContext) -> None:
        """_execute runs the handler and hands its result over. The slot is
        freed before the result goes out, so a coordinator that dispatches the
        next step as soon as it reads this result never finds the executor full."""
        started = time.monotonic()
        value: Any = None
        error: Optional[BaseException] = None
        try:
            if inspect.iscoroutinefunction(fn):
                value = await fn(ctx)
            else:
                value = await self._loop.run_in_executor(self._pool, fn, ctx)
                if inspect.isawaitable(value):
                    value = await value
        except BaseException as err:  # pylint: disable=broad-except
            # Whatever the handler raised, SystemExit and a stray
            # CancelledError included, the attempt answers exactly once and
            # frees its slot; it is not the executor's to exit on.
            error = err
        result = self._result_of(run, error, value)
        if run.deadline_timer is not None:
            run.deadline_timer.cancel()
        del self._running[run.key]
        if not self._running:
            self._idle.set()
        took_ms = round((time.monotonic() - started) * 1000)
        if result.HasField("failure"):
            f = result.failure
            run.log.warn("step failed", took_ms=took_ms, error_class=f.error_class, permanent=f.permanent,
                         err=f.message)
        else:
            run.log.info("step succeeded", took_ms=took_ms)
        self._deliver(run.session, self._deliveries.create(result), from_run=True)

    def _result_of(self, run: _Run, error: Optional[BaseException], value: Any) -> executor_pb2.StepResult:
        """_result_of turns what the handler returned or raised into the wire result."""
        if error is None:
            try:
                data = encode_results(value)
                if len(data) > self._max_result_bytes:
                    raise PermanentError(f"results are {len(data)} bytes, over the executor's limit of "
                                         f"{self._max_result_bytes} (max_result_bytes)",
                                         error_class=ErrorClass.RESULT_TOO_LARGE)
                return self._result(run.step, success=executor_pb2.StepSuccess(results=data))
            except PermanentError as err:
                error = err
        c = run.cancellation
        if c.fired and not _is_result_error(error):
            if c.kind == "deadline":
                # The handler's own class wins, as in the other executors.
                return self._result(run.step, failure=failure_of(error, ErrorClass.DEADLINE_EXCEEDED))
            # Whatever the handler made of it, the attempt was abandoned on
            # purpose: retryable, so a shutdown hands the step to another
            # executor, while a coordinator cancel settles the step anyway.
            message = c.message if isinstance(error, StepCancelled) else \
                f"{c.message} (handler raised: {message_of(error)})"
            return self._result(run.step, failure=executor_pb2.StepFailure(
                message=message, error_class=ErrorClass.CANCELLED))
        return self._result(run.step, failure=failure_of(error))

    def _result(self, step: executor_pb2.ExecuteStep, **outcome) -> executor_pb2.StepResult:
        return executor_pb2.StepResult(task_id=step.task_id, step_id=step.step_id, attempt=step.attempt,
                                       executor_id=self.id, **outcome)

    def _deliver(self, session: Session, d: Delivery, from_run: bool) -> None:
        """_deliver sends d on the stream the step came from, or parks it for
        redelivery when that stream is gone."""
        if from_run:
            session.inflight -= 1
        if session.closed:
            self._log.info("step result waits for redelivery", **d.fields())
        session.send_result(d)
        if session.half_closed and session.inflight == 0:
            session.end()

    def _progress(self, session: Session, step: executor_pb2.ExecuteStep, percent: float, message: str) -> None:
        try:
            p = min(100.0, max(0.0, float(percent)))
        except (TypeError, ValueError):
            p = 0.0
        if p != p:
            p = 0.0
        msg = executor_pb2.StepProgress(task_id=step.task_id, step_id=step.step_id, attempt=step.attempt,
                                        message=str(message or ""), percent=p)
        try:
            self._loop.call_soon_threadsafe(session.send_progress, msg)
        except RuntimeError:
            pass  # the loop is closed: the executor is gone, and progress is best effort


def _is_result_error(err: Optional[BaseException]) -> bool:
    """A handler that finished but whose value cannot be sent fails with that
    reason even if it was cancelled meanwhile: it did not stop because of the cancel."""
    return isinstance(err, PermanentError) and err.error_class in (ErrorClass.INVALID_RESULT,
                                                                    ErrorClass.RESULT_TOO_LARGE)


class _Servicer(executor_pb2_grpc.ExecutorServiceServicer):
    """_Servicer adapts the generated service to the Executor."""

    def __init__(self, executor: Executor):
        self._executor = executor

    async def Describe(self, request, context):  # noqa: N802 (generated name)
        await self._executor._authenticate(context)
        self._executor._log.debug("describe", coordinator_id=request.coordinator_id, peer=context.peer())
        return self._executor.describe()

    async def Execute(self, request_iterator, context):  # noqa: N802 (generated name)
        # pylint: disable=protected-access
        await self._executor._authenticate(context)
        await self._executor._serve_session(context)
