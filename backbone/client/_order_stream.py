"""What both order streams share: the commands' bookkeeping, with no I/O and no waiting.

A command is queued (``pending``), then carried by a request (``sent``, keyed by
the request's number on the stream and the command's index in it), then
answered. The async and the blocking stream each drive this state from their
own writer and reader and do their own waiting; it is never touched from two
threads at once (the blocking stream holds its lock around every use).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, Literal, TypeAlias, TypeVar

import grpc

from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason

from ._errors import BackboneError
from ._models import (
    CancelOrder,
    ExecutionReport,
    NewOrder,
    OrderCommand,
    OrderResult,
    ReplaceOrder,
    order_result_from_proto,
    report_from_proto,
)

# The contract's limit of commands per StreamOrdersRequest.
MAX_COMMANDS_PER_REQUEST = 1000
# Events (results and reports) kept for the iterator before the stream stops reading from the
# gateway until some are taken.
DEFAULT_BUFFER = 10_000
# The window used when a gateway's first response names none (the contract says it does).
FALLBACK_MAX_IN_FLIGHT = 1000

EventsMode: TypeAlias = Literal["all", "reports", "none"]
"""What an order stream's iterator yields: results and later reports, later reports only, nothing."""

_EVENTS_MODES = ("all", "reports", "none")


def check_stream_options(events: str, buffer: int) -> None:
    """Refuse a bad events mode or buffer size before anything is opened."""
    if events not in _EVENTS_MODES:
        raise ValueError(f"events must be one of {', '.join(map(repr, _EVENTS_MODES))}, not {events!r}")
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ValueError(f"buffer must be a whole number of events, at least 1, not {buffer!r}")


class TicketBase:
    """One command sent on an order stream, and its answer once it comes."""

    __slots__ = ("_answer", "_outcome", "_proto", "command")

    def __init__(self, command: OrderCommand, proto: gateway_pb2.OrderCommand) -> None:
        self.command = command
        self._proto = proto
        self._answer: gateway_pb2.OrderCommandResult | OrderResult | None = None
        self._outcome: OrderResult | None = None

    @property
    def client_order_id(self) -> str:
        """The new order's client_order_id ("" for a cancel)."""
        return self.command.client_order_id if isinstance(self.command, NewOrder) else ""

    @property
    def tag(self) -> str | None:
        """The command's tag."""
        return self.command.tag

    def done(self) -> bool:
        """True once the command is answered (carried out, refused, or failed with the stream)."""
        return self._answer is not None

    def _result_now(self) -> OrderResult:
        """The answer as an OrderResult (converted once, on first use)."""
        if self._outcome is None:
            answer = self._answer
            assert answer is not None
            if isinstance(answer, OrderResult):
                self._outcome = answer
            else:
                self._outcome = order_result_from_proto(self.command, answer)
        return self._outcome

    def _resolve(self, answer: gateway_pb2.OrderCommandResult | OrderResult) -> None:
        self._answer = answer
        self._wake()

    def _wake(self) -> None:
        """Tell whoever waits for this ticket (each stream's ticket does it its own way)."""

    def __repr__(self) -> str:
        state = "answered" if self.done() else "unanswered"
        return f"{type(self).__name__}({self.command!r}, {state})"


TicketT = TypeVar("TicketT", bound=TicketBase)
OrderStreamEvent: TypeAlias = OrderResult | ExecutionReport
"""What an order stream's iterator yields: a command's result, or a later report of one of its orders."""


def closed_error(cause: BackboneError | None) -> BackboneError:
    """What a submit on a stream that has ended raises: nothing was sent."""
    if cause is None:
        return BackboneError(
            grpc.StatusCode.FAILED_PRECONDITION,
            RejectReason.NOT_SENT,
            "the order stream is closed; nothing was sent: open a new one (client.order_stream())",
        )
    return BackboneError(
        cause.code,
        RejectReason.NOT_SENT,
        f"the order stream ended ({cause.code.name} {cause.reason}: {cause.message}); nothing was "
        "sent: open a new stream and send the command there",
    )


def _unanswered_error(command: OrderCommand, cause: BackboneError | None, sent: bool) -> BackboneError:
    """The failure of a command the stream ended without answering."""
    if cause is None:
        code, why = grpc.StatusCode.CANCELLED, "this client closed the order stream"
    else:
        code, why = cause.code, f"the order stream ended ({cause.code.name} {cause.reason}: {cause.message})"
    if isinstance(command, CancelOrder | ReplaceOrder):
        metadata = {"order_id": command.order_id}
        what = "cancel" if isinstance(command, CancelOrder) else "replace"
        if sent:
            advice = f"it may have taken effect: GetOrder tells, or send the {what} again"
        else:
            advice = f"it was not sent; nothing was done: send the {what} again"
    else:
        metadata = {"client_order_id": command.client_order_id}
        if sent:
            advice = (
                "it may have taken effect: send it again with the same client_order_id (the "
                "gateway answers a repeat with the order it placed)"
            )
        else:
            advice = "it was not sent; nothing was done: send it again with the same client_order_id"
    reason = RejectReason.OUTCOME_UNKNOWN if sent else RejectReason.NOT_SENT
    return BackboneError(code, reason, f"{why} before this command was answered; {advice}", (), metadata)


class StreamState(Generic[TicketT]):
    """The commands of one order stream: queued, sent, answered; and the events for the iterator.

    ``unanswered`` (queued plus sent) is what the stream holds below the
    gateway's ``max_in_flight``. Events wait in ``events`` for the iterator:
    results when ``keep_results``, later reports when ``keep_reports``.
    """

    def __init__(
        self, on_sequence: Callable[[int], None], events: EventsMode, *, cancel_on_disconnect: bool = False
    ) -> None:
        self._on_sequence = on_sequence
        # Asked on every request (the gateway keeps it on once a request of the stream asks).
        self.cancel_on_disconnect = cancel_on_disconnect
        self.keep_results = events == "all"
        self.keep_reports = events != "none"
        self.pending: deque[TicketT] = deque()
        self.sent: dict[tuple[int, int], TicketT] = {}
        self.requests = 0
        self.max_in_flight = 0
        self.opened = False
        self.events: deque[TicketT | gateway_pb2.ExecutionReport] = deque()
        self.ended = False
        # Why the stream ended (None: it ended normally, or was closed by this client).
        self.error: BackboneError | None = None
        self.error_raised = False

    @property
    def unanswered(self) -> int:
        return len(self.pending) + len(self.sent)

    def queue(self, ticket: TicketT) -> None:
        self.pending.append(ticket)

    def next_request(self) -> gateway_pb2.StreamOrdersRequest | None:
        """The next request: up to 1,000 queued commands, registered as sent under its number."""
        if not self.pending:
            return None
        self.requests += 1
        number = self.requests
        count = min(len(self.pending), MAX_COMMANDS_PER_REQUEST)
        commands = []
        for index in range(count):
            ticket = self.pending.popleft()
            self.sent[(number, index)] = ticket
            commands.append(ticket._proto)
        return gateway_pb2.StreamOrdersRequest(
            commands=commands, cancel_on_disconnect=self.cancel_on_disconnect
        )

    def receive(self, response: gateway_pb2.StreamOrdersResponse) -> int:
        """Take in one response; returns how many commands it answered.

        A result naming no unanswered command of this stream cannot come from
        a gateway that keeps the contract: it raises BackboneError
        (PROTOCOL_ERROR), and the stream is ended with it rather than left
        waiting for answers that will not come.
        """
        if not self.opened:
            self.opened = True
            self.max_in_flight = response.max_in_flight or FALLBACK_MAX_IN_FLIGHT
        highest = 0
        answered = 0
        for result in response.results:
            ticket = self.sent.pop((result.request_number, result.index), None)
            if ticket is None:
                raise BackboneError(
                    grpc.StatusCode.INTERNAL,
                    RejectReason.PROTOCOL_ERROR,
                    f"the gateway answered request {result.request_number}, command {result.index}, "
                    "which this stream did not send or had answered already; the stream is ended",
                )
            for report in result.reports:
                highest = max(highest, report.trading_sequence)
            ticket._resolve(result)
            answered += 1
            if self.keep_results:
                self.events.append(ticket)
        for report in response.reports:
            highest = max(highest, report.trading_sequence)
            if self.keep_reports:
                self.events.append(report)
        if highest:
            self._on_sequence(highest)
        return answered

    def end(self, error: BackboneError | None) -> list[TicketT]:
        """The stream is over: fail every unanswered command (returned); later calls do nothing."""
        if self.ended:
            return []
        self.ended = True
        self.error = error
        failed: list[TicketT] = []
        for key in sorted(self.sent):
            ticket = self.sent[key]
            request_number, index = key
            outcome = OrderResult(
                command=ticket.command,
                order=None,
                error=_unanswered_error(ticket.command, error, sent=True),
                request_number=request_number,
                index=index,
            )
            ticket._resolve(outcome)
            failed.append(ticket)
        for ticket in self.pending:
            outcome = OrderResult(
                command=ticket.command, order=None, error=_unanswered_error(ticket.command, error, sent=False)
            )
            ticket._resolve(outcome)
            failed.append(ticket)
        self.sent.clear()
        self.pending.clear()
        if self.keep_results:
            self.events.extend(failed)
        return failed

    def pop_event(self) -> TicketT | gateway_pb2.ExecutionReport | None:
        """The next event for the iterator, as received (see ``event_of``), or None when none waits."""
        return self.events.popleft() if self.events else None

    def error_to_raise(self) -> BackboneError | None:
        """The stream's failure, once, for the iterator to raise after the last event."""
        if self.error is None or self.error_raised:
            return None
        self.error_raised = True
        return self.error


def event_of(item: TicketBase | gateway_pb2.ExecutionReport) -> OrderStreamEvent:
    """An event as the iterator yields it (converted here, outside any lock)."""
    if isinstance(item, gateway_pb2.ExecutionReport):
        return report_from_proto(item)
    return item._result_now()


def open_timeout_error(seconds: float) -> BackboneError:
    return BackboneError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        RejectReason.UNREACHABLE,
        f"the gateway did not open the order stream within {seconds:g}s",
    )


def stalled_error(seconds: float, unanswered: int) -> BackboneError:
    return BackboneError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        RejectReason.OUTCOME_UNKNOWN,
        f"closing the order stream, no answer came for {seconds:g}s while {unanswered} commands were "
        "unanswered; they are failed as OUTCOME_UNKNOWN",
    )


def ended_without_status() -> BackboneError:
    return BackboneError(
        grpc.StatusCode.UNAVAILABLE,
        RejectReason.PROTOCOL_ERROR,
        "the gateway ended the order stream while commands were unanswered",
    )


def not_iterable_error() -> TypeError:
    return TypeError("this order stream was opened with events='none': its results come on the tickets only")
