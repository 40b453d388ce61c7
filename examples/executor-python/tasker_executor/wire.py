"""Conversions between the proto's bytes and Timestamp fields and what
handlers see, and the context a handler gets for one attempt.

JSON travels as UTF-8 bytes in the proto (handler_config, context,
parent_results, results): the coordinator stores and forwards them
untouched, so every language agrees on the exact text.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional

from .errors import ErrorClass, PermanentError, StepCancelled
from .proto import executor_pb2, timestamp_pb2


def _reject_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python's parser accepts them unless told.
    raise ValueError(f"{name} is not valid JSON")


def decode_json(data: bytes, field: str) -> Any:
    """decode_json parses a JSON bytes field; empty bytes give None.

    Bytes that are not UTF-8 JSON raise a permanent InvalidRequest error:
    sending the same bytes again cannot fix them.
    """
    if not data:
        return None
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise PermanentError(f"{field} is not valid JSON: {err}",
                             error_class=ErrorClass.INVALID_REQUEST) from err


def encode_results(value: Any) -> bytes:
    """encode_results turns a handler's return value into results bytes.

    None (a handler that returns nothing) becomes {}; bytes are taken as JSON
    text, checked and passed through byte for byte; anything else goes
    through json.dumps. Values JSON cannot carry (sets, objects, NaN, cycles,
    lone surrogates) raise a permanent InvalidResult error: the same code
    would return the same value on a retry.
    """
    if value is None:
        return b"{}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if not data:
            return b"{}"
        try:
            json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise PermanentError(f"results bytes are not valid JSON: {err}",
                                 error_class=ErrorClass.INVALID_RESULT) from err
        return data
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as err:
        raise PermanentError(f"results cannot be encoded as JSON: {err}",
                             error_class=ErrorClass.INVALID_RESULT) from err


def deadline_of(step: executor_pb2.ExecuteStep) -> Optional[float]:
    """deadline_of is the step's deadline as a Unix time in seconds, or None when unset."""
    if not step.HasField("deadline"):
        return None
    return step.deadline.seconds + step.deadline.nanos / 1e9


def timestamp(unix: float) -> timestamp_pb2.Timestamp:
    """timestamp builds a google.protobuf.Timestamp from a Unix time in seconds."""
    secs = int(unix // 1)
    return timestamp_pb2.Timestamp(seconds=secs, nanos=int(round((unix - secs) * 1e9)) % 1_000_000_000)


class Cancellation:
    """Cancellation is one attempt's cancellation handle.

    It fires once, on CancelStep, at the deadline or at shutdown, always from
    the executor's event loop; handlers read it from the loop (async
    handlers) or from a worker thread (plain functions), so it keeps both a
    threading.Event and an asyncio.Event.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._thread_event = threading.Event()
        self._async_event = asyncio.Event()
        self.kind: Optional[str] = None
        self.message: Optional[str] = None

    def fire(self, kind: str, message: str) -> None:
        """fire cancels the attempt; the first reason given wins. Loop thread only."""
        if self.kind is not None:
            return
        self.kind, self.message = kind, message
        self._thread_event.set()
        self._async_event.set()

    @property
    def fired(self) -> bool:
        """fired reports whether the attempt was cancelled."""
        return self._thread_event.is_set()

    def error(self) -> StepCancelled:
        """error is the exception a handler raises to stop after a cancel."""
        return StepCancelled(self.kind or "cancel", self.message or "cancelled")

    def wait_sync(self, seconds: Optional[float]) -> bool:
        """wait_sync blocks up to seconds; True when cancelled meanwhile."""
        return self._thread_event.wait(seconds)

    async def wait(self, seconds: Optional[float]) -> bool:
        """wait sleeps up to seconds on the loop; True when cancelled meanwhile."""
        if self.fired:
            return True
        try:
            await asyncio.wait_for(self._async_event.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return self.fired


class Item:
    """Item is the list element a for_each instance runs on: value (parsed
    JSON), index (from 0) and count (the list's length)."""

    __slots__ = ("index", "count", "value")

    def __init__(self, index: int, count: int, value: Any):
        self.index = index
        self.count = count
        self.value = value

    def __repr__(self) -> str:
        return f"Item(index={self.index}, count={self.count}, value={self.value!r})"


class StepContext:
    """StepContext is what a handler receives for one attempt of one step.

    Attributes: task_id, step_id, step_name, handler, attempt (from 1),
    deadline (an aware datetime, or None), namespace, template_name,
    template_version, idempotency_key (the same for every attempt of one run
    of the step, new after a rerun; "" from older coordinators), config and
    context (parsed JSON; {} when not sent), parents (parent step name ->
    parsed results; None for a skipped parent), trace_context (W3C keys such
    as "traceparent"), item (an Item for an instance of a for_each step,
    else None), and step (the ExecuteStep message itself, for the raw bytes).

    Cancellation: cancelled, cancel_reason, check_cancelled(),
    await sleep(seconds), sleep_sync(seconds). Progress: progress(percent, message).
    """

    def __init__(self, step: executor_pb2.ExecuteStep, cancellation: Cancellation,
                 progress: Callable[[float, str], None]):
        parents: Dict[str, Any] = {}
        for name in sorted(step.parent_results):
            parents[name] = decode_json(step.parent_results[name], f"parent_results[{json.dumps(name)}]")
        config = decode_json(step.handler_config, "handler_config")
        context = decode_json(step.context, "context")
        deadline = deadline_of(step)
        item = None
        if step.HasField("for_each"):
            item = Item(step.for_each.index, step.for_each.count,
                        decode_json(step.for_each.item, "for_each.item"))

        self.step = step
        self.item = item
        self.task_id = step.task_id
        self.step_id = step.step_id
        self.step_name = step.step_name
        self.handler = step.handler
        self.attempt = step.attempt
        self.deadline = (None if deadline is None
                         else datetime.datetime.fromtimestamp(deadline, datetime.timezone.utc))
        self.namespace = step.namespace
        self.template_name = step.template_name
        self.template_version = step.template_version
        self.idempotency_key = step.idempotency_key
        self.config = {} if config is None else config
        self.context = {} if context is None else context
        self.parents: Mapping[str, Any] = parents
        self.trace_context: Mapping[str, str] = dict(step.trace_context)
        self._cancellation = cancellation
        self._progress = progress

    @property
    def input(self) -> Any:
        """input is the task's context (an alias of context)."""
        return self.context

    @property
    def cancelled(self) -> bool:
        """cancelled reports whether the attempt was abandoned (CancelStep, deadline or shutdown)."""
        return self._cancellation.fired

    @property
    def cancel_reason(self) -> Optional[str]:
        """cancel_reason says why the attempt was abandoned, or None."""
        return self._cancellation.message

    def check_cancelled(self) -> None:
        """check_cancelled raises StepCancelled if the attempt was abandoned."""
        if self._cancellation.fired:
            raise self._cancellation.error()

    async def sleep(self, seconds: float) -> None:
        """sleep waits seconds on the event loop, raising StepCancelled as soon as the attempt is abandoned."""
        if await self._cancellation.wait(max(0.0, seconds)):
            raise self._cancellation.error()

    def sleep_sync(self, seconds: float) -> None:
        """sleep_sync is sleep for plain (threaded) handlers: it blocks the calling thread."""
        if self._cancellation.wait_sync(max(0.0, seconds)):
            raise self._cancellation.error()

    def progress(self, percent: float, message: str = "") -> None:
        """progress reports how far the step has come (0-100), best effort; callable from any thread."""
        self._progress(percent, message)


def now_unix_nano() -> int:
    """now_unix_nano is the wall clock in nanoseconds since the Unix epoch."""
    return time.time_ns()
