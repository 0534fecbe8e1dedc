"""Sending the flow to the gateway, and reading back what became of each command.

:class:`Tracker` keeps what the answers and reports say: latencies (into each command's recorder),
the orders that rest (told to the flow), every trade with its buyer and seller, duplicates.
Two drivers carry the commands:

- :class:`StreamDriver`: one StreamOrders call per account (a stream is authenticated by one API
  key, so it trades for one account); whatever is due for an account when its writer runs goes out
  as one request (at most ``max_batch`` commands, and never more unanswered than the gateway's
  ``max_in_flight``); results and later reports come back on the same call.
- :class:`UnaryDriver`: one SubmitOrder or CancelOrder call per command (at most ``max_in_flight``
  at once; later ones wait in the client, their latency counting from when they were due); later
  fills of resting orders come from each account's StreamExecutions.

A driver either takes commands as they fall due (open loop: :meth:`send`, then :meth:`flush`) or
keeps a window of commands outstanding, asking ``refill`` for more as answers come (closed loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.runtime.errors import from_rpc_error
from ops.perf.flow import BUY, CANCEL, REPLACE, SUBMIT, Command, Flow, fill_replace, fill_submit
from ops.perf.recorder import MAX_LATENCY_US, Recorder, Timeline, outcome_name

Metadata = tuple[tuple[str, str], ...]
# Asks for the next command of an account (None: of any account); None when there is no more.
Refill = Callable[[int | None], Command | None]

_TRADE = common_pb2.EXECUTION_TYPE_TRADE
_TAKER = common_pb2.LIQUIDITY_SIDE_TAKER
_OPEN = frozenset({common_pb2.ORDER_STATUS_NEW, common_pb2.ORDER_STATUS_PARTIALLY_FILLED})
_CLOSED = frozenset({common_pb2.ORDER_STATUS_FILLED, common_pb2.ORDER_STATUS_CANCELLED})
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
CALL_TIMEOUT_SECONDS = 30.0
# Commands per StreamOrders request the contract allows.
MAX_BATCH = 1000


class Tracker:
    """What the answers and reports of one run say."""

    def __init__(
        self, flow: Flow, symbols: Sequence[str], timeline: Timeline, *, follow_reports: bool
    ) -> None:
        self.flow = flow
        self.symbols = list(symbols)
        self.symbol_index = {symbol: index for index, symbol in enumerate(symbols)}
        self.timeline = timeline
        # Close orders in the flow when a later report says they filled or were cancelled. A
        # deterministic run does not: when such a report comes depends on timing.
        self.follow_reports = follow_reports
        # A unary client sees its taker fills in SubmitOrder's answer and again on StreamExecutions.
        self.takers_in_answers_only = False
        self.orders: dict[str, Command] = {}  # order id -> its submit
        # trade id -> [symbol index, price, quantity, buyer's client order id, seller's]
        self.trades: dict[str, list[Any]] = {}
        self._fills_seen: set[tuple[str, int]] = set()
        self._takers: dict[str, Command] = {}  # trade id -> taker's submit, until the maker hears of it
        self._makers_first: dict[str, float] = {}  # trade id -> when the maker heard, before the taker
        self._early: dict[str, list[tuple[gateway_pb2.ExecutionReport, float]]] = {}
        self._outcomes: dict[tuple[int, int], str] = {}
        self.duplicate_fills = 0
        self.duplicate_results = 0
        self.stray_results = 0
        self.max_sequence = 0
        self.outstanding = 0
        self.idle = asyncio.Event()
        self.idle.set()

    # --- commands going out ----------------------------------------------------------------------

    def sending(self, command: Command) -> None:
        self.outstanding += 1
        self.idle.clear()
        recorder: Recorder = command.recorder  # type: ignore[assignment]
        recorder.sent_one(command.t, command.kind == SUBMIT, command.kind == REPLACE)
        self.timeline.at(command.t).sent += 1

    # --- answers ---------------------------------------------------------------------------------

    def outcome(self, code: int, reason: int) -> str:
        key = (code, reason)
        name = self._outcomes.get(key)
        if name is None:
            name = self._outcomes[key] = outcome_name(code, reason)
        return name

    def answer(
        self,
        command: Command,
        now: float,
        code: int,
        reason: int,
        order: gateway_pb2.Order | None,
        reports: Iterable[gateway_pb2.ExecutionReport],
        outcome: str | None = None,
    ) -> None:
        """A command's answer: OK (code 0) with its order and first reports, or a refusal."""
        recorder: Recorder = command.recorder  # type: ignore[assignment]
        window = self.timeline.at(now)
        if recorder.answered_one(now, outcome or self.outcome(code, reason)):
            window.errors += 1
        self.outstanding -= 1
        if self.outstanding == 0:
            self.idle.set()
        if code != 0:
            return
        window.acked += 1
        latency = now - command.t
        if command.kind == CANCEL:
            recorder.cancel.record(latency)
            return
        if command.kind == REPLACE:
            recorder.replace.record(latency)
            self._replaced(command, now, order, reports)
            return
        micros = min(MAX_LATENCY_US, max(1, int(latency * 1e6)))
        recorder.ack.record_micros(micros)
        window.latency.append(micros)
        if order is None:
            return
        order_id = order.order_id
        command.order_id = order_id
        self.orders[order_id] = command
        if order.status in _OPEN:
            self.flow.opened(command.account, order_id, command)
        for report in reports:
            if report.trading_sequence > self.max_sequence:
                self.max_sequence = report.trading_sequence
            if report.execution_type == _TRADE:
                self._fill(report, now, command)
        early = self._early.pop(order_id, None)
        if early:
            for report, when in early:
                self.report(report, when)

    def _replaced(
        self,
        command: Command,
        now: float,
        order: gateway_pb2.Order | None,
        reports: Iterable[gateway_pb2.ExecutionReport],
    ) -> None:
        """A replace's answer: the order, open again at its new price for the flow to draw from (it
        was taken out while the replace was on its way), and any trade the new price made at once
        (its fill latency counts from the replace)."""
        if order is None:
            return
        if order.status in _OPEN:
            self.flow.opened(command.account, order.order_id, command)
        for report in reports:
            if report.trading_sequence > self.max_sequence:
                self.max_sequence = report.trading_sequence
            if report.execution_type == _TRADE:
                self._fill(report, now, command)

    def report(self, report: gateway_pb2.ExecutionReport, now: float) -> None:
        """A later report of one of our orders (a resting order's fill, say)."""
        order_id = report.order.order_id
        command = self.orders.get(order_id)
        if command is None:  # its submit's answer has not come yet
            self._early.setdefault(order_id, []).append((report, now))
            return
        if report.trading_sequence > self.max_sequence:
            self.max_sequence = report.trading_sequence
        if report.execution_type == _TRADE and not (
            self.takers_in_answers_only and report.liquidity_side == _TAKER
        ):
            self._fill(report, now, command)
        if self.follow_reports and report.order.status in _CLOSED:
            self.flow.closed(command.account, order_id)

    def _fill(self, report: gateway_pb2.ExecutionReport, now: float, command: Command) -> None:
        trade_id = report.trade_id
        side = report.order.side
        key = (trade_id, side)
        if key in self._fills_seen:
            self.duplicate_fills += 1
            return
        self._fills_seen.add(key)
        trade = self.trades.get(trade_id)
        if trade is None:
            trade = self.trades[trade_id] = [
                self.symbol_index.get(report.order.symbol, -1),
                report.last_price,
                report.last_quantity,
                "",
                "",
            ]
        trade[3 if side == BUY else 4] = report.order.client_order_id
        if report.liquidity_side == _TAKER:
            recorder: Recorder = command.recorder  # type: ignore[assignment]
            recorder.fills += 1
            self.timeline.at(now).fills += 1
            recorder.fill.record(now - command.t)
            maker_heard = self._makers_first.pop(trade_id, None)
            if maker_heard is not None:
                recorder.fill.record(maker_heard - command.t)
            else:
                self._takers[trade_id] = command
        else:
            taker = self._takers.pop(trade_id, None)
            if taker is not None:
                taker.recorder.fill.record(now - taker.t)  # type: ignore[attr-defined]
            else:
                self._makers_first[trade_id] = now

    def incomplete_trades(self) -> int:
        """Trades one side of which has not been heard of yet."""
        return sum(1 for trade in self.trades.values() if not (trade[3] and trade[4]))

    def unmatched_reports(self) -> int:
        """Reports of orders whose submit was never answered with them."""
        return sum(len(reports) for reports in self._early.values())


def _refusal(error: grpc.aio.AioRpcError) -> tuple[int, str]:
    """The status code and outcome name of a failed call."""
    refusal = from_rpc_error(error)
    code = error.code()
    return code.value[0], f"{code.name}/{refusal.reason.value}"


class AccountStream:
    """One account's StreamOrders call: a queue of due commands, a writer and a reader."""

    def __init__(self, driver: StreamDriver, account: int, metadata: Metadata) -> None:
        self.driver = driver
        self.account = account
        self.metadata = metadata
        self.queue: deque[Command] = deque()
        self.pending: dict[int, list[Any]] = {}  # request number -> [commands, unanswered]
        self.in_flight = 0
        self.max_in_flight = MAX_BATCH
        self.number = 0
        self.wake = asyncio.Event()
        self.call: Any = None
        self.tasks: list[asyncio.Task[None]] = []
        self.ended: str | None = None  # why the call ended, when it did before close()

    async def open(self, stub: gateway_pb2_grpc.GatewayServiceStub, timeout_seconds: float) -> None:
        self.call = stub.StreamOrders(metadata=self.metadata)
        first = await asyncio.wait_for(self.call.read(), timeout_seconds)
        if first is grpc.aio.EOF:
            raise RuntimeError(f"StreamOrders of account #{self.account} ended before its first answer")
        if first.max_in_flight:
            self.max_in_flight = int(first.max_in_flight)
        self.tasks = [
            asyncio.create_task(self._write(), name=f"stream-{self.account}-write"),
            asyncio.create_task(self._read(), name=f"stream-{self.account}-read"),
        ]

    async def _write(self) -> None:
        driver = self.driver
        flow, symbols, queue, call = driver.flow, driver.symbols, self.queue, self.call
        while True:
            await self.wake.wait()
            self.wake.clear()
            while queue and self.in_flight < self.max_in_flight and self.ended is None:
                count = min(len(queue), driver.max_batch, self.max_in_flight - self.in_flight)
                request = gateway_pb2.StreamOrdersRequest()
                add = request.commands.add
                batch = []
                for _ in range(count):
                    command = queue.popleft()
                    item = add()
                    if command.kind == SUBMIT:
                        fill_submit(item.submit, flow, command, symbols)
                    elif command.kind == REPLACE:
                        fill_replace(item.replace, flow, command)
                    else:
                        item.cancel.order_id = command.order_id
                    batch.append(command)
                self.number += 1
                self.pending[self.number] = [batch, count]
                self.in_flight += count
                try:
                    await call.write(request)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                    return  # the reader sees the call end and answers what is pending

    async def _read(self) -> None:
        tracker = self.driver.tracker
        code, outcome = _UNAVAILABLE, "UNAVAILABLE/STREAM_ENDED"
        try:
            read = self.call.read  # not `async for`: open() read the first answer with read()
            while True:
                response = await read()
                if response is grpc.aio.EOF:
                    break
                now = time.perf_counter()
                answered = 0
                for result in response.results:
                    entry = self.pending.get(result.request_number)
                    if entry is None or result.index >= len(entry[0]):
                        tracker.stray_results += 1
                        continue
                    command = entry[0][result.index]
                    if command is None:
                        tracker.duplicate_results += 1
                        continue
                    entry[0][result.index] = None
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self.pending[result.request_number]
                    answered += 1
                    tracker.answer(command, now, result.code, result.reason, result.order, result.reports)
                self.in_flight -= answered
                for report in response.reports:
                    tracker.report(report, now)
                if answered:
                    self.driver.answered(self)
            self.ended = "the gateway ended the stream"
        except grpc.aio.AioRpcError as error:
            code, outcome = _refusal(error)
            self.ended = f"{outcome}: {error.details()}"
        finally:
            if self.ended is None:
                self.ended = "closed"
            self._fail_pending(code, outcome)

    def _fail_pending(self, code: int, outcome: str) -> None:
        """Answer every command the ended call will not: sent ones and queued ones alike."""
        tracker = self.driver.tracker
        now = time.perf_counter()
        for batch, _ in self.pending.values():
            for command in batch:
                if command is not None:
                    tracker.answer(command, now, code, 0, None, (), outcome)
        self.pending.clear()
        while self.queue:
            tracker.answer(self.queue.popleft(), now, code, 0, None, (), outcome)
        self.in_flight = 0

    async def close(self, timeout_seconds: float) -> None:
        if self.call is not None and self.ended is None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                await asyncio.wait_for(self.call.done_writing(), timeout_seconds)
            if len(self.tasks) == 2:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self.tasks[1]), timeout_seconds)
        if self.call is not None:
            self.call.cancel()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class StreamDriver:
    """StreamOrders: one call per account."""

    path = "stream"

    def __init__(
        self,
        channel: grpc.aio.Channel,
        tracker: Tracker,
        metadata: Sequence[Metadata],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.stub = gateway_pb2_grpc.GatewayServiceStub(channel)  # type: ignore[no-untyped-call]
        self.tracker = tracker
        self.flow = tracker.flow
        self.symbols = tracker.symbols
        self.max_batch = max(1, min(max_batch, MAX_BATCH))
        self.streams = [AccountStream(self, account, md) for account, md in enumerate(metadata)]
        self._touched: set[AccountStream] = set()
        self.window = 0  # closed loop: commands kept outstanding per stream (0: open loop)
        self.refill: Refill | None = None

    @property
    def max_in_flight(self) -> int:
        return min(stream.max_in_flight for stream in self.streams)

    async def start(self, timeout_seconds: float = 10.0) -> None:
        await asyncio.gather(*(stream.open(self.stub, timeout_seconds) for stream in self.streams))

    def send(self, command: Command) -> None:
        stream = self.streams[command.account]
        if stream.ended is not None:
            self.tracker.sending(command)
            self.tracker.answer(
                command, time.perf_counter(), _UNAVAILABLE, 0, None, (), "UNAVAILABLE/STREAM_ENDED"
            )
            return
        self.tracker.sending(command)
        stream.queue.append(command)
        self._touched.add(stream)

    def flush(self) -> None:
        for stream in self._touched:
            stream.wake.set()
        self._touched.clear()

    def closed_loop(self, window: int, refill: Refill) -> None:
        """Keep `window` commands outstanding on every stream, asking `refill` for each account's."""
        self.window, self.refill = window, refill
        for stream in self.streams:
            self._top_up(stream)
        self.flush()

    def open_loop(self) -> None:
        self.window, self.refill = 0, None

    def answered(self, stream: AccountStream) -> None:
        if self.window:
            self._top_up(stream)
        if stream.queue:
            stream.wake.set()

    def _top_up(self, stream: AccountStream) -> None:
        refill = self.refill
        if refill is None:
            return
        now = time.perf_counter()
        for _ in range(self.window - stream.in_flight - len(stream.queue)):
            command = refill(stream.account)
            if command is None:
                self.window = 0
                break
            command.t = now
            self.send(command)

    async def close(self, timeout_seconds: float = 5.0) -> None:
        await asyncio.gather(*(stream.close(timeout_seconds) for stream in self.streams))

    def ended(self) -> list[str]:
        return [f"account #{s.account}: {s.ended}" for s in self.streams if s.ended not in (None, "closed")]


class UnaryDriver:
    """SubmitOrder and CancelOrder, one call per command; StreamExecutions for later fills."""

    path = "unary"

    def __init__(
        self,
        channel: grpc.aio.Channel,
        tracker: Tracker,
        metadata: Sequence[Metadata],
        max_in_flight: int = 1000,
        executions: bool = True,
    ) -> None:
        self.stub = gateway_pb2_grpc.GatewayServiceStub(channel)  # type: ignore[no-untyped-call]
        self.tracker = tracker
        tracker.takers_in_answers_only = True
        self.flow = tracker.flow
        self.symbols = tracker.symbols
        self.metadata = list(metadata)
        self.max_in_flight = max(1, max_in_flight)
        self.executions = executions
        self.waiting: deque[Command] = deque()
        self.active = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.feeds: list[Any] = []
        self.feed_tasks: list[asyncio.Task[None]] = []
        self.window = 0
        self.refill: Refill | None = None
        self.feed_errors: list[str] = []

    async def start(self, timeout_seconds: float = 10.0) -> None:
        if not self.executions:
            return
        for account, metadata in enumerate(self.metadata):
            call = self.stub.StreamExecutions(gateway_pb2.StreamExecutionsRequest(), metadata=metadata)
            self.feeds.append(call)
            self.feed_tasks.append(
                asyncio.create_task(self._feed(account, call), name=f"executions-{account}")
            )
        # The gateway answers headers once the subscription is in place: no later report is missed.
        await asyncio.wait_for(
            asyncio.gather(*(call.initial_metadata() for call in self.feeds)), timeout_seconds
        )

    async def _feed(self, account: int, call: Any) -> None:
        tracker = self.tracker
        try:
            async for response in call:
                tracker.report(response.report, time.perf_counter())
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.feed_errors.append(f"account #{account}: {_refusal(error)[1]}: {error.details()}")

    def send(self, command: Command) -> None:
        self.tracker.sending(command)
        if self.active < self.max_in_flight:
            self._start(command)
        else:
            self.waiting.append(command)

    def flush(self) -> None:
        """Calls start as they are sent."""

    def _start(self, command: Command) -> None:
        self.active += 1
        task = asyncio.create_task(self._call(command))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _call(self, command: Command) -> None:
        tracker = self.tracker
        metadata = self.metadata[command.account]
        try:
            if command.kind == SUBMIT:
                request = gateway_pb2.SubmitOrderRequest()
                fill_submit(request, self.flow, command, self.symbols)
                response = await self.stub.SubmitOrder(
                    request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS
                )
                tracker.answer(command, time.perf_counter(), 0, 0, response.order, response.reports)
            elif command.kind == REPLACE:
                replace = gateway_pb2.ReplaceOrderRequest()
                fill_replace(replace, self.flow, command)
                answer = await self.stub.ReplaceOrder(
                    replace, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS
                )
                tracker.answer(command, time.perf_counter(), 0, 0, answer.order, answer.reports)
            else:
                cancel = gateway_pb2.CancelOrderRequest(order_id=command.order_id)
                await self.stub.CancelOrder(cancel, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
                tracker.answer(command, time.perf_counter(), 0, 0, None, ())
        except grpc.aio.AioRpcError as error:
            code, outcome = _refusal(error)
            tracker.answer(command, time.perf_counter(), code, 0, None, (), outcome)
        finally:
            self.active -= 1
            self._next()

    def _next(self) -> None:
        if self.window and self.refill is not None:
            now = time.perf_counter()
            while self.active + len(self.waiting) < self.window:
                command = self.refill(None)
                if command is None:
                    self.window = 0
                    break
                command.t = now
                self.send(command)
        while self.waiting and self.active < self.max_in_flight:
            self._start(self.waiting.popleft())

    def closed_loop(self, window: int, refill: Refill) -> None:
        """Keep `window` calls outstanding, asking `refill` for each next command."""
        self.window, self.refill = window, refill
        self.max_in_flight = max(self.max_in_flight, window)
        self._next()

    def open_loop(self) -> None:
        self.window, self.refill = 0, None

    async def close(self, timeout_seconds: float = 5.0) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout_seconds)
        for task in list(self.tasks):
            task.cancel()
        for call in self.feeds:
            call.cancel()
        for task in self.feed_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def ended(self) -> list[str]:
        return list(self.feed_errors)
