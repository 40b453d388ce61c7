"""How handler failures become StepFailure messages.

The coordinator cares about three things in a failure: is it permanent, did
the handler ask for a backoff, and what kind of error was it (error_class,
for people and dashboards). Everything else is the message.
"""

from __future__ import annotations

import datetime
from typing import Optional, Union

from .proto import duration_pb2, executor_pb2


class ErrorClass:
    """Error classes the executor itself reports in StepFailure.error_class.

    They are the strings the Go SDK and the Node executor use, so dashboards
    group failures the same way whichever language ran the step.
    """

    UNKNOWN_HANDLER = "UnknownHandler"
    """The step names a handler this executor does not host. Permanent."""
    CANCELLED = "Cancelled"
    """CancelStep or shutdown aborted the handler, and it failed. Retryable."""
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    """The step's deadline passed before or while it ran. Retryable."""
    OVER_CAPACITY = "ExecutorOverCapacity"
    """More steps arrived than the capacity reported in Describe. Retryable."""
    SHUTTING_DOWN = "ShuttingDown"
    """The executor is stopping and takes no new steps. Retryable."""
    INVALID_RESULT = "InvalidResult"
    """The handler's value cannot be encoded as JSON. Permanent."""
    RESULT_TOO_LARGE = "ResultTooLarge"
    """The handler's results exceed max_result_bytes. Permanent."""
    INVALID_REQUEST = "InvalidRequest"
    """The step's config, context or a parent's results are not JSON. Permanent."""


Backoff = Union[float, int, datetime.timedelta, None]


class StepError(Exception):
    """StepError is a handler failure that says how the coordinator should treat it.

    Any other exception a handler raises is retryable, classed by its type
    name. Raise PermanentError or RetryableError, or set the same attributes
    (permanent, backoff in seconds, error_class) on your own exception types.
    """

    permanent = False
    backoff: Optional[float] = None
    error_class: Optional[str] = None

    def __init__(self, message: str, *, error_class: Optional[str] = None,
                 permanent: bool = False, backoff: Backoff = None):
        super().__init__(message)
        self.permanent = permanent
        self.backoff = _seconds(backoff)
        if error_class:
            self.error_class = error_class


class PermanentError(StepError):
    """PermanentError means retrying cannot help (bad input, a refused payment):
    the step fails for good instead of being retried."""

    def __init__(self, message: str, *, error_class: Optional[str] = None):
        super().__init__(message, error_class=error_class, permanent=True)


class RetryableError(StepError):
    """RetryableError is a failure worth retrying. backoff (seconds or a
    timedelta), when given, is the wait the handler asks for, e.g. from a
    Retry-After header; the coordinator uses it instead of the step's backoff
    policy for that one retry."""

    def __init__(self, message: str, *, backoff: Backoff = None,
                 error_class: Optional[str] = None):
        super().__init__(message, error_class=error_class, backoff=backoff)


class StepCancelled(StepError):
    """StepCancelled is raised by StepContext.sleep, sleep_sync and
    check_cancelled once the attempt was abandoned. kind is "cancel" (the
    coordinator sent CancelStep), "shutdown" or "deadline"."""

    def __init__(self, kind: str, message: str):
        cls = ErrorClass.DEADLINE_EXCEEDED if kind == "deadline" else ErrorClass.CANCELLED
        super().__init__(message, error_class=cls)
        self.kind = kind


# Bounds the walk down a cause chain, which could be cyclic.
_MAX_CAUSE_DEPTH = 100


def failure_of(err: BaseException, fallback_class: str = "") -> executor_pb2.StepFailure:
    """failure_of turns what a handler raised into a StepFailure.

    Markers are read from the exception and its cause chain (__cause__, else
    __context__), outermost first: permanent anywhere makes it permanent; the
    first backoff and error_class found win. Without an explicit class,
    fallback_class is used, else the exception's type name.
    """
    permanent = False
    backoff: Optional[float] = None
    error_class = ""
    e: Optional[BaseException] = err
    for _ in range(_MAX_CAUSE_DEPTH):
        if e is None:
            break
        if getattr(e, "permanent", False) is True:
            permanent = True
        if backoff is None:
            b = _seconds_or_none(getattr(e, "backoff", None))
            if b is not None and b > 0:
                backoff = b
        if not error_class:
            c = getattr(e, "error_class", None)
            if isinstance(c, str) and c:
                error_class = c
        e = e.__cause__ or e.__context__
    failure = executor_pb2.StepFailure(
        message=message_of(err),
        error_class=error_class or fallback_class or type(err).__name__,
        permanent=permanent,
    )
    if backoff is not None:
        failure.backoff.CopyFrom(duration_from_seconds(backoff))
    return failure


def message_of(err: BaseException) -> str:
    """message_of is a readable message for any exception, never empty."""
    text = str(err)
    return text if text else type(err).__name__


def duration_from_seconds(seconds: float) -> duration_pb2.Duration:
    """duration_from_seconds builds a google.protobuf.Duration."""
    whole = max(0.0, float(seconds))
    secs = int(whole)
    nanos = min(999_999_999, round((whole - secs) * 1e9))
    return duration_pb2.Duration(seconds=secs, nanos=nanos)


def _seconds(value: Backoff) -> Optional[float]:
    s = _seconds_or_none(value)
    if value is not None and s is None:
        raise TypeError(f"backoff must be seconds (a number) or a timedelta, got {value!r}")
    if s is not None and s < 0:
        raise ValueError(f"backoff must not be negative, got {value!r}")
    return s


def _seconds_or_none(value: object) -> Optional[float]:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and value == value and value not in (float("inf"), float("-inf")):
        return float(value)
    return None
