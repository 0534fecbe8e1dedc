"""The asyncio order stream: batched order entry over GatewayService.StreamOrders."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal
from types import TracebackType

import grpc
import grpc.aio

from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason

from ._errors import BackboneError
from ._models import (
    CancelOrder,
    NewOrder,
    Order,
    OrderCommand,
    OrderResult,
    OrderType,
    ReplaceOrder,
    SelfTradePrevention,
    TimeInForce,
    order_command_proto,
)
from ._order_stream import (
    EventsMode,
    OrderStreamEvent,
    StreamState,
    TicketBase,
    closed_error,
    ended_without_status,
    event_of,
    not_iterable_error,
    open_timeout_error,
    stalled_error,
)

OrdersCall = grpc.aio.StreamStreamCall[gateway_pb2.StreamOrdersRequest, gateway_pb2.StreamOrdersResponse]


class AsyncOrderTicket(TicketBase):
    """A command sent on an :class:`AsyncOrderStream`; ``await ticket.result()`` for its answer.

    ``result()`` returns the order after the command or raises its refusal
    as :class:`BackboneError`; ``outcome()`` returns the :class:`OrderResult`
    either way. ``command`` is what was sent: hand it to ``submit_many`` on a
    new stream to send it again (a NewOrder keeps its client_order_id).
    """

    __slots__ = ("_waiter",)

    def __init__(self, command: OrderCommand, proto: gateway_pb2.OrderCommand) -> None:
        super().__init__(command, proto)
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def outcome(self) -> OrderResult:
        """Wait for the command's answer; a refusal is in ``OrderResult.error``, not raised."""
        await self._answered()
        return self._result_now()

    async def _answered(self) -> None:
        """Wait until the command is answered (without converting the answer)."""
        if self._answer is None:
            if self._waiter is None or self._waiter.cancelled():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)

    async def result(self) -> Order:
        """Wait for the command's answer: the order after it, or its refusal raised as BackboneError."""
        return (await self.outcome()).order_or_raise()


def _internal(what: str, error: BaseException) -> BackboneError:
    return BackboneError(
        grpc.StatusCode.INTERNAL, RejectReason.INTERNAL_ERROR, f"the order stream's {what} failed: {error!r}"
    )


# What grpc.aio puts in place of the call's status when a write fails because the call ended
# (grpc.aio's _write calls set_internal_error, which overwrites the status the gateway sent).
_LOST_STATUS = "Internal error from Core"


def _stream_error(error: BackboneError) -> BackboneError:
    """The stream's failure as the caller should see it."""
    if error.code == grpc.StatusCode.INTERNAL and error.message == _LOST_STATUS and not error.metadata:
        return BackboneError(
            grpc.StatusCode.UNAVAILABLE,
            RejectReason.UNSPECIFIED,
            "the order stream ended while a request was on its way to the gateway, and gRPC kept "
            "no status from the gateway (grpc.aio reports INTERNAL 'Internal error from Core' "
            "then): the gateway stopped or dropped the stream; open a new one and send the "
            "unanswered commands again with the same client_order_ids",
        )
    return error


def _task_cancelled() -> bool:
    """True when the running task itself is being cancelled (not just the call, by this stream)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class AsyncOrderStream:
    """Order entry at speed: ``async with client.order_stream() as stream``.

    ``await stream.submit(...)`` and ``await stream.cancel(...)`` return a
    ticket at once, without waiting for the answer; commands given in the
    same event-loop turn (or with ``submit_many``) travel in one request of
    up to 1,000. At most the gateway's ``max_in_flight`` commands are
    unanswered at a time: past that, ``submit`` waits for room (flow
    control; nothing is buffered without bound).

    ``async for event in stream`` yields each command's :class:`OrderResult`
    as it is answered (not in the order sent) and, as
    :class:`ExecutionReport`, the later reports of the stream's orders (a
    resting order filled by someone else). A refused command is a result
    carrying a :class:`BackboneError`, never a failure of the stream (a
    trading restart is not one either: the commands it catches are refused,
    TRADING_UNAVAILABLE or OUTCOME_UNKNOWN, and the stream goes on, its
    orders' later reports included). When the stream itself fails (for
    example UNAVAILABLE when the gateway stops),
    every unanswered command gets a result failed with OUTCOME_UNKNOWN (sent:
    send it again with the same client_order_id, the gateway answers a repeat
    with the order it placed) or NOT_SENT, then the iteration raises the
    stream's BackboneError.

    Events wait for the iterator in a buffer of ``buffer`` events; when it is
    full the stream stops reading from the gateway (answers then wait too)
    until the iterator takes some, so read it while submitting, or open the
    stream with ``events="reports"`` (later reports only) or ``events="none"``
    when you use the tickets alone. Leaving the ``async with`` block normally
    sends what is queued and waits until every command is answered (giving up
    after the client's timeout without any answer); leaving it with an
    exception closes the stream at once.
    """

    def __init__(
        self,
        start_call: Callable[[], OrdersCall],
        *,
        on_sequence: Callable[[int], None],
        timeout_seconds: float,
        events: EventsMode,
        buffer: int,
        cancel_on_disconnect: bool = False,
    ) -> None:
        self._start_call = start_call
        self._state: StreamState[AsyncOrderTicket] = StreamState(
            on_sequence, events, cancel_on_disconnect=cancel_on_disconnect
        )
        self._timeout = timeout_seconds
        self._buffer = buffer
        self._call: OrdersCall | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._opened = asyncio.Event()
        self._to_send = asyncio.Event()
        self._events_ready = asyncio.Event()
        self._buffer_room = asyncio.Event()
        self._progress = asyncio.Event()
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._granted = 0
        self._draining = 0
        self._closing = False
        self._cancelled_by_us = False

    # --- state -----------------------------------------------------------------------------------

    @property
    def max_in_flight(self) -> int:
        """How many commands may be unanswered at once (the gateway's figure; 0 before opening)."""
        return self._state.max_in_flight

    @property
    def unanswered(self) -> int:
        """Commands queued or sent and not answered yet."""
        return self._state.unanswered

    @property
    def closed(self) -> bool:
        """True once the stream has ended (closed, or failed: see ``error``)."""
        return self._state.ended

    @property
    def error(self) -> BackboneError | None:
        """Why the stream failed, once it has (None while open and after a normal close)."""
        return self._state.error

    def __repr__(self) -> str:
        state = "closed" if self._state.ended else "open" if self._call is not None else "not opened"
        return f"AsyncOrderStream({state}, unanswered={self.unanswered}, max_in_flight={self.max_in_flight})"

    # --- opening and closing -------------------------------------------------------------------

    async def open(self) -> AsyncOrderStream:
        """Open the stream and wait for the gateway's first answer (its max_in_flight)."""
        if self._call is not None:
            if self._state.opened or self._state.ended:
                self._raise_if_failed_to_open()
                return self
        else:
            call = self._start_call()
            self._call = call
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._read_loop(call)), loop.create_task(self._write_loop(call))]
        try:
            await asyncio.wait_for(self._opened.wait(), self._timeout)
        except TimeoutError:
            error = open_timeout_error(self._timeout)
            self._abort(error)
            self._state.error_raised = True
            raise error from None
        except BaseException:
            self._abort(None)
            raise
        self._raise_if_failed_to_open()
        return self

    def _raise_if_failed_to_open(self) -> None:
        if not self._state.opened and self._state.ended:
            error = self._state.error_to_raise() or self._state.error or closed_error(None)
            raise error

    async def close(self) -> None:
        """Send what is queued, half-close, and wait until every command is answered and the stream ends.

        It waits as long as answers keep coming; after the client's timeout
        without any, the rest are failed as OUTCOME_UNKNOWN (and the iterator
        raises that). Results and reports already received stay readable
        through the iterator.
        """
        if self._call is None:
            self._closing = True
            self._finish(None)
            return
        if not self._closing:
            self._closing = True
            self._fail_room_waiters(closed_error(None))
            self._to_send.set()
            self._draining += 1
            self._buffer_room.set()
            try:
                await self._wait_answered()
                if not self._state.ended:
                    # Every command is answered and the input half-closed: the gateway ends the
                    # stream now; one that keeps it open is cut off after the timeout.
                    await asyncio.wait([self._tasks[0]], timeout=self._timeout)
            finally:
                self._draining -= 1
            if not self._state.ended:
                self._abort(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def abort(self) -> None:
        """End the stream at once: unanswered commands are failed (OUTCOME_UNKNOWN or NOT_SENT)."""
        self._closing = True
        self._abort(None)

    def _abort(self, error: BackboneError | None) -> None:
        self._closing = True
        if self._call is not None and not self._call.done():
            self._cancelled_by_us = True
            self._call.cancel()
        self._finish(error)

    async def __aenter__(self) -> AsyncOrderStream:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            self.abort()

    # --- commands --------------------------------------------------------------------------------

    async def submit(
        self,
        symbol: str,
        side: str | int,
        price: Decimal | None,
        quantity: Decimal,
        *,
        client_order_id: str | None = None,
        tag: str | None = None,
        order_type: OrderType | str = OrderType.LIMIT,
        time_in_force: TimeInForce | str | None = None,
        post_only: bool = False,
        self_trade_prevention: SelfTradePrevention | str | None = None,
        quote_budget: Decimal | None = None,
    ) -> AsyncOrderTicket:
        """Send an order; returns its ticket at once (it waits only for room in the window).

        Arguments are those of ``AsyncClient.submit_order`` (a client_order_id
        is generated when None). Bad arguments the SDK can see (a float, a
        NaN, an unknown side) raise here and nothing is sent; everything else
        is answered on the ticket and the iterator.
        """
        command = NewOrder(
            symbol,
            side,
            price,
            quantity,
            client_order_id or "",
            tag,
            order_type,
            time_in_force,
            post_only,
            self_trade_prevention,
            quote_budget,
        )
        return await self.send(command)

    async def cancel(self, order_id: str, *, tag: str | None = None) -> AsyncOrderTicket:
        """Cancel an order's open quantity; returns the cancel's ticket at once."""
        return await self.send(CancelOrder(order_id, tag))

    async def replace(
        self,
        order_id: str,
        *,
        price: Decimal | None = None,
        quantity: Decimal | None = None,
        tag: str | None = None,
    ) -> AsyncOrderTicket:
        """Replace an open order's price and/or total quantity (as ``replace_order``); returns the
        replace's ticket at once (its result is the order after the replace)."""
        return await self.send(ReplaceOrder(order_id, price, quantity, tag))

    async def send(self, command: OrderCommand) -> AsyncOrderTicket:
        """Send one NewOrder, CancelOrder or ReplaceOrder (for example a ticket's ``command`` again)."""
        proto = order_command_proto(command)
        await self._reserve()
        return self._queue(command, proto)

    async def submit_many(self, commands: Iterable[OrderCommand]) -> list[AsyncOrderTicket]:
        """Send several commands; returns their tickets, in the same order, once all are queued.

        Every command is checked before any is sent (a bad one raises and
        nothing is sent). They travel in requests of up to 1,000, each one
        waiting for room in the window as needed. If the stream ends part way,
        this raises; the commands already queued are answered on the iterator
        (send every command again with the same client_order_ids to be sure).
        """
        prepared = [(command, order_command_proto(command)) for command in commands]
        tickets: list[AsyncOrderTicket] = []
        for command, proto in prepared:
            await self._reserve()
            tickets.append(self._queue(command, proto))
        return tickets

    async def drain(self) -> None:
        """Wait until every command sent so far is answered (or failed with the stream)."""
        if self._call is None:
            return
        waiting = [*self._state.pending, *self._state.sent.values()]
        self._draining += 1
        self._buffer_room.set()
        try:
            for ticket in waiting:
                await ticket._answered()
        finally:
            self._draining -= 1

    def _queue(self, command: OrderCommand, proto: gateway_pb2.OrderCommand) -> AsyncOrderTicket:
        ticket = AsyncOrderTicket(command, proto)
        self._state.queue(ticket)
        self._to_send.set()
        return ticket

    def _has_room(self) -> bool:
        return self._state.unanswered + self._granted < self._state.max_in_flight

    async def _reserve(self) -> None:
        """Return when one more command may be queued (at once when the window has room)."""
        if self._call is None:
            await self.open()
        if self._state.ended or self._closing:
            raise closed_error(self._state.error)
        if not self._room_waiters and self._has_room():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room_waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._granted -= 1  # room was handed over just before the cancel: pass it on
                self._grant()
            raise
        self._granted -= 1
        if self._state.ended or self._closing:
            raise closed_error(self._state.error)

    def _grant(self) -> None:
        while self._room_waiters and self._has_room():
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                self._granted += 1
                waiter.set_result(None)

    def _fail_room_waiters(self, error: BackboneError) -> None:
        while self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    async def _wait_answered(self) -> None:
        """Wait until nothing is unanswered; after the timeout without any answer, give up (stalled)."""
        while self._state.unanswered and not self._state.ended:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), self._timeout)
            except TimeoutError:
                self._abort(stalled_error(self._timeout, self._state.unanswered))
                return

    # --- the call's two loops ----------------------------------------------------------------------

    async def _write_loop(self, call: OrdersCall) -> None:
        """Send queued commands, up to 1,000 per request; half-close once closing and all is sent."""
        try:
            while not self._state.ended:
                request = self._state.next_request()
                if request is not None:
                    await call.write(request)
                    continue
                if self._closing:
                    await call.done_writing()
                    return
                self._to_send.clear()
                await self._to_send.wait()
        except (grpc.RpcError, asyncio.InvalidStateError):
            return  # the stream ended: the reader learns why and fails what is unanswered
        except asyncio.CancelledError:
            if not self._cancelled_by_us or _task_cancelled():
                raise
        except Exception as error:
            self._abort(_internal("writer", error))

    async def _read_loop(self, call: OrdersCall) -> None:
        """Take in responses: answer tickets, free room, keep events; end the stream on failure."""
        error: BackboneError | None = None
        try:
            while True:
                response = await call.read()
                if not isinstance(response, gateway_pb2.StreamOrdersResponse):  # grpc.aio.EOF
                    if self._state.unanswered and not self._cancelled_by_us:
                        error = ended_without_status()
                    return
                self._take(response)
                while (
                    len(self._state.events) >= self._buffer and not self._draining and not self._state.ended
                ):
                    self._buffer_room.clear()
                    await self._buffer_room.wait()
        except grpc.RpcError as rpc_error:
            if not self._cancelled_by_us:
                error = _stream_error(BackboneError.from_rpc_error(rpc_error))
        except BackboneError as broken:  # the gateway broke the protocol
            error = broken
        except asyncio.CancelledError:
            if not self._cancelled_by_us or _task_cancelled():
                raise
        except Exception as unexpected:
            error = _internal("reader", unexpected)
        finally:
            self._abort(error)

    def _take(self, response: gateway_pb2.StreamOrdersResponse) -> None:
        before = len(self._state.events)
        answered = self._state.receive(response)
        if not self._opened.is_set():
            self._opened.set()
            self._grant()
        if answered:
            self._progress.set()
            self._grant()
        if len(self._state.events) != before:
            self._events_ready.set()

    def _finish(self, error: BackboneError | None) -> None:
        """The stream is over: fail what is unanswered and wake every waiter (once)."""
        if self._state.ended:
            return
        self._state.end(error)
        self._fail_room_waiters(closed_error(error))
        for event in (self._opened, self._to_send, self._events_ready, self._buffer_room, self._progress):
            event.set()

    # --- iteration -------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncOrderStream:
        return self

    async def __anext__(self) -> OrderStreamEvent:
        """The next result or later report; the stream's failure is raised after the last one."""
        if not self._state.keep_reports:
            raise not_iterable_error()
        if self._call is None:
            await self.open()
        while True:
            item = self._state.pop_event()
            if item is not None:
                self._buffer_room.set()
                return event_of(item)
            if self._state.ended:
                error = self._state.error_to_raise()
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self._events_ready.clear()
            await self._events_ready.wait()
