"""The SDK's order stream against a scripted GatewayService on a real grpc.aio server and socket:
batching of commands into requests, the in-flight window, results matched to their commands out
of order, refusals as results, the stream's failure, later reports and read-your-writes, closing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import grpc
import pytest

from backbone.client import (
    AsyncClient,
    AsyncOrderStream,
    BackboneError,
    CancelOrder,
    Client,
    ExecutionReport,
    ExecutionType,
    NewOrder,
    OrderResult,
    OrderStatus,
    OrderStreamEvent,
)
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError
from backbone.runtime.interceptors import ServerInterceptor

Received = tuple[int, int, gateway_pb2.OrderCommand]


def _order(
    order_id: str, client_order_id: str, status: int = common_pb2.ORDER_STATUS_NEW
) -> gateway_pb2.Order:
    return gateway_pb2.Order(
        order_id=order_id,
        client_order_id=client_order_id,
        account_id="acct",
        symbol="BTC-USD",
        side=common_pb2.SIDE_BUY,
        type=common_pb2.ORDER_TYPE_LIMIT,
        time_in_force=common_pb2.TIME_IN_FORCE_GTC,
        price="100.25",
        quantity="0.5",
        filled_quantity="0",
        leaves_quantity="0.5",
        cancelled_quantity="0",
        status=status,  # type: ignore[arg-type]
    )


def _refusal(code: grpc.StatusCode, reason: RejectReason, message: str, **fields: Any) -> dict[str, Any]:
    return {"code": code.value[0], "reason": reason.number, "message": message, **fields}


class ScriptedGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """StreamOrders answering by a script: symbol BAD is off tick, POOR cannot pay, client order id
    "dup" is taken, order "missing" does not exist, symbol FILLS is filled later; the rest goes
    through. ``hold`` keeps answers back until the test calls ``answer``; ``fail_at`` fails the
    stream with UNAVAILABLE once that many commands have come (answering the ones before)."""

    def __init__(self, *, max_in_flight: int = 100, hold: bool = False, fail_at: int | None = None) -> None:
        self.max_in_flight = max_in_flight
        self.hold = hold
        self.fail_at = fail_at
        self.requests: list[gateway_pb2.StreamOrdersRequest] = []
        self.received: list[Received] = []
        self.stream_received = 0
        self.answered = 0
        self.most_unanswered = 0
        self.input_ended = threading.Event()
        self.balance_requests: list[gateway_pb2.GetBalancesRequest] = []
        self.sequence = 0
        self._outbox: asyncio.Queue[gateway_pb2.StreamOrdersResponse | ServiceError | None] | None = None

    # --- the test's side -----------------------------------------------------------------------

    async def wait_received(self, count: int) -> None:
        while len(self.received) < count:  # noqa: ASYNC110 (polls what the server's side counts)
            await asyncio.sleep(0.005)

    def answer(self, *entries: Received, later: list[gateway_pb2.ExecutionReport] | None = None) -> None:
        """Answer these received commands in one response (in the order given)."""
        assert self._outbox is not None
        response = gateway_pb2.StreamOrdersResponse(results=[self.result(*entry) for entry in entries])
        if later:
            response.reports.extend(later)
        self._outbox.put_nowait(response)

    def fail(self, error: ServiceError) -> None:
        assert self._outbox is not None
        self._outbox.put_nowait(error)

    # --- answers -------------------------------------------------------------------------------

    def report(self, order: gateway_pb2.Order, kind: int) -> gateway_pb2.ExecutionReport:
        self.sequence += 1
        return gateway_pb2.ExecutionReport(order=order, execution_type=kind, trading_sequence=self.sequence)  # type: ignore[arg-type]

    def result(
        self, request_number: int, index: int, command: gateway_pb2.OrderCommand
    ) -> gateway_pb2.OrderCommandResult:
        base: dict[str, Any] = {"request_number": request_number, "index": index, "tag": command.tag}
        if command.HasField("cancel"):
            order_id = command.cancel.order_id
            base["client_order_id"] = order_id
            if order_id == "missing":
                refusal = _refusal(
                    grpc.StatusCode.NOT_FOUND,
                    RejectReason.UNKNOWN_ORDER,
                    "there is no order 'missing' in this account",
                )
                return gateway_pb2.OrderCommandResult(**base, **refusal)
            order = _order(order_id, "c-" + order_id, common_pb2.ORDER_STATUS_CANCELLED)
            report = self.report(order, common_pb2.EXECUTION_TYPE_CANCELLED)
            return gateway_pb2.OrderCommandResult(**base, order=order, reports=[report])
        submit = command.submit
        base["client_order_id"] = submit.client_order_id
        if submit.symbol == "BAD":
            refusal = _refusal(
                grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_PRICE,
                "price: is not a multiple of the tick size 0.01", field="price",
            )  # fmt: skip
            return gateway_pb2.OrderCommandResult(**base, **refusal)
        if submit.symbol == "POOR":
            refusal = _refusal(
                grpc.StatusCode.FAILED_PRECONDITION, RejectReason.INSUFFICIENT_BALANCE, "not enough USD"
            )
            return gateway_pb2.OrderCommandResult(**base, **refusal)
        if submit.client_order_id == "dup":
            refusal = _refusal(
                grpc.StatusCode.ALREADY_EXISTS, RejectReason.DUPLICATE_CLIENT_ORDER_ID, "used by o-holder"
            )
            return gateway_pb2.OrderCommandResult(**base, **refusal, order=_order("o-holder", "dup"))
        order = _order("o-" + submit.client_order_id, submit.client_order_id)
        report = self.report(order, common_pb2.EXECUTION_TYPE_ACCEPTED)
        return gateway_pb2.OrderCommandResult(**base, order=order, reports=[report])

    def later_reports(self, entries: list[Received]) -> list[gateway_pb2.ExecutionReport]:
        reports = []
        for _, _, command in entries:
            if command.HasField("submit") and command.submit.symbol == "FILLS":
                order = _order(
                    "o-" + command.submit.client_order_id,
                    command.submit.client_order_id,
                    common_pb2.ORDER_STATUS_FILLED,
                )
                reports.append(self.report(order, common_pb2.EXECUTION_TYPE_TRADE))
        return reports

    # --- the service ---------------------------------------------------------------------------

    async def StreamOrders(
        self, requests: Any, context: Any
    ) -> AsyncIterator[gateway_pb2.StreamOrdersResponse]:
        key = dict(context.invocation_metadata()).get("x-api-key")
        if key != "bbk_k":
            raise ServiceError(
                grpc.StatusCode.UNAUTHENTICATED, RejectReason.UNKNOWN_API_KEY, "unknown API key"
            )
        outbox: asyncio.Queue[gateway_pb2.StreamOrdersResponse | ServiceError | None] = asyncio.Queue()
        self._outbox = outbox
        # This stream's own counts (one stream at a time).
        self.input_ended = threading.Event()
        self.stream_received = 0
        self.answered = 0
        yield gateway_pb2.StreamOrdersResponse(max_in_flight=self.max_in_flight)
        reader = asyncio.create_task(self._read(requests, outbox))
        try:
            while True:
                item = await outbox.get()
                if item is None:
                    # As the gateway does: the input ended and every command is answered.
                    if self.input_ended.is_set() and self.answered >= self.stream_received:
                        return
                    continue
                if isinstance(item, ServiceError):
                    raise item
                self.answered += len(item.results)
                yield item
                if self.input_ended.is_set():
                    outbox.put_nowait(None)
        finally:
            reader.cancel()

    async def _read(self, requests: Any, outbox: asyncio.Queue[Any]) -> None:
        number = 0
        async for request in requests:
            self.requests.append(request)
            number += 1
            entries = [(number, index, command) for index, command in enumerate(request.commands)]
            for entry in entries:
                if self.fail_at is not None and len(self.received) >= self.fail_at:
                    outbox.put_nowait(
                        ServiceError(
                            grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING, "gateway stopping"
                        )
                    )
                    return
                self.received.append(entry)
                self.stream_received += 1
            self.most_unanswered = max(self.most_unanswered, self.stream_received - self.answered)
            if not self.hold:
                # Answered out of order: the last command of a request first.
                self.answer(*reversed(entries))
                later = self.later_reports(entries)
                if later:
                    outbox.put_nowait(gateway_pb2.StreamOrdersResponse(reports=later))
        self.input_ended.set()
        outbox.put_nowait(None)

    async def GetBalances(self, request: gateway_pb2.GetBalancesRequest, context: Any) -> Any:
        self.balance_requests.append(request)
        return gateway_pb2.GetBalancesResponse(account_id="acct")


async def start(gateway: ScriptedGateway) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=[ServerInterceptor()])
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(gateway, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def with_client(
    gateway: ScriptedGateway, use: Callable[[AsyncClient], Any], api_key: str = "bbk_k"
) -> None:
    server, target = await start(gateway)
    try:
        async with await AsyncClient.connect(target, api_key=api_key, timeout_seconds=20) as client:
            await use(client)
    finally:
        await server.stop(0)


async def results(stream: AsyncOrderStream, count: int) -> list[OrderResult]:
    taken: list[OrderResult] = []
    async for event in stream:
        if isinstance(event, OrderResult):
            taken.append(event)
            if len(taken) == count:
                break
    return taken


# --- async ---------------------------------------------------------------------------------------


async def test_commands_of_one_turn_go_in_one_request_and_each_answer_finds_its_command() -> None:
    gateway = ScriptedGateway()

    async def use(client: AsyncClient) -> None:
        async with client.order_stream() as stream:
            assert stream.max_in_flight == 100
            first = await stream.submit("BTC-USD", "buy", Decimal("100.25"), Decimal("0.5"), tag="t1")
            second = await stream.submit(
                "BTC-USD", "sell", Decimal("101"), Decimal("0.5"), client_order_id="mine"
            )
            cancel = await stream.cancel("o-old", tag="t3")
            answered = await results(stream, 3)
        assert [len(request.commands) for request in gateway.requests] == [3]
        # Answered last first; each result names its command.
        assert [(r.request_number, r.index) for r in answered] == [(1, 2), (1, 1), (1, 0)]
        assert [r.command for r in answered] == [cancel.command, second.command, first.command]
        assert len(first.client_order_id) == 32 and second.client_order_id == "mine"
        placed = await first.result()
        assert placed.order_id == "o-" + first.client_order_id
        assert placed.price == Decimal("100.25") and placed.status == OrderStatus.NEW
        assert [r.execution_type for r in placed.reports] == [ExecutionType.ACCEPTED]
        assert (await second.result()).client_order_id == "mine"
        cancelled = await cancel.outcome()
        assert cancelled.ok and cancelled.order_id == "o-old" and cancelled.tag == "t3"
        assert cancelled.order_or_raise().status == OrderStatus.CANCELLED
        sent = gateway.requests[0].commands
        assert (sent[0].tag, sent[0].submit.price, sent[0].submit.quantity) == ("t1", "100.25", "0.5")
        assert gateway.input_ended.is_set()  # leaving the block half-closed the stream

    await with_client(gateway, use)


async def test_cancel_on_disconnect_is_asked_on_every_request_of_a_stream_that_wants_it() -> None:
    gateway = ScriptedGateway()

    async def use(client: AsyncClient) -> None:
        for wanted in (True, False):
            async with client.order_stream(cancel_on_disconnect=wanted) as stream:
                await stream.submit("BTC-USD", "buy", Decimal("100.25"), Decimal("0.5"))
                await results(stream, 1)
            assert gateway.requests[-1].cancel_on_disconnect is wanted

    await with_client(gateway, use)


async def test_a_batch_larger_than_a_request_goes_in_requests_of_1000() -> None:
    gateway = ScriptedGateway(max_in_flight=2500)

    async def use(client: AsyncClient) -> None:
        async with client.order_stream(events="none") as stream:
            commands = [NewOrder("BTC-USD", "buy", Decimal("1"), Decimal("1")) for _ in range(2500)]
            tickets = await stream.submit_many(commands)
            await stream.drain()
            assert all(ticket.done() for ticket in tickets)
            assert [(await t.result()).client_order_id for t in tickets] == [
                c.client_order_id for c in commands
            ]
        assert [len(request.commands) for request in gateway.requests] == [1000, 1000, 500]

    await with_client(gateway, use)


async def test_each_refusal_is_the_commands_result_and_the_stream_goes_on() -> None:
    gateway = ScriptedGateway()

    async def use(client: AsyncClient) -> None:
        async with client.order_stream() as stream:
            tickets = await stream.submit_many(
                [
                    NewOrder("BAD", "buy", Decimal("1.001"), Decimal("1"), tag="off-tick"),
                    NewOrder("POOR", "buy", Decimal("1"), Decimal("1")),
                    NewOrder("BTC-USD", "buy", Decimal("1"), Decimal("1"), client_order_id="dup"),
                    CancelOrder("missing"),
                    NewOrder("BTC-USD", "buy", Decimal("1"), Decimal("1")),
                ]
            )
            outcomes = [await ticket.outcome() for ticket in tickets]
            assert [o.ok for o in outcomes] == [False, False, False, False, True]
            errors = [o.error for o in outcomes[:4]]
            assert [(e.code, e.reason) for e in errors if e] == [
                (grpc.StatusCode.INVALID_ARGUMENT, RejectReason.INVALID_PRICE),
                (grpc.StatusCode.FAILED_PRECONDITION, RejectReason.INSUFFICIENT_BALANCE),
                (grpc.StatusCode.ALREADY_EXISTS, RejectReason.DUPLICATE_CLIENT_ORDER_ID),
                (grpc.StatusCode.NOT_FOUND, RejectReason.UNKNOWN_ORDER),
            ]
            off_tick = errors[0]
            assert off_tick is not None
            assert [(v.field, v.description) for v in off_tick.violations] == [
                ("price", "is not a multiple of the tick size 0.01")
            ]
            assert outcomes[0].tag == "off-tick"
            duplicate = outcomes[2]
            assert duplicate.order_id == "o-holder" and duplicate.order is None
            with pytest.raises(BackboneError) as caught:
                await tickets[1].result()
            assert caught.value.reason == "INSUFFICIENT_BALANCE" and not caught.value.retryable
            # The stream is still there.
            again = await stream.submit("BTC-USD", "sell", Decimal("2"), Decimal("1"))
            assert (await again.result()).order_id == "o-" + again.client_order_id

    await with_client(gateway, use)


async def test_submit_waits_for_room_when_max_in_flight_commands_are_unanswered() -> None:
    gateway = ScriptedGateway(max_in_flight=3, hold=True)

    async def use(client: AsyncClient) -> None:
        async with client.order_stream() as stream:
            queued: list[Any] = []

            async def produce() -> None:
                for number in range(5):
                    queued.append(await stream.submit("BTC-USD", "buy", Decimal(number + 1), Decimal("1")))

            producer = asyncio.create_task(produce())
            await gateway.wait_received(3)
            for _ in range(20):
                await asyncio.sleep(0)
            # Nothing was answered, so the fourth cannot be queued, however long this waits.
            assert len(queued) == 3 and stream.unanswered == 3 and not producer.done()
            gateway.answer(gateway.received[1])
            await gateway.wait_received(4)
            gateway.answer(gateway.received[0], gateway.received[2])
            await gateway.wait_received(5)
            await producer
            gateway.answer(*gateway.received[3:])
            orders = [await ticket.result() for ticket in queued]
            assert [order.client_order_id for order in orders] == [t.client_order_id for t in queued]
            assert [c.submit.price for _, _, c in gateway.received] == ["1", "2", "3", "4", "5"]
        assert gateway.most_unanswered <= 3

    await with_client(gateway, use)


async def test_a_failed_stream_fails_each_unanswered_command_then_ends_the_iteration() -> None:
    gateway = ScriptedGateway(hold=True)

    async def use(client: AsyncClient) -> None:
        stream = await client.order_stream().open()
        tickets = [await stream.submit("BTC-USD", "buy", Decimal("1"), Decimal(n + 1)) for n in range(3)]
        await gateway.wait_received(3)
        gateway.answer(gateway.received[1])
        gateway.fail(
            ServiceError(grpc.StatusCode.UNAVAILABLE, RejectReason.SERVICE_STOPPING, "gateway stopping")
        )
        events: list[OrderStreamEvent] = []
        with pytest.raises(BackboneError) as ended:
            async for event in stream:
                events.append(event)
        assert (ended.value.code, ended.value.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.SERVICE_STOPPING,
        )
        assert [e.ok for e in events if isinstance(e, OrderResult)] == [True, False, False]
        assert stream.closed and stream.error is ended.value
        assert (await tickets[1].result()).order_id == "o-" + tickets[1].client_order_id
        for ticket in (tickets[0], tickets[2]):
            with pytest.raises(BackboneError) as unknown:
                await ticket.result()
            error = unknown.value
            assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, RejectReason.OUTCOME_UNKNOWN)
            assert error.metadata["client_order_id"] == ticket.client_order_id
            assert "same client_order_id" in error.message and error.retryable
        with pytest.raises(BackboneError) as closed:
            await stream.submit("BTC-USD", "buy", Decimal("1"), Decimal("1"))
        assert closed.value.reason == RejectReason.NOT_SENT
        async for _ in stream:
            raise AssertionError("the iteration ended")
        await stream.close()

    await with_client(gateway, use)


async def test_unanswered_commands_are_sent_again_with_their_client_order_ids() -> None:
    gateway = ScriptedGateway(fail_at=2)

    async def use(client: AsyncClient) -> None:
        async with client.order_stream(events="none") as stream:
            tickets = await stream.submit_many(
                [NewOrder("BTC-USD", "buy", Decimal("1"), Decimal(n + 1)) for n in range(3)]
            )
            outcomes = [await ticket.outcome() for ticket in tickets]
        assert [o.error.reason if o.error else "ok" for o in outcomes] == ["OUTCOME_UNKNOWN"] * 3
        gateway.fail_at = None
        async with client.order_stream() as again:
            resent = await again.submit_many([t.command for t in tickets])
            orders = [await ticket.result() for ticket in resent]
        assert [o.client_order_id for o in orders] == [t.client_order_id for t in tickets]
        assert [c.submit.client_order_id for c in gateway.requests[-1].commands] == [
            t.client_order_id for t in tickets
        ]

    await with_client(gateway, use)


async def test_commands_never_sent_are_not_sent_and_leaving_on_an_error_closes_at_once() -> None:
    gateway = ScriptedGateway(hold=True)

    async def use(client: AsyncClient) -> None:
        kept: list[Any] = []
        with pytest.raises(RuntimeError):
            async with client.order_stream() as stream:
                kept.append(await stream.submit("BTC-USD", "buy", Decimal("1"), Decimal("1")))
                await gateway.wait_received(1)
                kept.append(await stream.submit("BTC-USD", "buy", Decimal("1"), Decimal("2")))
                raise RuntimeError("the caller's own failure")
        sent, queued = [await ticket.outcome() for ticket in kept]
        assert sent.error is not None and queued.error is not None
        assert (sent.error.code, sent.error.reason) == (
            grpc.StatusCode.CANCELLED,
            RejectReason.OUTCOME_UNKNOWN,
        )
        assert (queued.error.code, queued.error.reason) == (grpc.StatusCode.CANCELLED, RejectReason.NOT_SENT)
        assert (sent.request_number, queued.request_number) == (1, 0)
        assert "closed the order stream" in sent.error.message

    await with_client(gateway, use)


async def test_later_reports_come_typed_and_count_for_read_your_writes() -> None:
    gateway = ScriptedGateway()

    async def use(client: AsyncClient) -> None:
        async with client.order_stream() as stream:
            ticket = await stream.submit("FILLS", "buy", Decimal("1"), Decimal("1"))
            events: list[OrderStreamEvent] = []
            async for event in stream:
                events.append(event)
                if isinstance(event, ExecutionReport):
                    break
        result, fill = events
        assert isinstance(result, OrderResult) and result.order_id == "o-" + ticket.client_order_id
        assert isinstance(fill, ExecutionReport) and fill.execution_type == ExecutionType.TRADE
        assert fill.order.status == OrderStatus.FILLED
        assert client.seen_trading_sequence == fill.trading_sequence == 2
        await client.get_balances()
        assert gateway.balance_requests[-1].min_trading_sequence == 2

    await with_client(gateway, use)


async def test_closing_waits_for_every_answer_and_events_stay_readable() -> None:
    gateway = ScriptedGateway(hold=True)

    async def use(client: AsyncClient) -> None:
        stream = await client.order_stream(buffer=1).open()
        tickets = await stream.submit_many(
            [NewOrder("BTC-USD", "buy", Decimal("1"), Decimal(n + 1)) for n in range(3)]
        )
        closing = asyncio.create_task(stream.close())
        await gateway.wait_received(3)
        # Three responses for a buffer of one: closing reads on regardless, then ends the stream.
        for entry in gateway.received:
            gateway.answer(entry)
        await closing
        assert all(t.done() for t in tickets) and stream.closed and stream.error is None
        assert gateway.input_ended.is_set()
        taken = [event async for event in stream]
        assert sorted(r.index for r in taken if isinstance(r, OrderResult)) == [0, 1, 2]
        with pytest.raises(BackboneError) as closed:
            await stream.submit("BTC-USD", "buy", Decimal("1"), Decimal("1"))
        assert (closed.value.code, closed.value.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            RejectReason.NOT_SENT,
        )

    await with_client(gateway, use)


async def test_drain_reads_past_a_full_buffer_and_the_events_modes() -> None:
    gateway = ScriptedGateway()

    async def use(client: AsyncClient) -> None:
        async with client.order_stream(buffer=1) as stream:
            for n in range(3):
                await stream.submit("FILLS", "buy", Decimal("1"), Decimal(n + 1))
                await asyncio.sleep(0)  # separate requests, so separate responses
            await stream.drain()
            taken = await results(stream, 3)
            assert len(taken) == 3
        async with client.order_stream(events="reports") as reports:
            ticket = await reports.submit("FILLS", "buy", Decimal("1"), Decimal("1"))
            first = await reports.__anext__()
            assert (
                isinstance(first, ExecutionReport) and first.order.order_id == "o-" + ticket.client_order_id
            )
        async with client.order_stream(events="none") as quiet:
            ticket = await quiet.submit("FILLS", "buy", Decimal("1"), Decimal("1"))
            assert (await ticket.result()).status == OrderStatus.NEW
            with pytest.raises(TypeError):
                await quiet.__anext__()

    await with_client(gateway, use)


async def test_bad_arguments_raise_before_anything_is_sent() -> None:
    gateway = ScriptedGateway()

    async def use(client: AsyncClient) -> None:
        async with client.order_stream() as stream:
            with pytest.raises(TypeError):
                await stream.submit("BTC-USD", "buy", 1.5, Decimal("1"))  # type: ignore[arg-type]
            with pytest.raises(BackboneError) as caught:
                await stream.submit_many(
                    [
                        NewOrder("BTC-USD", "buy", Decimal("1"), Decimal("1")),
                        NewOrder("BTC-USD", "up", Decimal("1"), Decimal("1")),
                    ]
                )
            assert caught.value.reason == RejectReason.INVALID_SIDE
            good = await stream.submit("BTC-USD", "buy", Decimal("1"), Decimal("1"))
            await good.result()
        assert [len(request.commands) for request in gateway.requests] == [1]
        with pytest.raises(ValueError):
            client.order_stream(events="some")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            client.order_stream(buffer=0)

    await with_client(gateway, use)


async def test_a_refused_stream_raises_when_opened() -> None:
    gateway = ScriptedGateway()

    async def use(client: AsyncClient) -> None:
        with pytest.raises(BackboneError) as caught:
            async with client.order_stream():
                raise AssertionError("the stream opened")
        assert (caught.value.code, caught.value.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            RejectReason.UNKNOWN_API_KEY,
        )

    await with_client(gateway, use, api_key="bbk_other")


# --- blocking ------------------------------------------------------------------------------------


async def test_the_blocking_stream() -> None:
    gateway = ScriptedGateway(max_in_flight=1500)
    server, target = await start(gateway)

    def use() -> None:
        with Client.connect(target, api_key="bbk_k", timeout_seconds=20) as client:
            with client.order_stream() as stream:
                assert stream.max_in_flight == 1500
                placed = stream.submit("BTC-USD", "buy", Decimal("100.25"), Decimal("0.5"), tag="a")
                refused = stream.submit("BAD", "buy", Decimal("1.001"), Decimal("1"))
                cancelled = stream.cancel("o-old")
                filled = stream.submit("FILLS", "sell", Decimal("1"), Decimal("1"))
                assert placed.result(timeout=20).price == Decimal("100.25")
                with pytest.raises(BackboneError) as caught:
                    refused.result(timeout=20)
                assert [v.field for v in caught.value.violations] == ["price"]
                assert cancelled.result().status == OrderStatus.CANCELLED
                seen: list[OrderStreamEvent] = []
                for event in stream:
                    seen.append(event)
                    if isinstance(event, ExecutionReport):
                        break
                assert sum(isinstance(e, OrderResult) for e in seen) == 4
                fill = seen[-1]
                assert (
                    isinstance(fill, ExecutionReport) and fill.order.order_id == "o-" + filled.client_order_id
                )
                assert client.seen_trading_sequence == fill.trading_sequence
                many = stream.submit_many(
                    [NewOrder("BTC-USD", "buy", Decimal("1"), Decimal("1")) for _ in range(2500)]
                )
                stream.drain(timeout=60)
                assert all(ticket.done() and ticket.outcome().ok for ticket in many)
            assert stream.closed and gateway.input_ended.is_set()
            client.get_balances()
            assert client.seen_trading_sequence == gateway.sequence  # the 2,500 orders' reports too
            assert gateway.balance_requests[-1].min_trading_sequence == gateway.sequence
        # The window (1,500) holds 1,500 of the 2,500 at most; requests carry up to 1,000.
        assert gateway.most_unanswered <= 1500
        assert max(len(request.commands) for request in gateway.requests) == 1000

    try:
        await asyncio.to_thread(use)
    finally:
        await server.stop(0)


async def test_the_blocking_stream_when_it_fails() -> None:
    gateway = ScriptedGateway(fail_at=2)
    server, target = await start(gateway)

    def use() -> None:
        with Client.connect(target, api_key="bbk_k", timeout_seconds=20) as client:
            stream = client.order_stream()
            tickets = stream.submit_many(
                [NewOrder("BTC-USD", "buy", Decimal("1"), Decimal(n + 1)) for n in range(3)]
            )
            events: list[OrderStreamEvent] = []
            with pytest.raises(BackboneError) as ended:
                events.extend(stream)
            assert ended.value.reason == RejectReason.SERVICE_STOPPING
            assert [e.error.reason for e in events if isinstance(e, OrderResult) and e.error] == [
                "OUTCOME_UNKNOWN"
            ] * 3
            assert all(t.outcome().error is not None for t in tickets)
            with pytest.raises(BackboneError):
                stream.submit("BTC-USD", "buy", Decimal("1"), Decimal("1"))
            stream.close()
        with Client.connect(target, api_key="bbk_other") as stranger, pytest.raises(BackboneError) as refused:
            stranger.order_stream()
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED

    try:
        await asyncio.to_thread(use)
    finally:
        await server.stop(0)


async def test_an_answer_to_a_command_never_sent_ends_the_stream_rather_than_leave_it_waiting() -> None:
    gateway = ScriptedGateway(hold=True)

    async def use(client: AsyncClient) -> None:
        stream = await client.order_stream().open()
        ticket = await stream.submit("BTC-USD", "buy", Decimal("1"), Decimal("1"))
        await gateway.wait_received(1)
        _, _, command = gateway.received[0]
        gateway.answer((7, 0, command))
        with pytest.raises(BackboneError) as broken:
            async for _ in stream:
                pass
        assert broken.value.reason == RejectReason.PROTOCOL_ERROR
        outcome = await ticket.outcome()
        assert outcome.error is not None and outcome.error.reason == RejectReason.OUTCOME_UNKNOWN
        await stream.close()

    await with_client(gateway, use)
