"""The matching engine: pure, synchronous and deterministic.

The engine applies commands (create an instrument, a new order, a cancel) to
its books and orders and answers each with an :class:`Outcome`: the journal
records the command produced (the command itself first, then its events:
trades, releases) and the execution reports to send. A rejected command
produces a REJECTED report and no records, and changes nothing.

Nothing here reads a clock or a counter of its own making: the caller hands
in the engine time of each command, and journal sequences and trade ids
continue from the engine's counters, which replay rebuilds. Replaying the
journaled commands through :meth:`Engine.replay` therefore rebuilds the same
books, orders and counters, and regenerates exactly the journaled events
(replay checks that it does).

Client order ids are unique per account here, in the system of record:
``Engine.client_orders`` maps (account, client order id) to the order that
holds it, rebuilt by replay. A new order reusing one is not journaled; it is
answered with the holder's current state, as ACCEPTED when it is the same
order (a retry) or REJECTED with DUPLICATE_CLIENT_ORDER_ID when it differs.

Fences: an order whose outcome the gateway does not know (sent, never
answered) is resolved by :meth:`Engine.resolve_order`: found when journaled,
else fenced by a journaled ``order_fenced`` record, so its order id is
refused (ORDER_FENCED) even if its NewOrder is still on its way; risk
releases its reservation on that record.

Memory: every order, open or closed, stays in ``Engine.orders`` so GetOrder
can answer for it, and with it its entry in ``client_orders``; fences stay in
``Engine.fences`` on the same terms (one small entry per order whose outcome
was unknown, which only a crash or a lost answer makes: far fewer than
orders). In this version all of them are kept for the life of the process;
bounded retention (evicting closed orders after a while, with GetOrder
falling back to the journal) is a later concern, and fences and index
entries go with the same rule: a fence is only needed while a NewOrder of its
id can still arrive, which no stream outlives a trading restart for.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.money import InstrumentMath, MoneyError, derive_instrument, from_units, parse_decimal
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2
from trading.book import BUY, SELL, Book, BookOrder, InvariantViolation

Instrument = common_pb2.Instrument
Order = common_pb2.Order
ExecutionReport = common_pb2.ExecutionReport
JournalRecord = trading_pb2.JournalRecord
# Makes one execution report from keyword arguments: ExecutionReport itself, or the ``add`` of a
# repeated ExecutionReport field, so a report is made where it is sent (a StreamOrders answer's
# result) instead of being made and then copied there.
ReportMaker = Callable[..., common_pb2.ExecutionReport]


COMMAND_KINDS = frozenset(
    {"instrument_created", "new_order", "cancel_order", "risk_epoch_changed", "order_fenced"}
)
EVENT_KINDS = frozenset({"trade", "order_released"})

_NEW = common_pb2.ORDER_STATUS_NEW
_PARTIALLY_FILLED = common_pb2.ORDER_STATUS_PARTIALLY_FILLED
_FILLED = common_pb2.ORDER_STATUS_FILLED
_CANCELLED = common_pb2.ORDER_STATUS_CANCELLED
_REJECTED = common_pb2.ORDER_STATUS_REJECTED
_ACCEPTED = common_pb2.EXECUTION_TYPE_ACCEPTED
_TRADE = common_pb2.EXECUTION_TYPE_TRADE
_CANCEL = common_pb2.EXECUTION_TYPE_CANCELLED
_REJECT = common_pb2.EXECUTION_TYPE_REJECTED
_MAKER = common_pb2.LIQUIDITY_SIDE_MAKER
_TAKER = common_pb2.LIQUIDITY_SIDE_TAKER
_LIMIT = common_pb2.ORDER_TYPE_LIMIT
_GTC = common_pb2.TIME_IN_FORCE_GTC
_OPEN_STATUSES = (_NEW, _PARTIALLY_FILLED)
_fee = InstrumentMath.fee
# The id formats a new order's ids must have (backbone.ids), as length bounds and whole-string matches.
_ORDER_ID_MAX, _order_id_format = ids.ORDER_ID.max_length, ids.ORDER_ID.pattern.fullmatch
_ACCOUNT_ID_MAX, _account_id_format = ids.ACCOUNT_ID.max_length, ids.ACCOUNT_ID.pattern.fullmatch
_CLIENT_ORDER_ID_MAX = ids.CLIENT_ORDER_ID.max_length
_client_order_id_format = ids.CLIENT_ORDER_ID.pattern.fullmatch

assert common_pb2.SIDE_BUY == BUY and common_pb2.SIDE_SELL == SELL


class InstrumentRejected(Exception):
    """CreateInstrument refused: ``reason`` is INVALID_INSTRUMENT or INSTRUMENT_EXISTS."""

    def __init__(
        self, reason: RejectReason, message: str, violations: Iterable[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.violations = list(violations)


class ReplayError(RuntimeError):
    """The journal does not replay to what it records; the state cannot be trusted."""


class OrderState(BookOrder):
    """One order as the engine knows it; the book sees only the BookOrder part."""

    __slots__ = (
        "account_id",
        "cancelled_lots",
        "client_order_id",
        "created_ns",
        "filled_lots",
        "filled_notional",
        "order_type",
        "quantity_lots",
        "status",
        "symbol",
        "time_in_force",
        "updated_ns",
    )

    def __init__(self, command: trading_pb2.NewOrder, timestamp_ns: int) -> None:
        # BookOrder's fields set here rather than through its __init__ (one call less per order).
        self.order_id = command.order_id
        self.side = command.side
        self.price_ticks = command.price_ticks
        self.leaves_lots = self.quantity_lots = command.quantity_lots
        self.resting = False
        self.client_order_id = command.client_order_id
        self.account_id = command.account_id
        self.symbol = command.symbol
        self.order_type = _LIMIT
        self.time_in_force = _GTC
        self.filled_lots = 0
        self.cancelled_lots = 0
        self.filled_notional = 0
        self.status = _NEW
        self.created_ns = timestamp_ns
        self.updated_ns = timestamp_ns

    def fields(self, leaves_lots: int | None = None, status: int | None = None) -> dict[str, object]:
        """The order as keyword arguments of a common.v1.Order (optionally with other leaves/status).

        A dict, not a message: protobuf builds a submessage from a dict
        faster than it copies one in.
        """
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "account_id": self.account_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.order_type,
            "time_in_force": self.time_in_force,
            "price_ticks": self.price_ticks,
            "quantity_lots": self.quantity_lots,
            "filled_lots": self.filled_lots,
            "leaves_lots": self.leaves_lots if leaves_lots is None else leaves_lots,
            "cancelled_lots": self.cancelled_lots,
            "status": self.status if status is None else status,
            "filled_notional_ticks_lots": self.filled_notional,
            "created_ns": self.created_ns,
            "updated_ns": self.updated_ns,
        }

    def message(self) -> common_pb2.Order:
        """The order as a common.v1.Order."""
        return Order(**self.fields())  # type: ignore[arg-type]


@dataclass(slots=True)
class Outcome:
    """What one command produced: journal records (none when rejected) and reports."""

    records: list[trading_pb2.JournalRecord] = field(default_factory=list)
    reports: list[common_pb2.ExecutionReport] = field(default_factory=list)
    instrument: common_pb2.Instrument | None = None

    @property
    def accepted(self) -> bool:
        return bool(self.records)


# derive_instrument names the decimal it was given; an Instrument carries it in ticks or lots.
_DERIVED_FIELDS = {
    "min_quantity": "min_quantity_lots",
    "max_quantity": "max_quantity_lots",
    "max_price": "max_price_ticks",
}


def check_instrument(instrument: common_pb2.Instrument) -> list[tuple[str, str]]:
    """Every problem with an instrument definition as (field, description); empty when valid.

    Checks the formats and ranges (:mod:`backbone.ids`), then recomputes the
    derived conversions with :func:`backbone.money.derive_instrument` and compares.
    """
    problems: list[tuple[str, str]] = []
    symbol = instrument.symbol
    for name, rule in (
        ("symbol", ids.SYMBOL),
        ("base_asset", ids.ASSET_CODE),
        ("quote_asset", ids.ASSET_CODE),
    ):
        problem = rule.problem(getattr(instrument, name))
        if problem:
            problems.append((name, problem))
    if instrument.base_asset and instrument.base_asset == instrument.quote_asset:
        problems.append(("quote_asset", "must differ from base_asset"))
    for name in ("base_scale", "quote_scale"):
        problem = ids.scale_problem(getattr(instrument, name))
        if problem:
            problems.append((name, problem))
    sizes: dict[str, Decimal] = {}
    for name in ("tick_size", "lot_size"):
        try:
            value = parse_decimal(getattr(instrument, name))
        except MoneyError as error:
            problems.append((name, str(error)))
            continue
        if value <= 0:
            problems.append((name, "must be positive"))
        else:
            sizes[name] = value
    if instrument.min_quantity_lots < 1:
        problems.append(("min_quantity_lots", "must be at least 1"))
    if instrument.max_quantity_lots < max(instrument.min_quantity_lots, 1):
        problems.append(("max_quantity_lots", "must be at least min_quantity_lots"))
    if instrument.max_price_ticks < 1:
        problems.append(("max_price_ticks", "must be at least 1"))
    for name in ("maker_fee_bps", "taker_fee_bps"):
        problem = ids.fee_bps_problem(getattr(instrument, name))
        if problem:
            problems.append((name, problem))
    if problems:
        return problems
    tick, lot = sizes["tick_size"], sizes["lot_size"]
    try:
        derived = derive_instrument(
            symbol=symbol,
            base_asset=instrument.base_asset,
            quote_asset=instrument.quote_asset,
            base_scale=instrument.base_scale,
            quote_scale=instrument.quote_scale,
            tick_size=tick,
            lot_size=lot,
            min_quantity=from_units(instrument.min_quantity_lots, lot),
            max_quantity=from_units(instrument.max_quantity_lots, lot),
            max_price=from_units(instrument.max_price_ticks, tick),
            maker_fee_bps=instrument.maker_fee_bps,
            taker_fee_bps=instrument.taker_fee_bps,
        )
    except MoneyError as error:
        return [(_DERIVED_FIELDS.get(error.field, error.field or "instrument"), str(error))]
    for name in (
        "base_minor_per_lot",
        "quote_minor_per_tick_lot",
        "min_quantity_lots",
        "max_quantity_lots",
        "max_price_ticks",
    ):
        expected, given = getattr(derived, name), getattr(instrument, name)
        if expected != given:
            problems.append((name, f"is {given} but the sizes and scales give {expected}"))
    return problems


class Engine:
    """Books, orders and counters of one trading shard."""

    def __init__(self) -> None:
        self.instruments: dict[str, common_pb2.Instrument] = {}
        self.books: dict[str, Book] = {}
        self.orders: dict[str, OrderState] = {}
        # (account id, client order id) -> the order id holding it; as long-lived as the orders.
        self.client_orders: dict[tuple[str, str], str] = {}
        # order id -> account id of every fenced order (never journaled, refused for good).
        self.fences: dict[str, str] = {}
        self._math: dict[str, InstrumentMath] = {}
        self.last_sequence = 0
        self.last_trade_id = 0
        self.last_timestamp_ns = 0
        # The epoch of risk's state since its last rebuild ("" until risk first rebuilt): a new
        # order must have been reserved in it (NewOrder.risk_epoch).
        self.risk_epoch = ""
        self._expected: deque[trading_pb2.JournalRecord] = deque()

    # -- commands ------------------------------------------------------------------------

    def _clock(self, timestamp_ns: int) -> int:
        """Engine time never goes backwards, even when the wall clock does."""
        if timestamp_ns < self.last_timestamp_ns:
            return self.last_timestamp_ns
        self.last_timestamp_ns = timestamp_ns
        return timestamp_ns

    def apply(
        self, command: trading_pb2.OrderCommand, timestamp_ns: int, report: ReportMaker = ExecutionReport
    ) -> Outcome:
        """Apply one OrderCommand (new order or cancel); its reports are made by `report`.

        Each report of a command that produced events (trades, a release) carries the sequence
        of the last of them (``journal_sequence``): balances reflecting that sequence reflect
        every report of the command. An order that only rests has none: its reservation was
        made before it reached the engine, so no read need wait for it.
        """
        kind = command.WhichOneof("command")
        if kind == "new_order":
            return self.new_order(command.new_order, timestamp_ns, report=report)
        if kind == "cancel_order":
            return self.cancel_order(command.cancel_order, timestamp_ns, report=report)
        rejected = report(
            order={"status": _REJECTED},
            execution_type=_REJECT,
            reject_reason=RejectReason.INVALID_ORDER.number,
            timestamp_ns=timestamp_ns,
        )
        return Outcome([], [rejected])

    def create_instrument(self, instrument: common_pb2.Instrument, timestamp_ns: int) -> Outcome:
        """Add an instrument; the same definition again is a no-op (no records).

        Raises InstrumentRejected for an invalid definition or a different one
        under an existing symbol.
        """
        existing = self.instruments.get(instrument.symbol)
        if existing is not None:
            if existing == instrument:
                return Outcome([], [], existing)
            raise InstrumentRejected(
                RejectReason.INSTRUMENT_EXISTS,
                f"instrument {instrument.symbol} already exists with a different definition",
            )
        problems = check_instrument(instrument)
        if problems:
            described = "; ".join(f"{name} {what}" for name, what in problems)
            raise InstrumentRejected(
                RejectReason.INVALID_INSTRUMENT,
                f"the instrument definition is invalid: {described}",
                problems,
            )
        stored = Instrument()
        stored.CopyFrom(instrument)
        timestamp_ns = self._clock(timestamp_ns)
        self.instruments[stored.symbol] = stored
        self.books[stored.symbol] = Book(stored.symbol)
        self._math[stored.symbol] = InstrumentMath.of(stored)
        self.last_sequence += 1
        record = JournalRecord(
            sequence=self.last_sequence, timestamp_ns=timestamp_ns, instrument_created=stored
        )
        return Outcome([record], [], stored)

    def _order_problem(
        self, command: trading_pb2.NewOrder, order: OrderState, *, journaled: bool
    ) -> RejectReason | None:
        """Why a new order is refused, or None; `order` is the command as an OrderState (its fields
        read once). A journaled order was accepted once: its ids were checked by the rules of its
        day, which a later, stricter rule must not undo at replay."""
        order_id = order.order_id
        if not journaled:
            account_id, client_order_id = order.account_id, order.client_order_id
            # IdRule.is_valid, spelled out (a string field, so only length and pattern remain).
            if not (
                0 < len(order_id) <= _ORDER_ID_MAX
                and 0 < len(account_id) <= _ACCOUNT_ID_MAX
                and 0 < len(client_order_id) <= _CLIENT_ORDER_ID_MAX
                and _order_id_format(order_id)
                and _account_id_format(account_id)
                and _client_order_id_format(client_order_id)
            ):
                return RejectReason.INVALID_ORDER
        if not journaled and self.risk_epoch and command.risk_epoch != self.risk_epoch:
            # Reserved before risk rebuilt its state: the reservation is not in the new state.
            return RejectReason.RISK_REBUILT
        if order_id in self.orders:
            return RejectReason.DUPLICATE_ORDER_ID
        if order_id in self.fences:
            return RejectReason.ORDER_FENCED
        instrument = self.instruments.get(order.symbol)
        if instrument is None:
            return RejectReason.UNKNOWN_SYMBOL
        if (
            order.side not in (BUY, SELL)
            or command.type not in (common_pb2.ORDER_TYPE_UNSPECIFIED, _LIMIT)
            or command.time_in_force not in (common_pb2.TIME_IN_FORCE_UNSPECIFIED, _GTC)
            or not 1 <= order.price_ticks <= instrument.max_price_ticks
            or not instrument.min_quantity_lots <= order.quantity_lots <= instrument.max_quantity_lots
        ):
            return RejectReason.INVALID_ORDER
        return None

    def new_order(
        self,
        command: trading_pb2.NewOrder,
        timestamp_ns: int,
        *,
        journaled: bool = False,
        report: ReportMaker = ExecutionReport,
    ) -> Outcome:
        """Accept, match and rest a limit order; or reject it without changing anything.

        ``journaled`` is for replay: the order was accepted when it was journaled. Reports are
        made by `report`, in the order they happened (accepted first, then each fill's taker and
        maker reports); those of an order that traded carry its last trade's sequence.
        """
        order = OrderState(command, timestamp_ns)  # kept only when accepted
        problem = self._order_problem(command, order, journaled=journaled)
        if problem is not None:
            return Outcome([], [_rejected_new_order(command, problem, timestamp_ns, report)])
        client_key = (order.account_id, order.client_order_id)
        holder_id = self.client_orders.get(client_key)
        if holder_id is not None and not journaled:
            # A journaled duplicate (accepted before this rule) replays; the index keeps the first.
            return self._client_order_id_held(command, self.orders[holder_id], timestamp_ns, report)
        clocked = self._clock(timestamp_ns)
        if clocked != timestamp_ns:
            timestamp_ns = order.created_ns = order.updated_ns = clocked
        symbol = order.symbol
        self.orders[order.order_id] = order
        if holder_id is None:
            self.client_orders[client_key] = order.order_id
        sequence = self.last_sequence + 1
        record = JournalRecord(sequence=sequence, timestamp_ns=timestamp_ns)
        record.new_order.MergeFrom(command)  # into the empty field: a copy, cheaper than new_order=
        records = [record]
        accepted = order.fields()  # as accepted, before it matched
        fills = self.books[symbol].submit(order)
        if not fills:
            self.last_sequence = sequence
            return Outcome(
                records, [report(order=accepted, execution_type=_ACCEPTED, timestamp_ns=timestamp_ns)]
            )
        last = sequence + len(fills)  # the last trade's sequence, carried by every report
        reports = [
            report(
                order=accepted,
                execution_type=_ACCEPTED,
                timestamp_ns=timestamp_ns,
                journal_sequence=last,
            )
        ]
        instrument = self.instruments[symbol]
        math = self._math[symbol]
        maker_bps = instrument.maker_fee_bps
        taker_bps = instrument.taker_fee_bps
        base_asset = instrument.base_asset
        quote_asset = instrument.quote_asset
        taker_is_buy = order.side == BUY
        maker_side = SELL if taker_is_buy else BUY
        quantity = order.quantity_lots
        trade_id = self.last_trade_id
        for maker, lots in fills:
            assert isinstance(maker, OrderState)
            price = maker.price_ticks
            quote_amount = math.quote_amount(price, lots)
            maker_fee = _fee(quote_amount, maker_bps)
            taker_fee = _fee(quote_amount, taker_bps)
            notional = price * lots
            order.filled_lots += lots
            order.filled_notional += notional
            taker_leaves = quantity - order.filled_lots
            taker_status = _PARTIALLY_FILLED if taker_leaves else _FILLED
            maker.filled_lots += lots
            maker.filled_notional += notional
            maker.status = _PARTIALLY_FILLED if maker.leaves_lots else _FILLED
            maker.updated_ns = timestamp_ns
            if taker_is_buy:
                buyer, seller, buyer_fee, seller_fee = order, maker, taker_fee, maker_fee
                buy_leaves, sell_leaves = taker_leaves, maker.leaves_lots
            else:
                buyer, seller, buyer_fee, seller_fee = maker, order, maker_fee, taker_fee
                buy_leaves, sell_leaves = maker.leaves_lots, taker_leaves
            trade_id += 1
            sequence += 1
            trade = {  # common.v1.Trade
                "trade_id": trade_id,
                "symbol": symbol,
                "price_ticks": price,
                "quantity_lots": lots,
                "buy_order_id": buyer.order_id,
                "sell_order_id": seller.order_id,
                "buy_account_id": buyer.account_id,
                "sell_account_id": seller.account_id,
                "maker_side": maker_side,
                "base_asset": base_asset,
                "quote_asset": quote_asset,
                "base_amount": math.base_amount(lots),
                "quote_amount": quote_amount,
                "buyer_fee": buyer_fee,
                "seller_fee": seller_fee,
                "buy_limit_price_ticks": buyer.price_ticks,
                "buy_leaves_lots": buy_leaves,
                "sell_leaves_lots": sell_leaves,
                "timestamp_ns": timestamp_ns,
            }
            records.append(JournalRecord(sequence=sequence, timestamp_ns=timestamp_ns, trade=trade))
            reports.append(
                report(
                    order=order.fields(taker_leaves, taker_status),
                    execution_type=_TRADE,
                    trade_id=trade_id,
                    last_price_ticks=price,
                    last_quantity_lots=lots,
                    last_fee=taker_fee,
                    liquidity_side=_TAKER,
                    timestamp_ns=timestamp_ns,
                    journal_sequence=last,
                )
            )
            reports.append(
                report(
                    order=maker.fields(),
                    execution_type=_TRADE,
                    trade_id=trade_id,
                    last_price_ticks=price,
                    last_quantity_lots=lots,
                    last_fee=maker_fee,
                    liquidity_side=_MAKER,
                    timestamp_ns=timestamp_ns,
                    journal_sequence=last,
                )
            )
        self.last_trade_id = trade_id
        order.status = _PARTIALLY_FILLED if order.leaves_lots else _FILLED
        self.last_sequence = sequence
        return Outcome(records, reports)

    def _client_order_id_held(
        self, command: trading_pb2.NewOrder, holder: OrderState, timestamp_ns: int, report: ReportMaker
    ) -> Outcome:
        """A new order whose client order id `holder` holds: nothing journaled, the holder reported.

        The same order again (a retry) is answered ACCEPTED with the holder as it is now; a
        different one REJECTED with DUPLICATE_CLIENT_ORDER_ID. Either report names the holder.
        """
        same = (
            command.symbol == holder.symbol
            and command.side == holder.side
            and (command.type or _LIMIT) == holder.order_type
            and (command.time_in_force or _GTC) == holder.time_in_force
            and command.price_ticks == holder.price_ticks
            and command.quantity_lots == holder.quantity_lots
        )
        if same:
            answer = report(order=holder.fields(), execution_type=_ACCEPTED, timestamp_ns=timestamp_ns)
        else:
            answer = report(
                order=holder.fields(),
                execution_type=_REJECT,
                reject_reason=RejectReason.DUPLICATE_CLIENT_ORDER_ID.number,
                timestamp_ns=timestamp_ns,
            )
        return Outcome([], [answer])

    def resolve_order(
        self, order_id: str, account_id: str, timestamp_ns: int
    ) -> tuple[OrderState | None, list[trading_pb2.JournalRecord]]:
        """Settle an order whose outcome is unknown: (the order, []) when it is journaled; else
        (None, [its order_fenced record]), or (None, []) when it was fenced before.

        From the fence on, a NewOrder with this order id is refused (ORDER_FENCED), and risk
        releases the reservation on the record. The order id is not checked here (the servicer
        does); a journaled fence replays whatever its id.
        """
        order = self.orders.get(order_id)
        if order is not None:
            return order, []
        if order_id in self.fences:
            return None, []
        timestamp_ns = self._clock(timestamp_ns)
        self.fences[order_id] = account_id
        self.last_sequence += 1
        record = JournalRecord(
            sequence=self.last_sequence,
            timestamp_ns=timestamp_ns,
            order_fenced=common_pb2.OrderFenced(
                order_id=order_id, account_id=account_id, timestamp_ns=timestamp_ns
            ),
        )
        return None, [record]

    def cancel_order(
        self, command: trading_pb2.CancelOrder, timestamp_ns: int, *, report: ReportMaker = ExecutionReport
    ) -> Outcome:
        """Cancel an order's open quantity and release it; or reject without changing anything.

        The CANCELLED report (made by `report`) carries the release's sequence.
        """
        order = self.orders.get(command.order_id)
        if order is None:
            return Outcome([], [_rejected_cancel(command, RejectReason.UNKNOWN_ORDER, timestamp_ns, report)])
        if order.account_id != command.account_id:
            return Outcome(
                [], [_rejected_cancel(command, RejectReason.NOT_ORDER_OWNER, timestamp_ns, report)]
            )
        if order.status not in _OPEN_STATUSES:
            rejected = report(
                order=order.fields(),
                execution_type=_REJECT,
                reject_reason=RejectReason.ORDER_NOT_OPEN.number,
                timestamp_ns=timestamp_ns,
            )
            return Outcome([], [rejected])
        timestamp_ns = self._clock(timestamp_ns)
        removed = self.books[order.symbol].cancel(order.order_id)
        if removed is not order:
            raise InvariantViolation(f"open order {order.order_id!r} was not on the book")
        released = order.leaves_lots
        order.cancelled_lots += released
        order.leaves_lots = 0
        order.status = _CANCELLED
        order.updated_ns = timestamp_ns
        sequence = self.last_sequence
        records = [
            JournalRecord(sequence=sequence + 1, timestamp_ns=timestamp_ns, cancel_order=command),
            JournalRecord(
                sequence=sequence + 2,
                timestamp_ns=timestamp_ns,
                order_released=common_pb2.OrderReleased(
                    order_id=order.order_id,
                    account_id=order.account_id,
                    symbol=order.symbol,
                    side=order.side,  # type: ignore[arg-type]
                    released_lots=released,
                    timestamp_ns=timestamp_ns,
                ),
            ),
        ]
        self.last_sequence = sequence + 2
        cancelled = report(
            order=order.fields(),
            execution_type=_CANCEL,
            timestamp_ns=timestamp_ns,
            journal_sequence=sequence + 2,
        )
        return Outcome(records, [cancelled])

    def change_risk_epoch(self, epoch: str, timestamp_ns: int) -> Outcome:
        """Risk rebuilt its state from the open orders as of now: journal the new epoch.

        Orders reserved in an older epoch are refused from here on (their reservation is not in
        risk's new state); the open orders at the returned record's sequence are risk's start.
        """
        if not epoch:
            raise ValueError("a risk epoch is not empty")
        self.risk_epoch = epoch
        self.last_sequence += 1
        record = JournalRecord(
            sequence=self.last_sequence,
            timestamp_ns=self._clock(timestamp_ns),
            risk_epoch_changed=trading_pb2.RiskEpochChanged(epoch=epoch),
        )
        return Outcome([record], [])

    def open_orders(self) -> list[common_pb2.Order]:
        """Every order with quantity open on a book, as common.v1.Order messages."""
        return [
            order.message()
            for order in self.orders.values()
            if order.status in _OPEN_STATUSES and order.leaves_lots > 0
        ]

    # -- replay --------------------------------------------------------------------------

    def replay(self, record: trading_pb2.JournalRecord) -> None:
        """Apply one journal record read back at startup, in sequence order.

        Commands are applied again (with their journaled time); events are
        outputs, so they are not applied but compared with what the commands
        regenerated. Any difference raises ReplayError.
        """
        kind = record.WhichOneof("record")
        if kind in EVENT_KINDS:
            expected = self._expected.popleft() if self._expected else None
            if expected != record:
                raise ReplayError(f"journal record {record.sequence} ({kind}) is not what replay regenerated")
            return
        if kind not in COMMAND_KINDS:
            raise ReplayError(f"journal record {record.sequence} has no known record kind")
        if self._expected:
            raise ReplayError(f"journal record {record.sequence}: events of the previous command are missing")
        if record.sequence != self.last_sequence + 1:
            raise ReplayError(
                f"journal record {record.sequence} follows {self.last_sequence}: a gap or a reorder"
            )
        if kind == "instrument_created":
            try:
                outcome = self.create_instrument(record.instrument_created, record.timestamp_ns)
            except InstrumentRejected as error:
                raise ReplayError(f"journal record {record.sequence}: {error.message}") from None
        elif kind == "new_order":
            outcome = self.new_order(record.new_order, record.timestamp_ns, journaled=True)
        elif kind == "risk_epoch_changed":
            outcome = self.change_risk_epoch(record.risk_epoch_changed.epoch, record.timestamp_ns)
        elif kind == "order_fenced":
            fenced = record.order_fenced
            outcome = Outcome(self.resolve_order(fenced.order_id, fenced.account_id, record.timestamp_ns)[1])
        else:
            outcome = self.cancel_order(record.cancel_order, record.timestamp_ns)
        if not outcome.records or outcome.records[0] != record:
            raise ReplayError(f"journal record {record.sequence} ({kind}) does not replay as journaled")
        self._expected.extend(outcome.records[1:])

    def finish_replay(self) -> None:
        """Call after the last journal record; raises when the journal ends mid-command."""
        if self._expected:
            raise ReplayError(
                f"the journal ends before the events of its last command ({len(self._expected)} missing)"
            )

    # -- queries -------------------------------------------------------------------------

    def order_message(self, order_id: str) -> common_pb2.Order | None:
        order = self.orders.get(order_id)
        return None if order is None else order.message()

    def instrument_list(self) -> list[common_pb2.Instrument]:
        return [self.instruments[symbol] for symbol in sorted(self.instruments)]

    def state_hash(self) -> str:
        """A digest of the whole state: counters, instruments, books, orders (replay equality)."""
        digest = hashlib.sha256()
        digest.update(f"{self.last_sequence}|{self.last_trade_id}|{self.last_timestamp_ns}\n".encode())
        digest.update(f"risk-epoch|{self.risk_epoch}\n".encode())
        for symbol in sorted(self.instruments):
            digest.update(self.instruments[symbol].SerializeToString(deterministic=True))
            digest.update(self.books[symbol].state_hash().encode())
        for order in self.orders.values():
            digest.update(
                f"{order.order_id}|{order.client_order_id}|{order.account_id}|{order.symbol}|"
                f"{order.side}|{order.price_ticks}|{order.quantity_lots}|{order.filled_lots}|"
                f"{order.leaves_lots}|{order.cancelled_lots}|{order.status}|{order.filled_notional}|"
                f"{order.created_ns}|{order.updated_ns}|{order.resting}\n".encode()
            )
        for order_id in sorted(self.fences):
            digest.update(f"fence|{order_id}|{self.fences[order_id]}\n".encode())
        return digest.hexdigest()

    def validate(self) -> None:
        """Check every book and every order; raises InvariantViolation."""
        for book in self.books.values():
            book.validate()
        for order in self.orders.values():
            if order.filled_lots + order.leaves_lots + order.cancelled_lots != order.quantity_lots:
                raise InvariantViolation(f"order {order.order_id!r} does not conserve its quantity")
            is_open = order.status in _OPEN_STATUSES
            if is_open != order.resting or is_open != (order.order_id in self.books[order.symbol]):
                raise InvariantViolation(
                    f"order {order.order_id!r} has status {order.status}, resting={order.resting}"
                )
            expected_status = (
                _CANCELLED
                if order.cancelled_lots
                else _FILLED
                if not order.leaves_lots
                else _PARTIALLY_FILLED
                if order.filled_lots
                else _NEW
            )
            if order.status != expected_status:
                raise InvariantViolation(f"order {order.order_id!r} has status {order.status}")
            holder = self.orders.get(self.client_orders.get((order.account_id, order.client_order_id), ""))
            if holder is None or (holder.account_id, holder.client_order_id) != (
                order.account_id,
                order.client_order_id,
            ):
                raise InvariantViolation(f"order {order.order_id!r} is not in the client order id index")
        if len(self.client_orders) > len(self.orders) or self.fences.keys() & self.orders.keys():
            raise InvariantViolation("the client order id index or the fences disagree with the orders")


def _rejected_new_order(
    command: trading_pb2.NewOrder, reason: RejectReason, timestamp_ns: int, report: ReportMaker
) -> common_pb2.ExecutionReport:
    order = {
        "order_id": command.order_id,
        "client_order_id": command.client_order_id,
        "account_id": command.account_id,
        "symbol": command.symbol,
        "side": command.side,
        "type": command.type,
        "time_in_force": command.time_in_force,
        "price_ticks": command.price_ticks,
        "quantity_lots": command.quantity_lots,
        "status": _REJECTED,
        "created_ns": timestamp_ns,
        "updated_ns": timestamp_ns,
    }
    return report(order=order, execution_type=_REJECT, reject_reason=reason.number, timestamp_ns=timestamp_ns)


def _rejected_cancel(
    command: trading_pb2.CancelOrder, reason: RejectReason, timestamp_ns: int, report: ReportMaker
) -> common_pb2.ExecutionReport:
    # The order itself is not shown: the caller may not own it.
    order = {"order_id": command.order_id, "account_id": command.account_id, "status": _REJECTED}
    return report(order=order, execution_type=_REJECT, reject_reason=reason.number, timestamp_ns=timestamp_ns)
