"""The generated protobuf and gRPC modules for tasker.executor.v1 and
tasker.coordinator.v1.

They live in ../gen exactly as protoc wrote them (scripts/gen.sh), with the
absolute imports protoc emits ("from tasker.executor.v1 import ..."), so that
directory goes on sys.path rather than the generated files being edited.
"""

import os
import sys

_GEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gen")
if _GEN not in sys.path:
    sys.path.insert(0, _GEN)

# pylint: disable=wrong-import-position
from google.protobuf import duration_pb2, timestamp_pb2  # noqa: E402
from tasker.coordinator.v1 import coordinator_pb2, coordinator_pb2_grpc  # noqa: E402
from tasker.executor.v1 import executor_pb2, executor_pb2_grpc  # noqa: E402

__all__ = [
    "coordinator_pb2",
    "coordinator_pb2_grpc",
    "duration_pb2",
    "executor_pb2",
    "executor_pb2_grpc",
    "timestamp_pb2",
]
