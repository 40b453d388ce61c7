"""tasker_executor: a Tasker executor in Python.

    from tasker_executor import Executor, PermanentError, RetryableError

    executor = Executor(coordinators=["127.0.0.1:7070"], capacity=8)

    @executor.handler("charge")
    async def charge(ctx):
        ...
        return {"charged": True}

    executor.run("127.0.0.1:7300")

See README.md in this directory and docs/executor-protocol.md for the protocol.
"""

from .errors import ErrorClass, PermanentError, RetryableError, StepCancelled, StepError
from .executor import CAPABILITIES, PROTOCOL_VERSION, SDK_VERSION, Executor
from .log import new_logger
from .wire import Item, StepContext


__all__ = [
    "CAPABILITIES",
    "ErrorClass",
    "Executor",
    "Item",
    "PROTOCOL_VERSION",
    "PermanentError",
    "RetryableError",
    "SDK_VERSION",
    "StepCancelled",
    "StepContext",
    "StepError",
    "new_logger",
]
