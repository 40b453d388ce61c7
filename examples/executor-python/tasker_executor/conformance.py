"""The handlers `tasker executor-check` runs against an executor
(the contract is in the README). Registered only when asked, with
--conformance or TASKER_CONFORMANCE=1: they exist to be tested, not used.

Parameters come from the step's handler_config (a JSON object) or, when that
is empty, from the task's context. Unknown fields are ignored.
"""

from __future__ import annotations

import time
from typing import Any, Dict

from .errors import ErrorClass, PermanentError, StepError
from .wire import StepContext, decode_json

ECHO = "conformance.echo"
SLEEP = "conformance.sleep"
FAIL = "conformance.fail"
NAMES = (ECHO, SLEEP, FAIL)


def _params(ctx: StepContext) -> Dict[str, Any]:
    source = ctx.config if ctx.step.handler_config else ctx.context
    return source if isinstance(source, dict) else {}


def _number(params: Dict[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise PermanentError(f"{name} must be a number >= 0, got {value!r}", error_class="InvalidConfig")
    return value


async def echo(ctx: StepContext) -> Dict[str, Any]:
    """echo answers with everything the handler was given, as the handler sees it."""
    step = ctx.step
    out: Dict[str, Any] = {
        "task_id": step.task_id,
        "step_id": step.step_id,
        "step_name": step.step_name,
        "handler": step.handler,
        "attempt": step.attempt,
        "idempotency_key": ctx.idempotency_key,
        "namespace": step.namespace,
        "template_name": step.template_name,
        "template_version": step.template_version,
        "context": decode_json(step.context, "context"),
        "config": decode_json(step.handler_config, "handler_config"),
        "parent_results": dict(ctx.parents),
        "trace_context": dict(ctx.trace_context),
    }
    pad = _params(ctx).get("pad")
    if pad is not None:
        out["pad"] = "x" * int(_number({"pad": pad}, "pad", 0))
    return out


async def sleep(ctx: StepContext) -> Dict[str, Any]:
    """sleep waits ms milliseconds, stopping early (as a Cancelled or
    DeadlineExceeded failure) when the attempt is abandoned."""
    ms = _number(_params(ctx), "ms", 0)
    started = time.time_ns()
    await ctx.sleep(ms / 1000)
    return {"slept_ms": ms, "started_unix_nano": started, "ended_unix_nano": time.time_ns()}


async def fail(ctx: StepContext) -> None:
    """fail always fails with the message, class, permanence and backoff asked for."""
    params = _params(ctx)
    message = params.get("message", "conformance failure")
    error_class = params.get("class", "ConformanceError")
    permanent = params.get("permanent", False)
    backoff_ms = params.get("backoff_ms")
    raise StepError(
        str(message), error_class=str(error_class) or "ConformanceError", permanent=permanent is True,
        backoff=None if backoff_ms is None else _number(params, "backoff_ms", 0) / 1000)


def register(executor) -> None:
    """register adds the conformance handlers to executor."""
    executor.handle(ECHO, echo)
    executor.handle(SLEEP, sleep)
    executor.handle(FAIL, fail)


__all__ = ["NAMES", "register", "ErrorClass"]
