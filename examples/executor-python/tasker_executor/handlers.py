"""Example handlers, the Python counterparts of the Go built-ins and the Node
examples; the end-to-end test (e2e/languages_test.go) runs them next to both.

py_reverse and py_flaky are plain functions (they run on a worker thread),
py_sum and py_sleep are coroutines (they run on the event loop): both kinds
are exercised.
"""

from __future__ import annotations

import math
from typing import Any, Dict

from .errors import PermanentError, StepError

CLASS_INVALID_CONFIG = "InvalidConfig"
CLASS_INVALID_CONTEXT = "InvalidContext"
CLASS_FLAKY_FAILURE = "FlakyFailure"


def _config_number(ctx, name: str, default: float) -> float:
    value = ctx.config.get(name) if isinstance(ctx.config, dict) else None
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
        raise PermanentError(f"config.{name}: want a number >= 0, got {value!r}", error_class=CLASS_INVALID_CONFIG)
    return value


def py_reverse(ctx) -> Dict[str, Any]:
    """py_reverse: {"reversed": <context.text reversed>, "parents": {<parent>: <results>}}."""
    text = ctx.context.get("text") if isinstance(ctx.context, dict) else None
    if not isinstance(text, str):
        raise PermanentError(f"context.text: want a string, got {text!r}", error_class=CLASS_INVALID_CONTEXT)
    return {"reversed": text[::-1], "parents": dict(ctx.parents)}


def _numbers(value: Any) -> float:
    # bool is an int in Python, but true and false are not JSON numbers.
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return sum((_numbers(v) for v in value.values()), 0.0)
    if isinstance(value, list):
        return sum((_numbers(v) for v in value), 0.0)
    return 0.0


async def py_sum(ctx) -> Dict[str, Any]:
    """py_sum: {"sum": N}, N the sum of every JSON number in every parent's
    results at any depth (the rule of the Node executor's node_sum)."""
    total = sum((_numbers(ctx.parents[name]) for name in sorted(ctx.parents)), 0.0)
    return {"sum": int(total) if total.is_integer() and abs(total) < 2**53 else total}


def py_flaky(ctx) -> Dict[str, Any]:
    """py_flaky fails with class FlakyFailure while attempt <= config.fail_times
    (retryably, asking for config.backoff_ms if set; permanently when
    config.permanent), then answers {"attempt": N}."""
    fail_times = _config_number(ctx, "fail_times", 0)
    backoff_ms = _config_number(ctx, "backoff_ms", 0)
    permanent = ctx.config.get("permanent", False) if isinstance(ctx.config, dict) else False
    if not isinstance(permanent, bool):
        raise PermanentError(f"config.permanent: want true or false, got {permanent!r}",
                             error_class=CLASS_INVALID_CONFIG)
    if ctx.attempt > fail_times:
        return {"attempt": ctx.attempt}
    raise StepError(f"py_flaky: attempt {ctx.attempt} fails on purpose (fail_times {fail_times:g})",
                    error_class=CLASS_FLAKY_FAILURE, permanent=permanent,
                    backoff=backoff_ms / 1000 if backoff_ms else None)


async def py_sleep(ctx) -> Dict[str, Any]:
    """py_sleep waits config.ms milliseconds, then {"slept_ms": ms}; it stops
    early when the step is cancelled or its deadline passes."""
    ms = _config_number(ctx, "ms", 0)
    await ctx.sleep(ms / 1000)
    return {"slept_ms": ms}


HANDLERS = {"py_flaky": py_flaky, "py_reverse": py_reverse, "py_sleep": py_sleep, "py_sum": py_sum}


def register(executor) -> None:
    """register adds every example handler to executor."""
    for name, fn in HANDLERS.items():
        executor.handle(name, fn)
