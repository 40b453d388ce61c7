"""The conformance and example handlers, the JSON and error helpers, and the
command line (a real process stopped by SIGTERM)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

from tests.harness import WAIT, AsyncTestCase, Stream, new_executor, step
from tasker_executor import PermanentError, RetryableError, StepError, conformance, handlers
from tasker_executor.errors import failure_of
from tasker_executor.wire import decode_json, encode_results

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Handlers(AsyncTestCase):
    async def asyncSetUp(self):
        self.executor = new_executor(heartbeat_interval=0.05)
        conformance.register(self.executor)
        handlers.register(self.executor)
        self.stream = Stream(await self.executor.start("127.0.0.1:0"))

    async def asyncTearDown(self):
        await self.executor.shutdown()
        await self.stream.close()

    async def run_step(self, **kw):
        await self.stream.send(step(**kw))
        return await self.stream.result()

    async def test_conformance_echo(self):
        r = await self.run_step(task_id="T", step_id="S", step_name="n", handler="conformance.echo", attempt=3,
                                context={"pad": 5}, parent_results={"p": {"x": 1}, "q": b""},
                                namespace="ns", template_name="tn", template_version="1.0.0",
                                idempotency_key="T/S/0", trace_context={"traceparent": "00-1-2-01"})
        got = json.loads(r.success.results)
        self.assertEqual(got, {
            "task_id": "T", "step_id": "S", "step_name": "n", "handler": "conformance.echo", "attempt": 3,
            "idempotency_key": "T/S/0", "namespace": "ns", "template_name": "tn", "template_version": "1.0.0",
            "context": {"pad": 5}, "config": None, "parent_results": {"p": {"x": 1}, "q": None},
            "trace_context": {"traceparent": "00-1-2-01"}, "pad": "xxxxx"})

    async def test_conformance_fail(self):
        r = await self.run_step(handler="conformance.fail", handler_config={
            "message": "boom", "class": "Custom", "permanent": True, "backoff_ms": 250})
        f = r.failure
        self.assertEqual((f.message, f.error_class, f.permanent), ("boom", "Custom", True))
        self.assertEqual(f.backoff.ToMilliseconds(), 250)
        r = await self.run_step(step_id="d", handler="conformance.fail")
        f = r.failure
        self.assertEqual((f.message, f.error_class, f.permanent, f.HasField("backoff")),
                         ("conformance failure", "ConformanceError", False, False))
        r = await self.run_step(step_id="bad", handler="conformance.fail", handler_config={"permanent": "yes"})
        self.assertEqual((r.failure.error_class, r.failure.permanent), ("InvalidParams", True))

    async def test_conformance_sleep(self):
        r = await self.run_step(handler="conformance.sleep", handler_config={"ms": 20})
        got = json.loads(r.success.results)
        self.assertEqual(got["slept_ms"], 20)
        self.assertGreaterEqual(got["ended_unix_nano"] - got["started_unix_nano"], 20_000_000)

    async def test_examples(self):
        r = await self.run_step(step_id="rev", handler="py_reverse", context={"text": "héllo"},
                                parent_results={"up": {"upper": "HÉLLO"}})
        self.assertEqual(json.loads(r.success.results), {"reversed": "olléh", "parents": {"up": {"upper": "HÉLLO"}}})
        r = await self.run_step(step_id="sum", handler="py_sum",
                                parent_results={"a": {"n": [1, 2.5, "4", True]}, "b": {"attempt": 2}, "c": None})
        self.assertEqual(json.loads(r.success.results), {"sum": 5.5})
        r = await self.run_step(step_id="fl", handler="py_flaky", attempt=1,
                                handler_config={"fail_times": 1, "backoff_ms": 10})
        self.assertEqual((r.failure.error_class, r.failure.permanent, r.failure.backoff.ToMilliseconds()),
                         ("FlakyFailure", False, 10))
        r = await self.run_step(step_id="fl", handler="py_flaky", attempt=2, handler_config={"fail_times": 1})
        self.assertEqual(json.loads(r.success.results), {"attempt": 2})
        r = await self.run_step(step_id="sl", handler="py_sleep", handler_config={"ms": -1})
        self.assertEqual((r.failure.error_class, r.failure.permanent), ("InvalidConfig", True))
        r = await self.run_step(step_id="rv", handler="py_reverse", context={})
        self.assertEqual((r.failure.error_class, r.failure.permanent), ("InvalidContext", True))


class Wire(unittest.TestCase):
    def test_json(self):
        self.assertIsNone(decode_json(b"", "context"))
        for bad in (b"{", b"NaN", b"\xff"):
            with self.assertRaises(PermanentError) as cm:
                decode_json(bad, "context")
            self.assertEqual(cm.exception.error_class, "InvalidRequest")
            self.assertIn("context", str(cm.exception))
        self.assertEqual(encode_results(None), b"{}")
        self.assertEqual(encode_results({"é": [1, None]}), '{"é":[1,null]}'.encode())
        self.assertEqual(encode_results(b' {"a" : 1} '), b' {"a" : 1} ')
        loop = []
        loop.append(loop)
        for bad in (float("nan"), {1}, loop, b"{", "\ud800"):
            with self.assertRaises(PermanentError) as cm:
                encode_results(bad)
            self.assertEqual(cm.exception.error_class, "InvalidResult")

    def test_failure_of(self):
        f = failure_of(RetryableError("slow", backoff=datetime.timedelta(milliseconds=1500)))
        self.assertEqual((f.error_class, f.permanent, f.backoff.seconds, f.backoff.nanos),
                         ("RetryableError", False, 1, 500_000_000))
        f = failure_of(StepError("x", error_class="Mine", permanent=True))
        self.assertEqual((f.error_class, f.permanent), ("Mine", True))

        class Marked(Exception):
            permanent = True
            error_class = "Marked"
        try:
            try:
                raise Marked("inner")
            except Marked as inner:
                raise RuntimeError("outer") from inner
        except RuntimeError as err:
            f = failure_of(err)
        self.assertEqual((f.message, f.error_class, f.permanent), ("outer", "Marked", True))
        self.assertEqual(failure_of(ValueError()).message, "ValueError")
        with self.assertRaises(TypeError):
            RetryableError("x", backoff="soon")


class CommandLine(unittest.TestCase):
    def test_taken_listen_address_fails_naming_the_flag(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            proc = subprocess.run([sys.executable, "-m", "tasker_executor", "--listen", f"127.0.0.1:{port}",
                                   "--coordinator", ""], cwd=HERE, capture_output=True, text=True, timeout=WAIT)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("--listen", proc.stderr)
        self.assertIn('msg="cannot serve"', proc.stderr)

    def test_bad_flag_is_named(self):
        proc = subprocess.run([sys.executable, "-m", "tasker_executor", "--capacity", "0"],
                              cwd=HERE, capture_output=True, text=True, timeout=WAIT)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("--capacity must be a positive whole number", proc.stderr)

    def test_sigterm_delivers_running_result(self):
        env = dict(os.environ, TASKER_CONFORMANCE="1")
        # The log goes to a file, not a pipe: a pipe nobody reads while the
        # test talks gRPC could fill and block the executor's writes.
        with tempfile.TemporaryFile("w+") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "tasker_executor", "--listen", "127.0.0.1:0",
                                     "--coordinator", "", "--id", "py-cli", "--log-level", "debug",
                                     "--heartbeat-interval-ms", "20"],
                                    cwd=HERE, env=env, stderr=log_file)

            def log() -> str:
                log_file.seek(0)
                return log_file.read()
            try:
                address = None
                deadline = time.monotonic() + WAIT
                while address is None and time.monotonic() < deadline and proc.poll() is None:
                    m = re.search(r'msg="executor serving".* address=(\S+)', log())
                    if m:
                        address = m.group(1)
                    else:
                        time.sleep(0.01)
                self.assertIsNotNone(address, log())
                asyncio.run(self._sleep_through_sigterm(proc, address))
                try:
                    proc.wait(timeout=WAIT)
                except subprocess.TimeoutExpired:
                    self.fail(f"executor still running {WAIT}s after SIGTERM:\n{log()}")
                self.assertEqual(proc.returncode, 0, log())
                self.assertIn('msg="executor stopped"', log())
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    async def _sleep_through_sigterm(self, proc, address):
        s = Stream(address)
        try:
            await s.send(step(step_id="nap", handler="conformance.sleep", handler_config={"ms": 300}))
            # Heartbeats list the step once it runs; shutdown must wait for it.
            await s.heartbeat_where(lambda h: [x.step_id for x in h.running] == ["nap"])
            proc.send_signal(signal.SIGTERM)
            r = await s.result()
            self.assertEqual(r.step_id, "nap")
            self.assertTrue(r.HasField("success"), r)
            # Graceful shutdown ends the stream cleanly; closing it from
            # here first would be a break, after which the executor cannot
            # know the result arrived and waits its delivery timeout.
            self.assertEqual(await s.wait_ended(), grpc.StatusCode.OK)
        finally:
            await s.close()


if __name__ == "__main__":
    unittest.main()
