"""Command line: python3 -m tasker_executor [flags].

Parses flags, hosts the example handlers (and the conformance handlers when
asked), serves until SIGTERM or SIGINT, then shuts down gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from . import conformance, handlers
from .executor import (DEFAULT_CAPACITY, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_SHUTDOWN_TIMEOUT, MIN_SECRET_LENGTH,
                       Executor)
from .log import LEVELS, new_logger


def _positive_int(flag: str):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"--{flag} must be a positive whole number, got {text!r}")
        return int(text)
    return parse


def parse_args(argv):
    """parse_args reads the command line; bad values exit with status 2 naming the flag."""
    p = argparse.ArgumentParser(
        prog="python3 -m tasker_executor",
        description="Runs a Tasker executor hosting py_reverse, py_sum, py_flaky and py_sleep.")
    p.add_argument("--listen", default="127.0.0.1:7091", metavar="HOST:PORT", help="address to serve on")
    p.add_argument("--coordinator", action="append", metavar="HOST:PORT",
                   help="coordinator to register with (default $TASKER_COORDINATOR or 127.0.0.1:7070; "
                        "'' to not register); repeat it for coordinators sharing one database")
    p.add_argument("--advertise", default="", metavar="HOST:PORT",
                   help="address the coordinator should dial (default: the listen address)")
    p.add_argument("--id", default=None, help="executor id (default: random)")
    p.add_argument("--capacity", type=_positive_int("capacity"), default=DEFAULT_CAPACITY,
                   help=f"steps run at once (default {DEFAULT_CAPACITY})")
    p.add_argument("--shutdown-timeout-ms", type=_positive_int("shutdown-timeout-ms"),
                   default=int(DEFAULT_SHUTDOWN_TIMEOUT * 1000),
                   help="on SIGTERM, wait this long for running steps before cancelling them")
    p.add_argument("--heartbeat-interval-ms", type=_positive_int("heartbeat-interval-ms"),
                   default=int(DEFAULT_HEARTBEAT_INTERVAL * 1000), help="heartbeat period")
    p.add_argument("--conformance", action="store_true",
                   default=os.environ.get("TASKER_CONFORMANCE", "") not in ("", "0", "false"),
                   help="also host conformance.echo, conformance.sleep and conformance.fail, the handlers "
                        "`tasker executor-check` runs (default: $TASKER_CONFORMANCE=1)")
    p.add_argument("--executor-secret", default=os.environ.get("TASKER_EXECUTOR_SECRET", ""), metavar="SECRET",
                   help='secret coordinators must send as "authorization: Bearer <secret>" on Describe and '
                        "Execute (at least 16 characters); prefer the env TASKER_EXECUTOR_SECRET")
    p.add_argument("--token", default=os.environ.get("TASKER_TOKEN", ""),
                   help="bearer token sent on RegisterExecutor and ReportStepResult, for a coordinator that "
                        "requires one; prefer the env TASKER_TOKEN")
    p.add_argument("--log-level", default="info", choices=sorted(LEVELS), help="log level")
    args = p.parse_args(argv)
    if args.coordinator is None:
        args.coordinator = [os.environ.get("TASKER_COORDINATOR", "127.0.0.1:7070")]
    return args


def main(argv=None) -> int:
    """main runs the executor until a signal; it returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.executor_secret and len(args.executor_secret) < MIN_SECRET_LENGTH:
        print(f"python3 -m tasker_executor: --executor-secret must be at least {MIN_SECRET_LENGTH} characters "
              f"(shorter ones are guessable), got {len(args.executor_secret)}", file=sys.stderr)
        return 2
    log = new_logger(args.log_level)
    try:
        executor = Executor(id=args.id, capacity=args.capacity, coordinators=args.coordinator,
                            advertise=args.advertise, logger=log,
                            shutdown_timeout=args.shutdown_timeout_ms / 1000,
                            heartbeat_interval=args.heartbeat_interval_ms / 1000,
                            secret=args.executor_secret, token=args.token)
    except ValueError as err:
        print(f"python3 -m tasker_executor: {err}", file=sys.stderr)
        return 2
    handlers.register(executor)
    if args.conformance:
        conformance.register(executor)
    try:
        asyncio.run(executor.serve(args.listen))
    except OSError as err:
        log.error("cannot serve", listen=args.listen, err=str(err))
        return 1
    # Abandoned handlers lost their results (logged): not a clean stop.
    return 1 if executor.abandoned else 0


if __name__ == "__main__":
    status = main()
    # Everything is delivered or logged by now. Exit without the
    # interpreter's teardown: grpc's can hang at exit (seen after a failed
    # bind, now and then, on a loaded machine), and so would the worker
    # threads of abandoned handlers.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
