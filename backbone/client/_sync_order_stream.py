"""The blocking order stream: batched order entry over GatewayService.StreamOrders, for threads."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from types import TracebackType
from typing import Protocol

import grpc

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


class OrdersCall(Protocol):
    """The part of a blocking stream-stream call the order stream uses."""

    def __next__(self) -> gateway_pb2.StreamOrdersResponse: ...

    def cancel(self) -> bool: ...


class OrderTicket(TicketBase):
    """A command sent on an :class:`OrderStream`; ``ticket.result()`` blocks for its answer.

    ``result()`` returns the order after the command or raises its refusal
    as :class:`BackboneError`; ``outcome()`` returns the :class:`OrderResult`
    either way. Both take an optional ``timeout`` in seconds (TimeoutError
    when no answer came by then; the command is still under way).
    ``command`` is what was sent: hand it to ``submit_many`` on a new stream
    to send it again (a NewOrder keeps its client_order_id).
    """

    __slots__ = ("_changed",)

    def __init__(
        self, command: OrderCommand, proto: gateway_pb2.OrderCommand, changed: threading.Condition
    ) -> None:
        super().__init__(command, proto)
        self._changed = changed

    def outcome(self, timeout: float | None = None) -> OrderResult:
        """Wait for the command's answer; a refusal is in ``OrderResult.error``, not raised."""
        if self._answer is None:
            with self._changed:
                if not self._changed.wait_for(self.done, timeout):
                    raise TimeoutError(f"no answer to {self.command!r} within {timeout:g}s")
        return self._result_now()

    def result(self, timeout: float | None = None) -> Order:
        """Wait for the command's answer: the order after it, or its refusal raised as BackboneError."""
        return self.outcome(timeout).order_or_raise()


def _internal(what: str, error: BaseException) -> BackboneError:
    return BackboneError(
        grpc.StatusCode.INTERNAL, RejectReason.INTERNAL_ERROR, f"the order stream's {what} failed: {error!r}"
    )


class OrderStream:
    """Order entry at speed, blocking: ``with client.order_stream() as stream``.

    ``stream.submit(...)`` and ``stream.cancel(...)`` return a ticket at
    once, without waiting for the answer; commands given while the previous
    request is being sent (or with ``submit_many``) travel in one request of
    up to 1,000. At most the gateway's ``max_in_flight`` commands are
    unanswered at a time: past that, ``submit`` blocks until there is room
    (flow control; nothing is buffered without bound). Any thread may submit.

    ``for event in stream`` yields each command's :class:`OrderResult` as it
    is answered (not in the order sent) and, as :class:`ExecutionReport`,
    the later reports of the stream's orders. A refused command is a result
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
    until the iterator takes some, so read it while submitting (another
    thread), or open the stream with ``events="reports"`` or
    ``events="none"`` when you use the tickets alone. Leaving the ``with``
    block normally sends what is queued and waits until every command is
    answered (giving up after the client's timeout without any answer);
    leaving it with an exception closes the stream at once.
    """

    def __init__(
        self,
        start_call: Callable[[Iterator[gateway_pb2.StreamOrdersRequest]], OrdersCall],
        *,
        on_sequence: Callable[[int], None],
        timeout_seconds: float,
        events: EventsMode,
        buffer: int,
        cancel_on_disconnect: bool = False,
    ) -> None:
        self._start_call = start_call
        self._state: StreamState[OrderTicket] = StreamState(
            on_sequence, events, cancel_on_disconnect=cancel_on_disconnect
        )
        self._timeout = timeout_seconds
        self._buffer = buffer
        lock = threading.Lock()
        # Both conditions share the one lock that guards all the stream's state.
        self._changed = threading.Condition(lock)
        self._to_send = threading.Condition(lock)
        self._call: OrdersCall | None = None
        self._reader: threading.Thread | None = None
        self._room_queue: deque[object] = deque()
        self._answers = 0
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
        with self._changed:
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
        counts = f"unanswered={self._state.unanswered}, max_in_flight={self.max_in_flight}"
        return f"OrderStream({state}, {counts})"

    # --- opening and closing -------------------------------------------------------------------

    def open(self) -> OrderStream:
        """Open the stream and wait for the gateway's first answer (its max_in_flight)."""
        with self._changed:
            if self._call is None:
                self._call = self._start_call(self._requests())
                self._reader = threading.Thread(
                    target=self._read_loop, args=(self._call,), name="backbone-order-stream", daemon=True
                )
                self._reader.start()
            opened = self._changed.wait_for(lambda: self._state.opened or self._state.ended, self._timeout)
            if not opened:
                error = open_timeout_error(self._timeout)
                self._abort_locked(error)
                self._state.error_raised = True
                raise error
            if not self._state.opened:
                raise self._state.error_to_raise() or self._state.error or closed_error(None)
        return self

    def close(self) -> None:
        """Send what is queued, half-close, and wait until every command is answered and the stream ends.

        It waits as long as answers keep coming; after the client's timeout
        without any, the rest are failed as OUTCOME_UNKNOWN (and the iterator
        raises that). Results and reports already received stay readable
        through the iterator.
        """
        with self._changed:
            if self._call is None:
                self._closing = True
                self._finish_locked(None)
                return
            if not self._closing:
                self._closing = True
                self._draining += 1
                self._to_send.notify_all()
                self._changed.notify_all()
                try:
                    self._wait_answered_locked()
                    if not self._state.ended:
                        # Every command is answered and the input half-closed: the gateway ends
                        # the stream now; one that keeps it open is cut off after the timeout.
                        self._changed.wait_for(lambda: self._state.ended, self._timeout)
                finally:
                    self._draining -= 1
                if not self._state.ended:
                    self._abort_locked(None)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(self._timeout)

    def abort(self) -> None:
        """End the stream at once: unanswered commands are failed (OUTCOME_UNKNOWN or NOT_SENT)."""
        with self._changed:
            self._abort_locked(None)

    def _abort_locked(self, error: BackboneError | None) -> None:
        self._closing = True
        if self._call is not None and not self._state.ended:
            self._cancelled_by_us = True
            self._call.cancel()
        self._finish_locked(error)

    def __enter__(self) -> OrderStream:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # --- commands --------------------------------------------------------------------------------

    def submit(
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
    ) -> OrderTicket:
        """Send an order; returns its ticket at once (it waits only for room in the window).

        Arguments are those of ``Client.submit_order`` (a client_order_id is
        generated when None). Bad arguments the SDK can see (a float, a NaN,
        an unknown side) raise here and nothing is sent; everything else is
        answered on the ticket and the iterator.
        """
        return self.send(
            NewOrder(
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
        )

    def cancel(self, order_id: str, *, tag: str | None = None) -> OrderTicket:
        """Cancel an order's open quantity; returns the cancel's ticket at once."""
        return self.send(CancelOrder(order_id, tag))

    def replace(
        self,
        order_id: str,
        *,
        price: Decimal | None = None,
        quantity: Decimal | None = None,
        tag: str | None = None,
    ) -> OrderTicket:
        """Replace an open order's price and/or total quantity (as ``replace_order``); returns the
        replace's ticket at once (its result is the order after the replace)."""
        return self.send(ReplaceOrder(order_id, price, quantity, tag))

    def send(self, command: OrderCommand) -> OrderTicket:
        """Send one NewOrder, CancelOrder or ReplaceOrder (for example a ticket's ``command`` again)."""
        proto = order_command_proto(command)
        self._ensure_open()
        with self._changed:
            self._reserve_locked()
            return self._queue_locked(command, proto)

    def submit_many(self, commands: Iterable[OrderCommand]) -> list[OrderTicket]:
        """Send several commands; returns their tickets, in the same order, once all are queued.

        Every command is checked before any is sent (a bad one raises and
        nothing is sent). They travel in requests of up to 1,000, each one
        waiting for room in the window as needed. If the stream ends part way,
        this raises; the commands already queued are answered on the iterator
        (send every command again with the same client_order_ids to be sure).
        """
        prepared = [(command, order_command_proto(command)) for command in commands]
        self._ensure_open()
        tickets: list[OrderTicket] = []
        with self._changed:
            for command, proto in prepared:
                self._reserve_locked()
                tickets.append(self._queue_locked(command, proto))
        return tickets

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every command sent so far is answered (or failed with the stream).

        TimeoutError when they are not all answered within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            waiting = [*self._state.pending, *self._state.sent.values()]
            self._draining += 1
            self._changed.notify_all()
            try:
                for ticket in waiting:
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if not self._changed.wait_for(ticket.done, remaining):
                        raise TimeoutError(f"commands still unanswered after {timeout:g}s")
            finally:
                self._draining -= 1

    def _ensure_open(self) -> None:
        if self._call is None:
            self.open()

    def _queue_locked(self, command: OrderCommand, proto: gateway_pb2.OrderCommand) -> OrderTicket:
        ticket = OrderTicket(command, proto, self._changed)
        self._state.queue(ticket)
        self._to_send.notify()
        return ticket

    def _has_room(self) -> bool:
        return self._state.unanswered < self._state.max_in_flight

    def _reserve_locked(self) -> None:
        """Return when one more command may be queued (at once when the window has room); FIFO."""
        if self._state.ended or self._closing:
            raise closed_error(self._state.error)
        if not self._room_queue and self._has_room():
            return
        turn = object()
        self._room_queue.append(turn)
        try:
            self._changed.wait_for(
                lambda: (
                    self._state.ended or self._closing or (self._room_queue[0] is turn and self._has_room())
                )
            )
        finally:
            self._room_queue.remove(turn)
            self._changed.notify_all()
        if self._state.ended or self._closing:
            raise closed_error(self._state.error)

    def _wait_answered_locked(self) -> None:
        """Wait until nothing is unanswered; after the timeout without any answer, give up (stalled)."""
        answers = self._answers
        quiet_until = time.monotonic() + self._timeout
        while self._state.unanswered and not self._state.ended:
            remaining = quiet_until - time.monotonic()
            if remaining <= 0:
                self._abort_locked(stalled_error(self._timeout, self._state.unanswered))
                return
            self._changed.wait(remaining)
            if self._answers != answers:
                answers = self._answers
                quiet_until = time.monotonic() + self._timeout

    # --- the call's request iterator and reader ----------------------------------------------------

    def _requests(self) -> Iterator[gateway_pb2.StreamOrdersRequest]:
        """Run by gRPC's sending thread: each request takes every queued command (up to 1,000)."""
        while True:
            with self._to_send:
                while True:
                    if self._state.ended:
                        return
                    request = self._state.next_request()
                    if request is not None:
                        break
                    if self._closing:
                        return  # half-close: everything queued is sent
                    self._to_send.wait()
            yield request

    def _read_loop(self, call: OrdersCall) -> None:
        """Take in responses: answer tickets, free room, keep events; end the stream on failure."""
        error: BackboneError | None = None
        try:
            while True:
                try:
                    response = next(call)
                except StopIteration:
                    with self._changed:
                        if self._state.unanswered and not self._cancelled_by_us:
                            error = ended_without_status()
                    return
                with self._changed:
                    answered = self._state.receive(response)
                    self._answers += answered
                    self._changed.notify_all()
                    while (
                        len(self._state.events) >= self._buffer
                        and not self._draining
                        and not self._state.ended
                    ):
                        self._changed.wait()
        except grpc.RpcError as rpc_error:
            if not self._cancelled_by_us:
                error = BackboneError.from_rpc_error(rpc_error)
        except BackboneError as broken:  # the gateway broke the protocol
            error = broken
        except Exception as unexpected:
            error = _internal("reader", unexpected)
        finally:
            with self._changed:
                self._abort_locked(error)

    def _finish_locked(self, error: BackboneError | None) -> None:
        """The stream is over: fail what is unanswered and wake every waiter (once)."""
        if self._state.ended:
            return
        self._state.end(error)
        self._changed.notify_all()
        self._to_send.notify_all()

    # --- iteration -------------------------------------------------------------------------------

    def __iter__(self) -> OrderStream:
        return self

    def __next__(self) -> OrderStreamEvent:
        """The next result or later report; the stream's failure is raised after the last one."""
        if not self._state.keep_reports:
            raise not_iterable_error()
        self._ensure_open()
        with self._changed:
            while True:
                item = self._state.pop_event()
                if item is not None:
                    self._changed.notify_all()
                    break
                if self._state.ended:
                    error = self._state.error_to_raise()
                    if error is not None:
                        raise error
                    raise StopIteration
                self._changed.wait()
        return event_of(item)
