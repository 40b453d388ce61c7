"""The executor over real gRPC on 127.0.0.1, with the test as coordinator."""

from __future__ import annotations

import asyncio
import json
import time
import unittest

import grpc

from tests.harness import WAIT, AsyncTestCase, FakeCoordinator, Stream, cancel, new_executor, step
from tasker_executor import PermanentError, RetryableError, conformance
from tasker_executor.proto import executor_pb2, executor_pb2_grpc


class Gate:
    """Gate is a handler that blocks until released, and says when it started."""

    def __init__(self):
        self.started: asyncio.Queue = asyncio.Queue()
        self.release = asyncio.Event()

    async def __call__(self, ctx):
        self.started.put_nowait(ctx)
        await self.release.wait()
        return {"released": ctx.step_id}

    async def wait_started(self):
        return await asyncio.wait_for(self.started.get(), WAIT)


class ExecutorTest(AsyncTestCase):
    """Base: an executor with test handlers, served on a free port."""

    executor_args: dict = {}

    async def asyncSetUp(self):
        self.gate = Gate()
        self.executor = new_executor(id="py-test", **self.executor_args)
        self.executor.handle("gate", self.gate)

        async def echo(ctx):
            return {"context": ctx.context, "config": ctx.config, "parents": dict(ctx.parents),
                    "attempt": ctx.attempt, "idempotency_key": ctx.idempotency_key,
                    "trace_context": dict(ctx.trace_context),
                    "item": None if ctx.item is None else [ctx.item.index, ctx.item.count, ctx.item.value]}
        self.executor.handle("echo", echo)

        async def size(ctx):
            return {"bytes": len(ctx.context["pad"])}
        self.executor.handle("size", size)

        def blocking(ctx):
            # A plain function runs on a worker thread and may block.
            ctx.progress(50, "half way")
            ctx.sleep_sync(float(ctx.config.get("s", 0)))
            return {"thread": True}
        self.executor.handle("blocking", blocking)

        async def fails(ctx):
            kind = ctx.config["kind"]
            if kind == "retryable":
                raise RetryableError("try later", backoff=1.5, error_class="RateLimited")
            if kind == "permanent":
                raise PermanentError("declined", error_class="CardDeclined")
            if kind == "plain":
                raise KeyError("missing")
            if kind == "cause":
                try:
                    raise PermanentError("root")
                except PermanentError as err:
                    raise ValueError("wrapped") from err
            if kind == "exit":
                raise SystemExit(3)
            if kind == "not_json":
                return {1, 2}
            if kind == "big":
                return "x" * 2000
            if kind == "bytes":
                return b'{"raw": 1}'
            return None
        self.executor.handle("fails", fails)
        conformance.register(self.executor)
        self.address = await self.executor.start("127.0.0.1:0")
        self.streams = []

    async def asyncTearDown(self):
        self.gate.release.set()
        await self.executor.shutdown()
        for s in self.streams:
            await s.close()

    def open(self, coordinator_id="test-coordinator") -> Stream:
        s = Stream(self.address, coordinator_id)
        self.streams.append(s)
        return s


class DescribeAndRun(ExecutorTest):
    executor_args = {"capacity": 3, "max_result_bytes": 1000, "heartbeat_interval": 0.05}

    async def test_describe(self):
        async with grpc.aio.insecure_channel(self.address) as ch:
            d = await executor_pb2_grpc.ExecutorServiceStub(ch).Describe(
                executor_pb2.DescribeRequest(coordinator_id="c"))
        self.assertEqual(d.executor_id, "py-test")
        self.assertEqual(d.language, "python")
        self.assertEqual(d.protocol_version, 1)
        self.assertEqual(d.capacity, 3)
        self.assertEqual(list(d.capabilities), ["cancel", "heartbeat", "progress", "report"])
        self.assertEqual(list(d.handlers), sorted(d.handlers))
        self.assertIn("conformance.echo", d.handlers)
        self.assertEqual(d.max_receive_bytes, 64 << 20)

    async def test_request_over_grpc_default_is_accepted(self):
        # 6 MiB of context: over gRPC's 4 MiB default, under the declared
        # 64 MiB; the handler answers with its size only.
        s = self.open()
        await s.heartbeat()
        await s.send(step("t8", "s8", 1, "size", context={"pad": "x" * (6 << 20)}))
        r = await s.result()
        self.assertEqual(json.loads(r.success.results), {"bytes": 6 << 20})

    async def test_step_result_echoes_and_passes_json_through(self):
        s = self.open()
        await s.heartbeat()
        await s.send(step("t9", "s9", 4, "echo", context={"text": "héllo"}, handler_config=b"",
                          parent_results={"a": b'{"n": 1.50}', "skipped": b"null"},
                          idempotency_key="t9/s9/0", trace_context={"traceparent": "00-abc-def-01"}))
        r = await s.result()
        self.assertEqual((r.task_id, r.step_id, r.attempt, r.executor_id), ("t9", "s9", 4, "py-test"))
        got = json.loads(r.success.results)
        self.assertEqual(got["context"], {"text": "héllo"})
        self.assertEqual(got["config"], {})
        self.assertEqual(got["parents"], {"a": {"n": 1.5}, "skipped": None})
        self.assertEqual(got["idempotency_key"], "t9/s9/0")
        self.assertEqual(got["trace_context"], {"traceparent": "00-abc-def-01"})
        self.assertIsNone(got["item"])

    async def test_for_each_item(self):
        s = self.open()
        await s.send(step(step_id="i", handler="echo",
                          for_each=executor_pb2.ForEachItem(index=2, count=5, item=b'{"sku": "a"}')))
        self.assertEqual(json.loads((await s.result()).success.results)["item"], [2, 5, {"sku": "a"}])

    async def test_failures_carry_class_permanence_and_backoff(self):
        s = self.open()
        cases = {
            "retryable": ("RateLimited", False, 1.5),
            "permanent": ("CardDeclined", True, None),
            "plain": ("KeyError", False, None),
            "cause": ("ValueError", True, None),
            "exit": ("SystemExit", False, None),
            "not_json": ("InvalidResult", True, None),
            "big": ("ResultTooLarge", True, None),
        }
        for i, (kind, want) in enumerate(cases.items()):
            with self.subTest(kind=kind):
                await s.send(step(step_id=f"f{i}", handler="fails", handler_config={"kind": kind}))
                r = await s.result()
                self.assertEqual(r.step_id, f"f{i}")
                self.assertTrue(r.HasField("failure"), r)
                f = r.failure
                self.assertEqual((f.error_class, f.permanent), want[:2], f)
                self.assertTrue(f.message)
                if want[2] is None:
                    self.assertFalse(f.HasField("backoff"))
                else:
                    self.assertEqual(f.backoff.ToTimedelta().total_seconds(), want[2])

    async def test_results_of_none_and_bytes(self):
        s = self.open()
        await s.send(step(step_id="a", handler="fails", handler_config={"kind": "none"}),
                      step(step_id="b", handler="fails", handler_config={"kind": "bytes"}))
        got = {r.step_id: r.success.results for r in [await s.result(), await s.result()]}
        self.assertEqual(got, {"a": b"{}", "b": b'{"raw": 1}'})

    async def test_refusals(self):
        s = self.open()
        past = executor_pb2.ExecuteStep().deadline
        past.FromSeconds(int(time.time()) - 10)
        await s.send(step(step_id="u", handler="nope"),
                      step(step_id="d", handler="echo", deadline=past),
                      step(step_id="j", handler="echo", context=b"{not json"))
        got = {r.step_id: r.failure for r in [await s.result(), await s.result(), await s.result()]}
        self.assertEqual((got["u"].error_class, got["u"].permanent), ("UnknownHandler", True))
        self.assertIn("conformance.echo", got["u"].message)
        self.assertEqual((got["d"].error_class, got["d"].permanent), ("DeadlineExceeded", False))
        self.assertEqual((got["j"].error_class, got["j"].permanent), ("InvalidRequest", True))
        self.assertIn("context", got["j"].message)

    async def test_capacity_and_duplicates(self):
        s = self.open()
        await s.send(*(step(step_id=f"g{i}", handler="gate") for i in range(3)))
        for _ in range(3):
            await self.gate.wait_started()
        # A duplicate of a running attempt is ignored; a fourth step is refused.
        await s.send(step(step_id="g0", handler="gate"), step(step_id="over", handler="gate"))
        r = await s.result()
        self.assertEqual((r.step_id, r.failure.error_class, r.failure.permanent),
                         ("over", "ExecutorOverCapacity", False))
        hb = await s.heartbeat_where(lambda h: len(h.running) == 3)
        self.assertEqual([x.step_id for x in hb.running], ["g0", "g1", "g2"])
        self.gate.release.set()
        done = sorted([(await s.result()).step_id for _ in range(3)])
        self.assertEqual(done, ["g0", "g1", "g2"])
        self.assertEqual(s.results.qsize(), 0)

    async def test_cancel_answers_once(self):
        s = self.open()
        await s.send(step(step_id="c", handler="conformance.sleep", handler_config={"ms": 60000}))
        await s.heartbeat_where(lambda h: [x.step_id for x in h.running] == ["c"])
        await s.send(cancel(step_id="c", reason="task cancelled"), cancel(step_id="other"))
        r = await s.result()
        self.assertEqual((r.step_id, r.failure.error_class, r.failure.permanent), ("c", "Cancelled", False))
        self.assertIn("task cancelled", r.failure.message)

    async def test_deadline_cancels_running_handler(self):
        s = self.open()
        soon = executor_pb2.ExecuteStep().deadline
        soon.FromNanoseconds(time.time_ns() + 200_000_000)
        await s.send(step(step_id="d", handler="blocking", handler_config={"s": 60}, deadline=soon))
        r = await s.result()
        self.assertEqual((r.failure.error_class, r.failure.permanent), ("DeadlineExceeded", False))

    async def test_thread_handler_and_progress(self):
        s = self.open()
        await s.send(step(step_id="b", handler="blocking"))
        p = await asyncio.wait_for(s.progress.get(), WAIT)
        self.assertEqual((p.step_id, p.percent, p.message), ("b", 50, "half way"))
        r = await s.result()
        self.assertEqual(json.loads(r.success.results), {"thread": True})

    async def test_half_close_finishes_then_ends(self):
        s = self.open()
        await s.send(step(step_id="h", handler="gate"))
        await self.gate.wait_started()
        await s.half_close()
        self.gate.release.set()
        r = await s.result()
        self.assertEqual(r.step_id, "h")
        self.assertEqual(await s.wait_ended(), grpc.StatusCode.OK)


class Heartbeats(ExecutorTest):
    executor_args = {"capacity": 5, "heartbeat_interval": 0.05}

    async def test_heartbeat_at_once_and_on_interval(self):
        s = self.open()
        first = await s.heartbeat()
        self.assertEqual(list(first.running), [])
        self.assertEqual(first.capacity, 5)
        await s.send(step("t", "x", 2, "gate"))
        hb = await s.heartbeat_where(lambda h: len(h.running) == 1)
        self.assertEqual((hb.running[0].task_id, hb.running[0].step_id, hb.running[0].attempt), ("t", "x", 2))
        self.assertEqual(list(hb.running_step_ids), ["x"])

    async def test_capacity_is_shared_between_coordinators(self):
        a = self.open("coord-a")
        await a.heartbeat_where(lambda h: h.capacity == 5)
        b = self.open("coord-b")
        await b.heartbeat_where(lambda h: h.capacity == 2)
        await a.heartbeat_where(lambda h: h.capacity == 2)
        # A step from one coordinator is listed to the other too.
        await a.send(step(step_id="shared", handler="gate"))
        await b.heartbeat_where(lambda h: [x.step_id for x in h.running] == ["shared"])


class Redelivery(ExecutorTest):
    async def test_result_after_break_comes_first_on_next_stream(self):
        s = self.open()
        await s.send(step(step_id="r", handler="gate"))
        await self.gate.wait_started()
        await s.break_()
        # Wait until the executor saw the break, then finish the handler.
        await _until(lambda: not self.executor._sessions)
        self.gate.release.set()
        await _until(lambda: self.executor._deliveries.stranded())
        s2 = self.open()
        first = await asyncio.wait_for(_first_message(s2), WAIT)
        self.assertEqual(first.WhichOneof("kind"), "step_result")
        self.assertEqual(first.step_result.step_id, "r")
        hb = await s2.heartbeat()
        self.assertEqual(list(hb.running), [])

    async def test_results_written_before_a_break_are_sent_again(self):
        s = self.open()
        await s.send(step(step_id="w", handler="echo"))
        await s.result()
        await s.break_()
        s2 = self.open()
        r = await s2.result()
        self.assertEqual(r.step_id, "w")

    async def test_running_attempt_listed_on_next_stream(self):
        s = self.open()
        await s.send(step(step_id="k", handler="gate"))
        await self.gate.wait_started()
        await s.break_()
        s2 = self.open()
        hb = await s2.heartbeat()
        self.assertEqual([x.step_id for x in hb.running], ["k"])
        self.gate.release.set()


class ReportStepResult(AsyncTestCase):
    async def test_result_after_break_goes_through_report_and_registration(self):
        coord = FakeCoordinator()
        addr = await coord.start()
        gate = Gate()
        e = new_executor(id="py-report", coordinators=[addr], register_interval=0.05)
        e.handle("gate", gate)
        bound = await e.start("127.0.0.1:0")
        try:
            self.assertEqual(await asyncio.wait_for(coord.registered.get(), WAIT), bound)
            s = Stream(bound, "fake-coordinator")
            await s.send(step(step_id="rep", handler="gate"))
            await gate.wait_started()
            await s.break_()
            await _until(lambda: not e._sessions)
            gate.release.set()
            r = await asyncio.wait_for(coord.reports.get(), WAIT)
            self.assertEqual((r.step_id, r.executor_id), ("rep", "py-report"))
            self.assertEqual(json.loads(r.success.results), {"released": "rep"})
            # Without a stream it registers again.
            await asyncio.wait_for(coord.registered.get(), WAIT)
        finally:
            gate.release.set()
            await e.shutdown()
            await coord.stop()

    async def test_report_tries_each_coordinator_until_one_applies(self):
        other = FakeCoordinator("other", applied=False)
        owner = FakeCoordinator("owner")
        addrs = [await other.start(), await owner.start()]
        gate = Gate()
        e = new_executor(coordinators=addrs, register_interval=0.05)
        e.handle("gate", gate)
        bound = await e.start("127.0.0.1:0")
        try:
            s = Stream(bound, "owner")
            await s.send(step(step_id="multi", handler="gate"))
            await gate.wait_started()
            await s.break_()
            await _until(lambda: not e._sessions)
            gate.release.set()
            self.assertEqual((await asyncio.wait_for(other.reports.get(), WAIT)).step_id, "multi")
            self.assertEqual((await asyncio.wait_for(owner.reports.get(), WAIT)).step_id, "multi")
            await _until(lambda: e._deliveries.undelivered == 0)
            self.assertIn("applied=True", e.log_buffer.getvalue())
        finally:
            await e.shutdown()
            await other.stop()
            await owner.stop()

    async def test_rejected_report_leaves_result_to_a_stream(self):
        coord = FakeCoordinator(report_code=grpc.StatusCode.FAILED_PRECONDITION)
        addr = await coord.start()
        gate = Gate()
        e = new_executor(coordinators=[addr], register_interval=0.05)
        e.handle("gate", gate)
        bound = await e.start("127.0.0.1:0")
        try:
            s = Stream(bound)
            await s.send(step(step_id="rej", handler="gate"))
            await gate.wait_started()
            await s.break_()
            await _until(lambda: not e._sessions)
            gate.release.set()
            await _until(lambda: any(d.unary_rejected for d in e._deliveries.stranded()))
            s2 = Stream(bound)
            self.assertEqual((await s2.result()).step_id, "rej")
            await e.shutdown()
            await s2.close()
        finally:
            await e.shutdown()
            await coord.stop()


class Security(AsyncTestCase):
    async def test_secret_guards_describe_and_execute_and_token_goes_to_the_coordinator(self):
        coord = FakeCoordinator()
        addr = await coord.start()
        secret = "s3cret-s3cret-s3cret"
        e = new_executor(coordinators=[addr], secret=secret, token="tok-1")
        conformance.register(e)
        bound = await e.start("127.0.0.1:0")
        try:
            await asyncio.wait_for(coord.registered.get(), WAIT)
            self.assertEqual(coord.authorization[0], "Bearer tok-1")
            async with grpc.aio.insecure_channel(bound) as ch:
                stub = executor_pb2_grpc.ExecutorServiceStub(ch)
                for metadata in ((), (("authorization", "Bearer wrong-wrong-wrong"),)):
                    with self.assertRaises(grpc.aio.AioRpcError) as cm:
                        await stub.Describe(executor_pb2.DescribeRequest(), metadata=metadata)
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
                d = await stub.Describe(executor_pb2.DescribeRequest(),
                                        metadata=(("authorization", f"Bearer {secret}"),))
                self.assertEqual(d.language, "python")
            refused = Stream(bound)
            self.assertEqual(await refused.wait_ended(), grpc.StatusCode.UNAUTHENTICATED)
            await refused.close()
            s = Stream(bound, secret=secret)
            await s.send(step(step_id="ok", handler="conformance.echo"))
            self.assertEqual((await s.result()).step_id, "ok")
            await e.shutdown()
            await s.close()
        finally:
            await e.shutdown()
            await coord.stop()

    def test_short_secret_is_refused(self):
        with self.assertRaises(ValueError) as cm:
            new_executor(secret="short")
        self.assertIn("at least 16", str(cm.exception))


class Shutdown(AsyncTestCase):
    async def test_shutdown_after_the_coordinator_went_away_is_bounded(self):
        coord = FakeCoordinator()
        addr = await coord.start()
        e = new_executor(coordinators=[addr], register_interval=0.01, delivery_timeout=0.2)
        conformance.register(e)
        bound = await e.start("127.0.0.1:0")
        await asyncio.wait_for(coord.registered.get(), WAIT)
        s = Stream(bound, "fake-coordinator")
        await s.send(step(step_id="e", handler="conformance.echo"))
        await s.result()
        await coord.stop()
        await s.break_()
        # Registration and reports now fail over and over; shutdown still ends.
        await _until(lambda: "register with coordinator failed" in e.log_buffer.getvalue())
        await asyncio.wait_for(e.shutdown(), WAIT)
        self.assertIn("may not have arrived", e.log_buffer.getvalue())

    async def test_shutdown_delivers_running_results_and_refuses_new_steps(self):
        gate = Gate()
        e = new_executor(shutdown_timeout=30)
        e.handle("gate", gate)
        bound = await e.start("127.0.0.1:0")
        s = Stream(bound)
        await s.send(step(step_id="run", handler="gate"))
        await gate.wait_started()
        stopping = e.shutdown()
        await _until(lambda: e._shutting_down)
        await s.send(step(step_id="late", handler="gate"))
        r = await s.result()
        self.assertEqual((r.step_id, r.failure.error_class, r.failure.permanent), ("late", "ShuttingDown", False))
        gate.release.set()
        r = await s.result()
        self.assertEqual(r.step_id, "run")
        self.assertTrue(r.HasField("success"))
        await asyncio.wait_for(stopping, WAIT)
        self.assertEqual(await s.wait_ended(), grpc.StatusCode.OK)
        self.assertIn('msg="executor stopped"', e.log_buffer.getvalue())
        await s.close()

    async def test_shutdown_timeout_cancels_handlers(self):
        e = new_executor(shutdown_timeout=0.05, heartbeat_interval=0.05)
        conformance.register(e)
        bound = await e.start("127.0.0.1:0")
        s = Stream(bound)
        await s.send(step(step_id="long", handler="conformance.sleep", handler_config={"ms": 60000}))
        await s.heartbeat_where(lambda h: len(h.running) == 1)
        await asyncio.wait_for(e.shutdown(), WAIT)
        r = await s.result()
        self.assertEqual((r.failure.error_class, r.failure.permanent), ("Cancelled", False))
        await s.close()


async def _until(pred, timeout=WAIT):
    """_until polls a condition on the executor's own loop (the same loop as
    the test), yielding between checks; it fails after timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def _first_message(s: Stream):
    await _until(lambda: s.all)
    return s.all[0]


if __name__ == "__main__":
    unittest.main()
