"""The handlers `tasker executor-check` runs against an executor
(the contract is in the README). Registered only when asked, with
--conformance or TASKER_CONFORMANCE=1: they exist to be tested, not used.

Parameters come from the step's handler_config (a JSON object) or, when that
is empty, from the task's context. Unknown fields are ignored.
"""

from __future__ import annotations

import time
from typing import Any, Dict

from .errors import PermanentError, StepError
from .wire import StepContext, decode_json

ECHO = "conformance.echo"
SLEEP = "conformance.sleep"
FAIL = "conformance.fail"
NAMES = (ECHO, SLEEP, FAIL)


CLASS_INVALID_PARAMS = "InvalidParams"
"""CLASS_INVALID_PARAMS is the class of a step whose parameters do not parse
(permanent: the same parameters fail again); the Go SDK's too."""

# Bounds pad, so a typo cannot make the executor build a huge string.
_MAX_PAD = 1 << 30


def _params(ctx: StepContext) -> Dict[str, Any]:
    if ctx.step.handler_config.strip():
        source, field = ctx.config, "handler_config"
    else:
        source, field = decode_json(ctx.step.context, "context"), "context"
    if source is None:
        return {}
    if not isinstance(source, dict):
        raise PermanentError(f"{field}: want a JSON object, got {source!r:.80}", error_class=CLASS_INVALID_PARAMS)
    return source


def _number(params: Dict[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value == float("inf"):
        raise PermanentError(f"{name}: want a non-negative number, got {value!r}", error_class=CLASS_INVALID_PARAMS)
    return value


def _typed(params: Dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise PermanentError(f"{name}: want a {kind.__name__}, got {value!r:.80}", error_class=CLASS_INVALID_PARAMS)
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
    pad = _number(_params(ctx), "pad", 0)
    if pad > _MAX_PAD:
        raise PermanentError(f"pad: {pad} is too large", error_class=CLASS_INVALID_PARAMS)
    if pad:
        out["pad"] = "x" * int(pad)
    return out


async def sleep(ctx: StepContext) -> Dict[str, Any]:
    """sleep waits ms milliseconds, stopping early (as a Cancelled or
    DeadlineExceeded failure) when the attempt is abandoned."""
    ms = _number(_params(ctx), "ms", 0)
    if ms > 1e12:
        raise PermanentError(f"ms: {ms} is too large", error_class=CLASS_INVALID_PARAMS)
    started = time.time_ns()
    await ctx.sleep(ms / 1000)
    return {"slept_ms": ms, "started_unix_nano": started, "ended_unix_nano": time.time_ns()}


async def fail(ctx: StepContext) -> None:
    """fail always fails with the message, class, permanence and backoff asked for."""
    params = _params(ctx)
    message = _typed(params, "message", str, "conformance failure")
    error_class = _typed(params, "class", str, "ConformanceError")
    permanent = _typed(params, "permanent", bool, False)
    backoff_ms = _number(params, "backoff_ms", 0)
    raise StepError(message, error_class=error_class, permanent=permanent,
                    backoff=backoff_ms / 1000 if backoff_ms else None)


def register(executor) -> None:
    """register adds the conformance handlers to executor."""
    executor.handle(ECHO, echo)
    executor.handle(SLEEP, sleep)
    executor.handle(FAIL, fail)


__all__ = ["CLASS_INVALID_PARAMS", "NAMES", "register"]
