"""StreamOrders: the public batched order entry, one session per stream.

A session reads request messages, checks every command on its own (a bad one
is answered at once, the others go on), and hands each message's new orders
to the order saga as one batch and its cancels as another (each mass cancel
goes on its own, gateway/mass_cancel.py: answered with the count and the
CANCELLED reports, which the stream's own orders then do not get again as
later reports; each replace goes on its own too, gateway/order_replace.py);
each command's result is written as soon as it is known,
several to a response. At most ``MAX_IN_FLIGHT`` commands are read and not
yet answered (written) at a time: beyond that the session stops reading, so
gRPC flow control slows a caller that sends faster than the system absorbs,
or that does not read its answers.
Orders already handed to the saga are carried to their end even when the
caller goes away (an order is never left half placed); their results are
then dropped, and a retry with the same client_order_id finds them.

Later execution reports of the stream's orders (a resting order filled by
someone else's order) come from the account's reports as StreamExecutions gets
them (gateway/executions.py: the fan-out's, live from the session's start);
each is written once: a report that comes before its order's result waits for
the result, and one the result already carried is not written again.

A trading shard's feed breaking (the shard SIGKILLed and restarted, a dropped
connection) does not end the session: once the feed is back, the account's
reports that shard journaled meanwhile are read from its report history (from
the number after the last report the session got of it, or after the account's
last number when the session started), those of the stream's orders relayed by
the same rules, then the new feed's follow with those the history gave
dropped. Meanwhile the shard's orders are refused as a unary call's would be
(TRADING_UNAVAILABLE, or OUTCOME_UNKNOWN for one the break caught on its way)
and the other shards' go on.

What still ends the session, once it has read no further request and answered
every command of every request it read (a request is answered in full or,
never read, not at all), with UNAVAILABLE or RESOURCE_EXHAUSTED: the server
stopping (the input ends at a message boundary: SERVICE_STOPPING); the session
falling REPORTS_QUEUED reports behind the feed (SLOW_CONSUMER); a shard's feed
breaking before the session learned its report number (the shard did not answer
when the session started, and sent it nothing since), or the history read of a
catch-up failing: EXECUTIONS_INTERRUPTED, since the reports it missed cannot be
fetched. A read trading cannot answer for now (its history behind its journal
right after a restart, the shard restarting again) is sent again for up to
HISTORY_PATIENCE_SECONDS (gateway/executions.py) while the session's commands
go on being answered and its later reports wait; past that, holding them any
longer would be worse than telling the client. The client resends what got no
answer, with the same client order ids, on a new stream (and reconciles open
orders with GetOrder).

Cancel on disconnect (a request's ``cancel_on_disconnect``, on for the rest of
the stream once set): the session follows the orders it placed that are still
open (until an order's final report, from the live feed or from a catch-up's
history read), and when the call ends, however it ends, it cancels them (in
batches, after the orders still being placed are answered), in a task of the
gateway's that outlives the call; when the gateway stops, the session does it
before the stream ends, within the grace period. However it ends, because the
server cannot tell a client that cancelled its call (or lost its connection)
from one that closed its side: grpc.aio ends the request stream the same way for
both (and most venues' cancel on disconnect acts on a logout too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import structlog

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2
from backbone.reasons import RejectReason
from backbone.runtime.errors import ServiceError, invalid_field, unavailable
from backbone.runtime.interceptors import RequestStream
from backbone.trading.v1 import trading_pb2
from gateway import refusals
from gateway.backends import Backends
from gateway.executions import AccountExecutions
from gateway.mass_cancel import check_symbol, mass_cancel
from gateway.order_replace import replace_order
from gateway.order_saga import OrderSaga
from gateway.validation import (
    resolve_account,
    symbol_problem,
    validate_order_id,
    validate_replace_texts,
    validate_submit_order,
)
from gateway.views import add_report_views, report_view

log = structlog.get_logger("backbone.gateway")

# Commands read from one stream and not yet answered.
MAX_IN_FLIGHT = 4_096
# Results written in one response message.
RESULTS_PER_RESPONSE = 1_000
# Execution reports of the stream's account waiting to be looked at by the session.
REPORTS_QUEUED = 65_536
# How long cancel on disconnect waits for the orders still being placed before it cancels.
PLACING_WAIT_SECONDS = 30.0

_TERMINAL = frozenset(
    {
        common_pb2.ORDER_STATUS_FILLED,
        common_pb2.ORDER_STATUS_CANCELLED,
        common_pb2.ORDER_STATUS_REJECTED,
        common_pb2.ORDER_STATUS_EXPIRED,
    }
)


class _Tracked:
    """An order entered on this stream whose reports the session still forwards.

    Every report names the journal sequence of the command that produced it, and a result
    carries every report its command produced for the order: so a report from the fan-out
    whose sequence a result carried is a copy. The fan-out delivers an order's reports in
    journal order, so once it delivers the order's final report (filled, cancelled) nothing
    more can come, and the order is no longer followed.
    """

    __slots__ = ("carried", "early", "waiting")

    def __init__(self) -> None:
        # Commands of this stream about the order whose results are not written yet (its
        # submit, then any cancel): the fan-out's reports wait for them.
        self.waiting = 1
        # The journal sequences of the commands whose results were written.
        self.carried: set[int] = set()
        # Reports the fan-out delivered while a result was awaited.
        self.early: list[common_pb2.ExecutionReport] | None = None


class OrderStreamSession:
    """One StreamOrders call: reads commands, answers each, forwards the stream's later reports."""

    def __init__(self, backends: Backends, saga: OrderSaga, account_id: str) -> None:
        self._backends = backends
        self._default_shard = backends.trading_shards.default.name  # for ids made before shards
        self._saga = saga
        self._account = account_id
        # Commands that may still be read before the oldest is answered (the reader alone takes
        # them; writing results gives them back and wakes it).
        self._free = MAX_IN_FLIGHT
        self._room = asyncio.Event()
        # Responses not yet written, oldest first, each with at most RESULTS_PER_RESPONSE results:
        # results are written into the newest (built in place: protobuf copies a message handed
        # to another), later reports into the oldest (they go with the next response written).
        self._out: deque[gateway_pb2.StreamOrdersResponse] = deque()
        self._wake = asyncio.Event()
        self._running = 0  # commands handed to the saga and not answered yet
        self._gone = False
        self._failure: ServiceError | None = None
        self._dispatching = False  # the reader is handing a request's commands out
        self._tracked: dict[str, _Tracked] = {}
        self._instruments: dict[str, common_pb2.Instrument] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[Any] | None = None
        self._forwarder: asyncio.Task[Any] | None = None
        self._executions: AccountExecutions | None = None
        # Cancel on disconnect: on once a request asks; the orders this stream placed that may be
        # open (order id -> account); the task cancelling them, once started.
        self._cancel_on_disconnect = False
        self._live: dict[str, str] = {}
        self._cancelling: asyncio.Task[Any] | None = None

    async def responses(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        """The stream's responses: the first names max_in_flight, then results and reports."""
        # Live only: the stream promises the reports of its own orders from now on; start() learns
        # each shard's report number, from which a catch-up after a feed break reads the history.
        executions = self._executions = AccountExecutions(
            self._backends, self._account, {}, max_queued=REPORTS_QUEUED
        )
        try:
            context.add_done_callback(self._caller_gone)
            await executions.start()
            yield gateway_pb2.StreamOrdersResponse(max_in_flight=MAX_IN_FLIGHT)
            reader = self._reader = self._spawn(self._read(requests), "gateway-order-stream-reader")
            forwarder = self._forwarder = self._spawn(
                self._forward(executions.batches()), "gateway-order-stream-reports"
            )
            try:
                while not self._gone:
                    if self._failure is not None and not self._dispatching:
                        # Read no more (the reader is between messages, nothing of the next one
                        # read): answer what was read, then end with the failure.
                        reader.cancel()
                    if not self._out:
                        if self._running == 0 and reader.done():
                            break
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    response = self._out.popleft()
                    count = len(response.results)
                    yield response
                    self._free += count
                    self._room.set()
            finally:
                reader.cancel()
                forwarder.cancel()
        finally:
            executions.subscription.close()
        drained = isinstance(requests, RequestStream) and requests.drained
        if self._cancel_on_disconnect and self._cancelling is None and (self._failure is not None or drained):
            # The call is still ours (and the server waits for it while stopping): cancel now.
            await self._cancel_live()
        if self._failure is not None:
            raise self._failure
        if drained:
            raise unavailable(
                RejectReason.SERVICE_STOPPING,
                "the gateway is stopping: every command read on this stream was answered; "
                "reconnect and send the rest",
            )

    # --- reading and carrying out commands -------------------------------------------------------

    def _spawn(self, work: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._wake.set())
        return task

    def _caller_gone(self, _: object) -> None:
        """The call ended: stop reading and relaying now (grpc may never resume the writer);
        orders already handed to the saga are carried to their end (and, with cancel on
        disconnect, cancelled then)."""
        if self._cancel_on_disconnect and self._cancelling is None:
            cancelling = asyncio.create_task(self._cancel_live(), name="gateway-cancel-on-disconnect")
            self._cancelling = cancelling
            self._backends.background.add(cancelling)
            cancelling.add_done_callback(self._backends.background.discard)
        self._gone = True
        for task in (self._reader, self._forwarder):
            if task is not None:
                task.cancel()
        if self._executions is not None:
            self._executions.end()
        self._wake.set()

    async def _read(self, requests: AsyncIterator[Any]) -> None:
        number = 0
        try:
            async for request in requests:
                number += 1
                if request.cancel_on_disconnect:
                    self._cancel_on_disconnect = True
                # A request read is answered in full: the session does not cancel the reader
                # while it hands a request's commands out (it may wait there for permits).
                self._dispatching = True
                try:
                    await self._dispatch(number, request.commands)
                finally:
                    self._dispatching = False
                if self._failure is not None:
                    return  # the stream ends with the failure: read no more
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the caller's side broke: stop reading, answer what was read
            log.info("order stream input ended", why=repr(error))
        finally:
            self._wake.set()

    async def _dispatch(self, number: int, commands: Sequence[gateway_pb2.OrderCommand]) -> None:
        """Check each command of request `number`; hand the good ones to the saga, in two batches."""
        too_many = len(commands) > ids.MAX_STREAM_COMMANDS
        submits: list[tuple[int, gateway_pb2.OrderCommand, trading_pb2.NewOrder, common_pb2.Instrument]] = []
        cancels: list[tuple[int, gateway_pb2.OrderCommand, str, str]] = []
        mass_cancels: list[tuple[int, gateway_pb2.OrderCommand, str]] = []
        for index, command in enumerate(commands):
            while self._free <= 0:
                self._room.clear()
                await self._room.wait()
            self._free -= 1
            try:
                if too_many:
                    raise ServiceError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        RejectReason.TOO_MANY_COMMANDS,
                        f"a request carries at most {ids.MAX_STREAM_COMMANDS} commands and this one has "
                        f"{len(commands)}; none of them was carried out: send them in several requests",
                    )
                if command.tag:
                    problem = ids.COMMAND_TAG.problem(command.tag)
                    if problem is not None:
                        raise invalid_field("tag", RejectReason.INVALID_TAG, f"tag {problem}")
                kind = command.WhichOneof("command")
                if kind == "submit":
                    submit = command.submit
                    instrument = self._instruments.get(submit.symbol) or await self._instrument_of(submit)
                    submits.append((index, command, *self._checked_order(submit, instrument)))
                elif kind == "cancel":
                    cancel = command.cancel
                    account = resolve_account(cancel.account_id, self._account)
                    validate_order_id(cancel.order_id)
                    cancels.append((index, command, cancel.order_id, account))
                    tracked = self._tracked.get(cancel.order_id)
                    if tracked is not None:
                        tracked.waiting += 1  # its reports wait for the cancel's result
                elif kind == "mass_cancel":
                    account = resolve_account(command.mass_cancel.account_id, self._account)
                    await check_symbol(self._backends, command.mass_cancel.symbol)
                    mass_cancels.append((index, command, account))
                elif kind == "replace":
                    replace = command.replace
                    account = resolve_account(replace.account_id, self._account)
                    validate_order_id(replace.order_id)
                    validate_replace_texts(replace)
                    tracked = self._tracked.get(replace.order_id)
                    if tracked is not None:
                        tracked.waiting += 1  # its reports wait for the replace's result
                    self._running += 1
                    self._spawn(
                        self._replace(number, index, command, account), "gateway-order-stream-replace"
                    )
                else:
                    raise invalid_field(
                        "command",
                        RejectReason.REQUIRED,
                        "is required: set submit, cancel, mass_cancel or replace",
                    )
            except ServiceError as error:
                self._refuse(number, index, command, error)
        if submits:
            for _, _, order, _ in submits:
                self._tracked[order.order_id] = _Tracked()
            self._running += len(submits)
            self._spawn(self._submit(number, submits), "gateway-order-stream-submits")
        if cancels:
            self._running += len(cancels)
            self._spawn(self._cancel(number, cancels), "gateway-order-stream-cancels")
        for index, command, account in mass_cancels:
            # Any order this stream follows may be among the cancelled: its reports from the
            # fan-out wait for the mass cancel's result, which carries them.
            followed = list(self._tracked)
            for order_id in followed:
                self._tracked[order_id].waiting += 1
            self._running += 1
            self._spawn(
                self._mass_cancel(number, index, command, account, followed),
                "gateway-order-stream-mass-cancel",
            )

    async def _instrument_of(self, request: gateway_pb2.SubmitOrderRequest) -> common_pb2.Instrument | None:
        """The instrument of a submit's symbol, looked up (None: unknown, or not a symbol); an
        account the caller may not act on is refused before the look-up."""
        resolve_account(request.account_id, self._account)
        symbol = request.symbol
        if symbol and symbol_problem(symbol) is None:
            return await self._instrument(symbol)
        return None

    def _checked_order(
        self, request: gateway_pb2.SubmitOrderRequest, instrument: common_pb2.Instrument | None
    ) -> tuple[trading_pb2.NewOrder, common_pb2.Instrument]:
        """A submit as trading's NewOrder with a new order id, every field checked against
        `instrument` (its symbol's, or None), and the instrument."""
        account = resolve_account(request.account_id, self._account)
        order = validate_submit_order(
            request,
            instrument,
            account_id=account,
            order_id=ids.make_order_id(self._backends.trading_shards.of_symbol(request.symbol).name),
            defaults=self._backends.order_defaults,
        )
        assert instrument is not None
        return order, instrument

    async def _instrument(self, symbol: str) -> common_pb2.Instrument | None:
        instrument = self._instruments.get(symbol)
        if instrument is None:
            instrument = await self._backends.instruments.get(symbol)
            if instrument is not None:
                self._instruments[symbol] = instrument
        return instrument

    async def _submit(
        self,
        number: int,
        submits: list[tuple[int, gateway_pb2.OrderCommand, trading_pb2.NewOrder, common_pb2.Instrument]],
    ) -> None:
        # Never raises: a batch that fails answers each of its orders OUTCOME_UNKNOWN.
        outcomes = await self._saga.place(
            self._backends, [(order, instrument) for _, _, order, instrument in submits]
        )
        for (index, command, order, instrument), outcome in zip(submits, outcomes, strict=True):
            self._running -= 1
            if isinstance(outcome, ServiceError):
                if outcome.reason != RejectReason.OUTCOME_UNKNOWN:
                    self._tracked.pop(order.order_id, None)  # never placed: no report will come
                    self._refuse(number, index, command, outcome)
                else:  # it may be live: its later reports still come here
                    self._live[order.order_id] = order.account_id
                    self._refuse(number, index, command, outcome)
                    await self._carried(order.order_id, ())
                continue
            result = self._result(
                request_number=number,
                index=index,
                tag=command.tag,
                client_order_id=command.submit.client_order_id,
            )
            add_report_views(result.reports, outcome, instrument, self._default_shard)
            result.order.CopyFrom(result.reports[-1].order)
            placed = outcome[-1].order.order_id
            if placed != order.order_id:
                # A retry answered with its original order: that order's reports come on its own
                # stream (or StreamExecutions), not this one.
                self._tracked.pop(order.order_id, None)
                continue
            if outcome[-1].order.status not in _TERMINAL:
                self._live[placed] = order.account_id
            due = self._carry(placed, outcome)  # no coroutine per order: relays are rare here
            if due:
                await self._relay(due)

    async def _carried(self, order_id: str, reports: Sequence[common_pb2.ExecutionReport]) -> None:
        """A result about order `order_id` carrying `reports` is written: relay what the fan-out
        delivered meanwhile that the results lack (up to the order's final report)."""
        due = self._carry(order_id, reports)
        if due:
            await self._relay(due)

    def _carry(
        self, order_id: str, reports: Sequence[common_pb2.ExecutionReport]
    ) -> list[common_pb2.ExecutionReport]:
        """`_carried` without the relay: what is due to be relayed now, in order."""
        tracked = self._tracked.get(order_id)
        if tracked is None:
            return []
        tracked.waiting -= 1
        for report in reports:
            tracked.carried.add(report.journal_sequence)
        if tracked.waiting > 0 or tracked.early is None:
            return []
        early, tracked.early = tracked.early, None
        carried, due, ended = tracked.carried, [], False
        for report in early:
            if report.journal_sequence not in carried:
                due.append(report)
            ended = ended or report.order.status in _TERMINAL
        if ended:
            self._tracked.pop(order_id, None)  # the feed has nothing more about it
        return due

    async def _cancel(
        self, number: int, cancels: list[tuple[int, gateway_pb2.OrderCommand, str, str]]
    ) -> None:
        try:
            outcomes = await self._saga.cancel_batch(
                self._backends, [(order_id, account) for _, _, order_id, account in cancels]
            )
        except Exception as error:  # a bug: every cancel of the batch has an unknown outcome
            log.exception("cancel batch failed")
            outcomes = [refusals.gateway_failed(order_id, error) for _, _, order_id, _ in cancels]
        for (index, command, order_id, _), outcome in zip(cancels, outcomes, strict=True):
            self._running -= 1
            if isinstance(outcome, ServiceError):
                self._refuse(number, index, command, outcome)
                await self._carried(order_id, ())
                continue
            order = outcome[-1].order
            if order.status in _TERMINAL:
                self._live.pop(order.order_id, None)
            instrument = await self._instrument(order.symbol)
            result = self._result(
                request_number=number, index=index, tag=command.tag, client_order_id=command.cancel.order_id
            )
            if instrument is not None:
                add_report_views(result.reports, outcome, instrument, self._default_shard)
                result.order.CopyFrom(result.reports[-1].order)
            await self._carried(order.order_id, outcome)

    async def _replace(
        self, number: int, index: int, command: gateway_pb2.OrderCommand, account: str
    ) -> None:
        """Carry out a replace command (as ReplaceOrder) and answer it with the order and its reports."""
        order_id = command.replace.order_id
        reports: Sequence[common_pb2.ExecutionReport] = ()
        try:
            response = await replace_order(self._backends, self._saga, command.replace, account)
        except ServiceError as error:
            self._refuse(number, index, command, error)
        except Exception as error:  # a bug: the replace's outcome is unknown
            log.exception("replace failed")
            self._refuse(number, index, command, refusals.gateway_failed(order_id, error))
        else:
            reports = response.raw_reports
            if response.view.order.status in _TERMINAL:
                self._live.pop(order_id, None)
            self._answer(
                gateway_pb2.OrderCommandResult(
                    request_number=number,
                    index=index,
                    tag=command.tag,
                    client_order_id=order_id,
                    order=response.view.order,
                    reports=response.view.reports,
                )
            )
        finally:
            self._running -= 1
        await self._carried(order_id, reports)

    async def _mass_cancel(
        self, number: int, index: int, command: gateway_pb2.OrderCommand, account: str, followed: list[str]
    ) -> None:
        """Carry out a mass_cancel command and answer it with the count and the CANCELLED reports."""
        cancelled: list[common_pb2.ExecutionReport] = []
        try:
            done = await mass_cancel(self._backends, account, command.mass_cancel.symbol)
        except ServiceError as error:
            self._refuse(number, index, command, error)
        except Exception as error:  # a bug: the outcome is unknown, and a mass cancel can be repeated
            log.exception("mass cancel failed")
            failed = unavailable(
                RejectReason.OUTCOME_UNKNOWN,
                f"the gateway failed while carrying out the mass cancel ({error!r}); send it again",
            )
            self._refuse(number, index, command, failed)
        else:
            cancelled = done.reports
            result = gateway_pb2.OrderCommandResult(
                request_number=number,
                index=index,
                tag=command.tag,
                client_order_id=command.mass_cancel.symbol,
                cancelled_count=len(cancelled),
                reports=[
                    report_view(r, done.instruments[r.order.symbol], self._default_shard) for r in cancelled
                ],
            )
            for report in cancelled:
                self._live.pop(report.order.order_id, None)
            self._answer(result)
        finally:
            self._running -= 1
        by_order: dict[str, list[common_pb2.ExecutionReport]] = {}
        for report in cancelled:
            by_order.setdefault(report.order.order_id, []).append(report)
        for order_id in followed:
            await self._carried(order_id, by_order.get(order_id, ()))

    async def _cancel_live(self) -> None:
        """Cancel on disconnect: once the orders still being placed are answered (bounded wait),
        cancel every order of this stream that may be open, in batches; log what was done."""
        if self._cancelling is None:
            self._cancelling = asyncio.current_task()
        deadline = asyncio.get_running_loop().time() + PLACING_WAIT_SECONDS
        while self._running and asyncio.get_running_loop().time() < deadline:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
        live = list(self._live.items())
        self._live.clear()
        cancelled = refused = 0
        for start in range(0, len(live), ids.MAX_STREAM_COMMANDS):
            batch = live[start : start + ids.MAX_STREAM_COMMANDS]
            outcomes = await self._saga.cancel_batch(self._backends, batch)
            for outcome in outcomes:
                if isinstance(outcome, ServiceError):
                    refused += 1  # filled or cancelled meanwhile, or trading unreachable (logged)
                else:
                    cancelled += 1
        log.info(
            "cancel on disconnect",
            account_id=self._account,
            orders=len(live),
            cancelled=cancelled,
            not_cancelled=refused,
            still_placing=self._running,
        )

    def _result(self, **fields: Any) -> gateway_pb2.OrderCommandResult:
        """A command's result with `fields`, in the response being filled: the caller fills in the
        rest before it awaits anything (the writer may take the response at its next await)."""
        out = self._out
        if not out or len(out[-1].results) >= RESULTS_PER_RESPONSE:
            out.append(gateway_pb2.StreamOrdersResponse())
        self._wake.set()
        result: gateway_pb2.OrderCommandResult = out[-1].results.add(**fields)
        return result

    def _answer(self, result: gateway_pb2.OrderCommandResult) -> None:
        """Write `result`, made apart (copied into the response being filled)."""
        self._result().CopyFrom(result)

    def _refuse(
        self, number: int, index: int, command: gateway_pb2.OrderCommand, error: ServiceError
    ) -> None:
        """A command's refusal as its result: the status the unary call would answer."""
        kind = command.WhichOneof("command")
        named = {
            "submit": command.submit.client_order_id,
            "cancel": command.cancel.order_id,
            "mass_cancel": command.mass_cancel.symbol,
            "replace": command.replace.order_id,
        }.get(kind or "", "")
        result = self._result(
            request_number=number,
            index=index,
            tag=command.tag,
            client_order_id=named,
            code=error.code.value[0],
            reason=error.reason.number,
            message=error.message,
            field=error.violations[0].field if error.violations else "",
        )
        order_id = error.metadata.get("order_id", "")
        if order_id:
            result.order.order_id = order_id
            if kind == "submit":
                result.order.client_order_id = command.submit.client_order_id

    # --- later reports ---------------------------------------------------------------------------

    async def _forward(self, batches: AsyncIterator[Sequence[common_pb2.ExecutionReport]]) -> None:
        """Relay the account's reports (live, and after a feed break what the shard's history
        holds that the feed did not bring: AccountExecutions) that concern this stream's orders,
        each once."""
        try:
            async for reports in batches:
                due: list[common_pb2.ExecutionReport] = []  # relayed together, in order
                for report in reports:
                    order = report.order
                    order_id = order.order_id
                    terminal = order.status in _TERMINAL
                    if terminal:
                        self._live.pop(order_id, None)
                    tracked = self._tracked.get(order_id)
                    if tracked is None:
                        continue
                    if tracked.waiting:
                        if tracked.early is None:
                            tracked.early = []
                        tracked.early.append(report)
                        continue
                    if report.journal_sequence not in tracked.carried:  # else a result carried it
                        due.append(report)
                    if terminal:
                        self._tracked.pop(order_id, None)  # the feed has nothing more about it
                if due:
                    await self._relay(due)
        except ServiceError as error:
            # Later reports can no longer be promised: the stream ends once every command read is
            # answered.
            log.info("order stream's report feed ended", reason=error.reason)
            self._failure = _feed_failure(error)
            self._wake.set()

    async def _relay(self, reports: Sequence[common_pb2.ExecutionReport]) -> None:
        """Write later reports of the stream's orders, in order, with the next response."""
        shown: list[tuple[common_pb2.ExecutionReport, common_pb2.Instrument]] = []
        for report in reports:
            symbol = report.order.symbol
            instrument = self._instruments.get(symbol) or await self._instrument(symbol)
            if instrument is None:
                log.error("report for an unknown instrument", symbol=symbol)
                continue
            shown.append((report, instrument))
        if not shown:
            return
        self._backends.reported.note(report for report, _ in shown)
        # No await from here on: the response taken is not written meanwhile.
        if not self._out:
            self._out.append(gateway_pb2.StreamOrdersResponse())
        into = self._out[0].reports
        for report, instrument in shown:
            add_report_views(into, (report,), instrument, self._default_shard)
        self._wake.set()


# What ends a session's report feed and is told to the client as it is: the gateway stopping, the
# session falling behind (its queue full), a shard's feed broken before the session learned its
# report number. Anything else is the history read of a catch-up failing.
_FEED_ENDINGS = frozenset(
    {RejectReason.SERVICE_STOPPING, RejectReason.SLOW_CONSUMER, RejectReason.EXECUTIONS_INTERRUPTED}
)


def _feed_failure(error: ServiceError) -> ServiceError:
    """The failure a session ends with when its report feed ends with `error`: a catch-up whose
    history read failed (refused, or still unanswerable after HISTORY_PATIENCE_SECONDS) is
    EXECUTIONS_INTERRUPTED, like any break whose missed reports the session cannot fetch."""
    if error.reason in _FEED_ENDINGS:
        return error
    return ServiceError(
        grpc.StatusCode.UNAVAILABLE,
        RejectReason.EXECUTIONS_INTERRUPTED,
        "the execution report feed was interrupted and the reports it missed could not be read "
        f"from trading's report history ({error}); "
        "every command read on this stream was answered: send the rest on a new stream, and "
        "reconcile open orders with GetOrder",
    )
