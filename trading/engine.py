"""The matching engine: pure, synchronous and deterministic.

The engine applies commands (create an instrument, set its status, a new order, a cancel, a
cancel-replace, a mass cancel, an expiry of DAY orders) to its books and orders and answers each
with an :class:`Outcome`: the journal records the command produced (the command itself first,
then its events: trades, releases, replaces) and the execution reports to send. A rejected
command produces a REJECTED report (or raises :class:`CommandRejected`, for the control commands)
and no records, and changes nothing.

Order handling (the rules are written out in common.proto and trading.proto):

* LIMIT and MARKET orders; a market order has a protection price, or a quote budget (a buy), or
  both, and never rests.
* Time in force GTC, DAY (both rest; DAY orders expire on ExpireOrders), IOC (the remainder
  expires) and FOK (planned before any fill: all or nothing).
* Post-only (refused or repriced one tick behind, as the command says), self-trade prevention
  (the arriving order's mode: cancel the resting order, the arriving one, or both).
* Instrument status: a halted or closed instrument refuses new orders and replaces.
* Every report of a journaled command is numbered per account (``account_sequence``).

A plain limit order (GTC or DAY, no post-only, no self-trade prevention) takes the hot path:
:meth:`Book.submit` matches and rests it in one loop. Every other order is planned over the
book first (nothing changes), then executed step by step; a fill-or-kill that cannot fill stops
after the plan. Cancelled lots are what someone asked to cancel (the owner, a mass cancel,
self-trade prevention); expired lots are what the order's own terms ended (IOC, FOK, market
remainder, DAY expiry): filled + open + cancelled + expired = quantity, for every order.

Nothing here reads a clock, a configuration or a counter of its own making: the caller hands
in the engine time of each command, everything an outcome depends on is in the command or in
journaled state, and journal sequences and trade ids continue from the engine's counters, which
replay rebuilds. Replaying the journaled commands through :meth:`Engine.replay` therefore
rebuilds the same books, orders and counters, and regenerates exactly the journaled events
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
releases its reservation on that record. A replace whose outcome is unknown is
resolved the same way by :meth:`Engine.resolve_replace`: applied when it is the
last replace applied to the order (``Engine.replace_ids``), else fenced by a
journaled ``replace_fenced`` record (``Engine.replace_fences``), so that
replace id is refused for the order (REPLACE_FENCED) even if its ReplaceOrder
is still on its way; risk gives back what it grew the hold by on that record.

Memory: an order stays in ``Engine.orders`` (and its client order id in
``client_orders``) while it is open, and once closed until the report history
holds its last report (trading/history.py); then :meth:`Engine.forget` drops
it (trading/retention.py decides when), GetOrder reads it from the history,
and a new order reusing its ids is checked against the history before the
engine sees it (:meth:`Engine.recall` takes it back in for that batch). So
memory is bounded by the open orders plus what the history has not written
yet, and the state digest covers open orders only. Fences stay in
``Engine.fences`` for the life of the process (one small entry per order
whose outcome was unknown, which only a crash or a lost answer makes: far
fewer than orders), and so do replace fences; the last replace id applied to an
order leaves with the order (:meth:`Engine.forget`). Mass
cancels and expiries scan the books (open orders only), so the hot path keeps
no per-account index.
"""

from __future__ import annotations

import hashlib
import operator
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.money import InstrumentMath, MoneyError, derive_instrument, from_units, parse_decimal
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2
from trading.book import BUY, SELL, Book, BookOrder, InvariantViolation
from trading.seen_ids import SeenIds

Instrument = common_pb2.Instrument
Order = common_pb2.Order
ExecutionReport = common_pb2.ExecutionReport
JournalRecord = trading_pb2.JournalRecord
OrderReleased = common_pb2.OrderReleased
# Makes one execution report from keyword arguments: ExecutionReport itself, or the ``add`` of a
# repeated ExecutionReport field, so a report is made where it is sent (a StreamOrders answer's
# result) instead of being made and then copied there.
ReportMaker = Callable[..., common_pb2.ExecutionReport]


def no_report(**fields: Any) -> common_pb2.ExecutionReport:
    """The report maker of a replay, which rebuilds the state and sends nothing: where the engine
    is given this maker it makes no report of what it journals (a replay of 1M commands
    spent a third of its time on reports nobody reads). A refusal, which replay turns into a
    ReplayError, is answered with an empty report."""
    return ExecutionReport()


COMMAND_KINDS = frozenset(
    {
        "instrument_created",
        "new_order",
        "cancel_order",
        "risk_epoch_changed",
        "order_fenced",
        "replace_fenced",
        "replace_order",
        "mass_cancel",
        "expire_orders",
        "set_instrument_status",
    }
)
EVENT_KINDS = frozenset({"trade", "order_released", "order_replaced"})

_NEW = common_pb2.ORDER_STATUS_NEW
_PARTIALLY_FILLED = common_pb2.ORDER_STATUS_PARTIALLY_FILLED
_FILLED = common_pb2.ORDER_STATUS_FILLED
_CANCELLED = common_pb2.ORDER_STATUS_CANCELLED
_REJECTED = common_pb2.ORDER_STATUS_REJECTED
_EXPIRED = common_pb2.ORDER_STATUS_EXPIRED
_ACCEPTED = common_pb2.EXECUTION_TYPE_ACCEPTED
_TRADE = common_pb2.EXECUTION_TYPE_TRADE
_CANCEL = common_pb2.EXECUTION_TYPE_CANCELLED
_REJECT = common_pb2.EXECUTION_TYPE_REJECTED
_EXPIRE = common_pb2.EXECUTION_TYPE_EXPIRED
_REPLACE = common_pb2.EXECUTION_TYPE_REPLACED
_MAKER = common_pb2.LIQUIDITY_SIDE_MAKER
_TAKER = common_pb2.LIQUIDITY_SIDE_TAKER
_LIMIT = common_pb2.ORDER_TYPE_LIMIT
_MARKET = common_pb2.ORDER_TYPE_MARKET
_GTC = common_pb2.TIME_IN_FORCE_GTC
_IOC = common_pb2.TIME_IN_FORCE_IOC
_FOK = common_pb2.TIME_IN_FORCE_FOK
_DAY = common_pb2.TIME_IN_FORCE_DAY
_POST_ONLY_REPRICE = common_pb2.POST_ONLY_REPRICE
_STP_CANCEL_RESTING = common_pb2.SELF_TRADE_PREVENTION_CANCEL_RESTING
_STP_CANCEL_INCOMING = common_pb2.SELF_TRADE_PREVENTION_CANCEL_INCOMING
_TRADING = common_pb2.INSTRUMENT_STATUS_TRADING
_HALTED = common_pb2.INSTRUMENT_STATUS_HALTED
_CLOSED = common_pb2.INSTRUMENT_STATUS_CLOSED
_BY_OWNER = common_pb2.CANCEL_REASON_REQUESTED
_BY_MASS_CANCEL = common_pb2.CANCEL_REASON_MASS_CANCEL
_BY_SELF_TRADE = common_pb2.CANCEL_REASON_SELF_TRADE_PREVENTED
_IOC_REMAINDER = common_pb2.CANCEL_REASON_IOC_REMAINDER
_MARKET_REMAINDER = common_pb2.CANCEL_REASON_MARKET_REMAINDER
_FOK_UNFILLABLE = common_pb2.CANCEL_REASON_FOK_UNFILLABLE
_DAY_EXPIRED = common_pb2.CANCEL_REASON_DAY_EXPIRED
_OPEN_STATUSES = (_NEW, _PARTIALLY_FILLED)
# Time in force values (as sent: UNSPECIFIED is GTC) of an order that may rest.
_RESTING_TIME_IN_FORCE = (common_pb2.TIME_IN_FORCE_UNSPECIFIED, _GTC, _DAY)
_KNOWN_TIME_IN_FORCE = frozenset(common_pb2.TimeInForce.values())
_KNOWN_POST_ONLY = frozenset(common_pb2.PostOnly.values())
_KNOWN_SELF_TRADE_PREVENTION = frozenset(common_pb2.SelfTradePrevention.values())
_SETTABLE_STATUSES = (_TRADING, _HALTED, _CLOSED)
_STATUS_REFUSALS: dict[int, RejectReason] = {
    _HALTED: RejectReason.INSTRUMENT_HALTED,
    _CLOSED: RejectReason.INSTRUMENT_CLOSED,
}
_fee = InstrumentMath.fee
# The id formats a new order's ids must have (backbone.ids), as length bounds and whole-string matches.
_ORDER_ID_MAX, _order_id_format = ids.ORDER_ID.max_length, ids.ORDER_ID.pattern.fullmatch
_ACCOUNT_ID_MAX, _account_id_format = ids.ACCOUNT_ID.max_length, ids.ACCOUNT_ID.pattern.fullmatch
_CLIENT_ORDER_ID_MAX = ids.CLIENT_ORDER_ID.max_length
_client_order_id_format = ids.CLIENT_ORDER_ID.pattern.fullmatch

assert common_pb2.SIDE_BUY == BUY and common_pb2.SIDE_SELL == SELL


class CommandRejected(Exception):
    """A control command (instrument, status, expiry) refused: ``reason`` and the fields at fault."""

    def __init__(
        self, reason: RejectReason, message: str, violations: Iterable[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.violations = list(violations)


class InstrumentRejected(CommandRejected):
    """CreateInstrument refused: ``reason`` is INVALID_INSTRUMENT or INSTRUMENT_EXISTS."""


class ReplayError(RuntimeError):
    """The journal does not replay to what it records; the state cannot be trusted."""


class OrderState(BookOrder):
    """One order as the engine knows it; the book sees only the BookOrder part.

    ``sent_price_ticks`` and ``sent_quantity_lots`` are the NewOrder's (a retry of the same
    client order id is compared with them, whatever repricing or replaces did since);
    ``reserve_price_ticks`` is the price risk holds the order's reservation at: the NewOrder's
    price, then each replace's new price (Trade.buy_limit_price_ticks carries it).
    """

    __slots__ = (
        "account_id",
        "cancelled_lots",
        "client_order_id",
        "created_ns",
        "expired_lots",
        "filled_lots",
        "filled_notional",
        "order_type",
        "plain",
        "post_only",
        "quantity_lots",
        "quote_budget",
        "reserve_price_ticks",
        "self_trade_prevention",
        "sent_price_ticks",
        "sent_quantity_lots",
        "status",
        "symbol",
        "time_in_force",
        "updated_ns",
    )

    def __init__(self, command: trading_pb2.NewOrder, timestamp_ns: int) -> None:
        # BookOrder's fields set here rather than through its __init__ (one call less per order).
        self.order_id = command.order_id
        self.side = command.side
        self.price_ticks = self.sent_price_ticks = self.reserve_price_ticks = command.price_ticks
        self.leaves_lots = self.quantity_lots = self.sent_quantity_lots = command.quantity_lots
        self.resting = False
        self.client_order_id = command.client_order_id
        self.account_id = command.account_id
        self.symbol = command.symbol
        self.order_type = order_type = command.type or _LIMIT
        self.time_in_force = time_in_force = command.time_in_force or _GTC
        self.post_only = post_only = command.post_only
        self.self_trade_prevention = prevention = command.self_trade_prevention
        self.quote_budget = budget = command.quote_budget
        # A limit order that may rest and has no conditions: matched and rested in one loop.
        self.plain = (
            order_type == _LIMIT and time_in_force in (_GTC, _DAY) and not (post_only or prevention or budget)
        )
        self.filled_lots = 0
        self.cancelled_lots = 0
        self.expired_lots = 0
        self.filled_notional = 0
        self.status = _NEW
        self.created_ns = timestamp_ns
        self.updated_ns = timestamp_ns

    def __reduce__(self) -> tuple[Callable[[tuple[Any, ...]], OrderState], tuple[tuple[Any, ...]]]:
        """Pickled as its fields in one tuple (snapshots: trading/snapshots.py): loading a snapshot
        of many orders costs a third of what pickle's default for slotted objects does."""
        return _restored_order, (_order_fields(self),)

    def fields(self, leaves_lots: int | None = None, status: int | None = None) -> dict[str, object]:
        """The order as keyword arguments of a common.v1.Order (optionally with other leaves/status).

        A dict, not a message: protobuf builds a submessage from a dict
        faster than it copies one in. Fields that are zero for a plain limit order are left out
        when zero (an unset proto3 field reads as zero), which keeps the hot path's reports cheap.
        """
        fields: dict[str, object] = {
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
        if not self.plain or self.expired_lots:
            fields["post_only"] = self.post_only
            fields["self_trade_prevention"] = self.self_trade_prevention
            fields["quote_budget"] = self.quote_budget
            fields["expired_lots"] = self.expired_lots
            if self.reserve_price_ticks != self.price_ticks:
                fields["reserve_price_ticks"] = self.reserve_price_ticks
        return fields

    def message(self) -> common_pb2.Order:
        """The order as a common.v1.Order."""
        return Order(**self.fields())  # type: ignore[arg-type]


# Every slot of an OrderState (BookOrder's, then its own), in the order __reduce__ packs them.
ORDER_FIELDS = (*BookOrder.__slots__, *OrderState.__slots__)
_order_fields = operator.attrgetter(*ORDER_FIELDS)


def _restored_order(values: tuple[Any, ...]) -> OrderState:
    """An OrderState from its fields in ORDER_FIELDS' order (what OrderState.__reduce__ packed);
    one unpacking assignment, not an attribute set per field (tests/unit/test_trading_snapshot_orders.py
    checks it names every slot, in order)."""
    order = object.__new__(OrderState)
    (
        order.leaves_lots,
        order.order_id,
        order.price_ticks,
        order.resting,
        order.side,
        order.account_id,
        order.cancelled_lots,
        order.client_order_id,
        order.created_ns,
        order.expired_lots,
        order.filled_lots,
        order.filled_notional,
        order.order_type,
        order.plain,
        order.post_only,
        order.quantity_lots,
        order.quote_budget,
        order.reserve_price_ticks,
        order.self_trade_prevention,
        order.sent_price_ticks,
        order.sent_quantity_lots,
        order.status,
        order.symbol,
        order.time_in_force,
        order.updated_ns,
    ) = values
    return order


@dataclass(slots=True)
class Outcome:
    """What one command produced: journal records (none when rejected) and reports."""

    records: list[trading_pb2.JournalRecord] = field(default_factory=list)
    reports: list[common_pb2.ExecutionReport] = field(default_factory=list)
    instrument: common_pb2.Instrument | None = None

    @property
    def accepted(self) -> bool:
        return bool(self.records)

    @property
    def cancelled_count(self) -> int:
        """How many orders the command cancelled (a MassCancel's answer)."""
        return sum(1 for report in self.reports if report.execution_type == _CANCEL)


# A step of a planned match: (resting order, lots to trade), or (resting order, 0) for a resting
# order that self-trade prevention cancels.
Step = tuple[OrderState, int]

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
        # Definitions as created (status unset; the status lives in instrument_status).
        self.instruments: dict[str, common_pb2.Instrument] = {}
        self.instrument_status: dict[str, int] = {}
        # symbol -> why its orders are refused, for the instruments that are not TRADING only (the
        # hot path asks whether this is empty).
        self._refusals: dict[str, RejectReason] = {}
        self.books: dict[str, Book] = {}
        self.orders: dict[str, OrderState] = {}
        # (account id, client order id) -> the order id holding it; as long-lived as the orders.
        self.client_orders: dict[tuple[str, str], str] = {}
        # The ids of every order journaled here (trading/seen_ids.py): a new order's ids it never
        # saw are not looked up in the report history.
        self.seen_ids = SeenIds()
        # order id -> account id of every fenced order (never journaled, refused for good).
        self.fences: dict[str, str] = {}
        # order id -> the replace id of the last replace applied to it (ReplaceOrder.replace_id;
        # none when it was applied without one), while the engine holds the order.
        self.replace_ids: dict[str, str] = {}
        # (order id, replace id) -> account id of every fenced replace (never applied, refused for good).
        self.replace_fences: dict[tuple[str, str], str] = {}
        # account id -> the number of the last execution report of a journaled command for it.
        self.account_sequences: dict[str, int] = {}
        self._math: dict[str, InstrumentMath] = {}
        # symbol -> (min quantity lots, max quantity lots, max price ticks): a new order's bounds,
        # read once (a proto field read costs more than a tuple's).
        self._limits: dict[str, tuple[int, int, int]] = {}
        self.last_sequence = 0
        self.last_trade_id = 0
        self.last_timestamp_ns = 0
        # The epoch of risk's state since its last rebuild ("" until risk first rebuilt): a new
        # order must have been reserved in it (NewOrder.risk_epoch).
        self.risk_epoch = ""
        self._expected: deque[trading_pb2.JournalRecord] = deque()

    def become(self, loaded: Engine) -> None:
        """Take on the whole state of `loaded` (an engine read from a snapshot): whoever holds
        this engine (the engine loop, the servicer, a request already queued) sees it from now on."""
        self.__dict__ = loaded.__dict__

    # -- commands ------------------------------------------------------------------------

    def _clock(self, timestamp_ns: int) -> int:
        """Engine time never goes backwards, even when the wall clock does."""
        if timestamp_ns < self.last_timestamp_ns:
            return self.last_timestamp_ns
        self.last_timestamp_ns = timestamp_ns
        return timestamp_ns

    def _numbered(self, account_id: str) -> int:
        """The next report number of `account_id` (ExecutionReport.account_sequence), counted."""
        number = self.account_sequences.get(account_id, 0) + 1
        self.account_sequences[account_id] = number
        return number

    def apply(
        self, command: trading_pb2.OrderCommand, timestamp_ns: int, report: ReportMaker = ExecutionReport
    ) -> Outcome:
        """Apply one OrderCommand (new order, cancel, replace, mass cancel); its reports are made
        by `report`.

        Each report of a command that produced events (trades, releases, a replace) carries the
        sequence of the last of them (``journal_sequence``): balances reflecting that sequence
        reflect every report of the command. An order that only rests has none: its reservation
        was made before it reached the engine, so no read need wait for it.
        """
        kind = command.WhichOneof("command")
        if kind == "new_order":
            return self.new_order(command.new_order, timestamp_ns, report=report)
        if kind == "cancel_order":
            return self.cancel_order(command.cancel_order, timestamp_ns, report=report)
        if kind == "replace_order":
            return self.replace_order(command.replace_order, timestamp_ns, report=report)
        if kind == "mass_cancel":
            return self.mass_cancel(command.mass_cancel, timestamp_ns, report=report)
        rejected = report(
            order={"status": _REJECTED},
            execution_type=_REJECT,
            reject_reason=RejectReason.INVALID_ORDER.number,
            timestamp_ns=timestamp_ns,
        )
        return Outcome([], [rejected])

    def create_instrument(self, instrument: common_pb2.Instrument, timestamp_ns: int) -> Outcome:
        """Add an instrument, TRADING; the same definition again is a no-op (no records).

        The definition's status is not part of it (ListInstruments fills it in, so what it lists
        can be given back): it is stored and journaled unset. Raises InstrumentRejected for an
        invalid definition or a different one under an existing symbol.
        """
        stored = Instrument()
        stored.CopyFrom(instrument)
        stored.ClearField("status")
        existing = self.instruments.get(stored.symbol)
        if existing is not None:
            if existing == stored:
                return Outcome([], [], self.instrument_message(stored.symbol))
            raise InstrumentRejected(
                RejectReason.INSTRUMENT_EXISTS,
                f"instrument {stored.symbol} already exists with a different definition",
            )
        problems = check_instrument(stored)
        if problems:
            described = "; ".join(f"{name} {what}" for name, what in problems)
            raise InstrumentRejected(
                RejectReason.INVALID_INSTRUMENT,
                f"the instrument definition is invalid: {described}",
                problems,
            )
        timestamp_ns = self._clock(timestamp_ns)
        self.instruments[stored.symbol] = stored
        self.instrument_status[stored.symbol] = _TRADING
        self.books[stored.symbol] = Book(stored.symbol)
        self._math[stored.symbol] = InstrumentMath.of(stored)
        self._limits[stored.symbol] = (
            stored.min_quantity_lots,
            stored.max_quantity_lots,
            stored.max_price_ticks,
        )
        self.last_sequence += 1
        record = JournalRecord(
            sequence=self.last_sequence, timestamp_ns=timestamp_ns, instrument_created=stored
        )
        return Outcome([record], [], self.instrument_message(stored.symbol))

    def set_instrument_status(self, command: trading_pb2.SetInstrumentStatus, timestamp_ns: int) -> Outcome:
        """Halt, close or resume an instrument (journaled); its status again is a no-op.

        Raises CommandRejected (UNKNOWN_SYMBOL, INVALID_COMMAND) changing nothing.
        """
        current = self.instrument_status.get(command.symbol)
        if current is None:
            raise CommandRejected(
                RejectReason.UNKNOWN_SYMBOL, f"no instrument {command.symbol!r}", [("symbol", "is not known")]
            )
        if command.status not in _SETTABLE_STATUSES:
            raise CommandRejected(
                RejectReason.INVALID_COMMAND,
                f"status {command.status} is not TRADING, HALTED or CLOSED",
                [("status", "must be TRADING, HALTED or CLOSED")],
            )
        if command.status == current:
            return Outcome([], [], self.instrument_message(command.symbol))
        self.instrument_status[command.symbol] = command.status
        refusal = _STATUS_REFUSALS.get(command.status)
        if refusal is None:
            self._refusals.pop(command.symbol, None)
        else:
            self._refusals[command.symbol] = refusal
        self.last_sequence += 1
        record = JournalRecord(
            sequence=self.last_sequence, timestamp_ns=self._clock(timestamp_ns), set_instrument_status=command
        )
        return Outcome([record], [], self.instrument_message(command.symbol))

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
        limits = self._limits.get(order.symbol)
        if limits is None:
            return RejectReason.UNKNOWN_SYMBOL
        min_quantity_lots, max_quantity_lots, max_price_ticks = limits
        if order.side not in (BUY, SELL) or not min_quantity_lots <= order.quantity_lots <= max_quantity_lots:
            return RejectReason.INVALID_ORDER
        if self._refusals and order.symbol in self._refusals:
            return self._refusals[order.symbol]
        if order.plain:  # the hot path
            return None if 1 <= order.price_ticks <= max_price_ticks else RejectReason.INVALID_ORDER
        return _conditions_problem(order, self.instruments[order.symbol])

    def new_order(
        self,
        command: trading_pb2.NewOrder,
        timestamp_ns: int,
        *,
        journaled: trading_pb2.JournalRecord | None = None,
        report: ReportMaker = ExecutionReport,
    ) -> Outcome:
        """Accept and match an order, then rest, expire or cancel its remainder as its terms say;
        or reject it without changing anything.

        ``journaled`` is for replay: the record that journaled the order (`command` is its
        new_order), which was accepted then; it is the outcome's first record when it stands at
        the sequence and time the order gets now (not a copy of it made to be compared with it:
        a twelfth of a replay's time). Reports are
        made by `report`, in the order they happened (accepted first, then each fill's taker and
        maker reports, each self-trade cancel, and the remainder's expiry or cancel); those of an
        order that produced events carry its last event's sequence.
        """
        order = OrderState(command, timestamp_ns)  # kept only when accepted
        problem = self._order_problem(command, order, journaled=journaled is not None)
        if problem is not None:
            return Outcome([], [_rejected_new_order(command, problem, timestamp_ns, report)])
        client_key = (order.account_id, order.client_order_id)
        holder_id = self.client_orders.get(client_key)
        if holder_id is not None and journaled is None:
            # A journaled duplicate (accepted before this rule) replays; the index keeps the first.
            return self._client_order_id_held(command, self.orders[holder_id], timestamp_ns, report)
        symbol = order.symbol
        book = self.books[symbol]
        if order.plain:
            steps: list[Step] = book.submit(order)  # type: ignore[assignment]
            outcome_kind = None
        else:
            if order.post_only:
                price = _post_only_price(
                    order.post_only,
                    order.side,
                    order.price_ticks,
                    book,
                    self.instruments[symbol].max_price_ticks,
                )
                if not price:
                    rejected = _rejected_new_order(
                        command, RejectReason.POST_ONLY_WOULD_TAKE, timestamp_ns, report
                    )
                    return Outcome([], [rejected])
                order.price_ticks = price
            steps, outcome_kind = self._match_with_conditions(order, book)
        if timestamp_ns >= self.last_timestamp_ns:  # _clock, inlined on the hot path
            self.last_timestamp_ns = timestamp_ns
        else:
            timestamp_ns = order.created_ns = order.updated_ns = self.last_timestamp_ns
        self.orders[order.order_id] = order
        if holder_id is None:
            self.client_orders[client_key] = order.order_id
        self.seen_ids.add(order.order_id, order.account_id, order.client_order_id)
        sequence = self.last_sequence + 1
        if (
            journaled is not None
            and journaled.sequence == sequence
            and journaled.timestamp_ns == timestamp_ns
        ):
            record = journaled
        else:
            record = JournalRecord(sequence=sequence, timestamp_ns=timestamp_ns)
            # Into the empty field: a copy, cheaper than new_order= (0.73 against 0.93 us), MergeFrom (1.06).
            record.new_order.CopyFrom(command)
        records = [record]
        numbers = self.account_sequences
        account_id = order.account_id
        number = numbers.get(account_id, 0) + 1
        numbers[account_id] = number
        if not steps and outcome_kind is None:
            self.last_sequence = sequence
            if report is no_report:
                return Outcome(records)
            accepted = report(
                order=order.fields(),
                execution_type=_ACCEPTED,
                timestamp_ns=timestamp_ns,
                account_sequence=number,
            )
            return Outcome(records, [accepted])
        # The last event's sequence, carried by every report: one record per step, and one for a
        # remainder that expires or is cancelled.
        last = sequence + len(steps) + (outcome_kind is not None)
        reports: list[common_pb2.ExecutionReport] = []
        if report is not no_report:
            reports.append(
                report(
                    order=order.fields(order.quantity_lots, _NEW),  # as accepted, before it matched
                    execution_type=_ACCEPTED,
                    timestamp_ns=timestamp_ns,
                    journal_sequence=last,
                    account_sequence=number,
                )
            )
        self._record_steps(order, steps, sequence, last, timestamp_ns, records, reports, report)
        if outcome_kind is not None:
            self._release(order, outcome_kind, last, timestamp_ns, last, records, reports, report)
        self.last_sequence = last
        return Outcome(records, reports)

    def _match_with_conditions(self, order: OrderState, book: Book) -> tuple[list[Step], int | None]:
        """Match an order with conditions (IOC, FOK, market, self-trade prevention, post-only):
        plan over the book, then execute the plan, unless it is a fill-or-kill that cannot fill.

        Returns the steps taken and what becomes of the remainder: None when it rests (or there
        is none), else the CancelReason of its release (the remainder is then counted as
        discarded by the book, and ``order.leaves_lots`` still holds it).
        """
        steps, stopped_by_self_trade = self._plan(order, book)
        if order.time_in_force == _FOK and sum(lots for _, lots in steps) < order.leaves_lots:
            book.discard(order.leaves_lots)
            return [], _FOK_UNFILLABLE
        for maker, lots in steps:
            if lots:
                book.take(maker, lots)
                order.leaves_lots -= lots
            elif book.cancel(maker.order_id) is not maker:
                raise InvariantViolation(f"open order {maker.order_id!r} was not on the book")
        remaining = order.leaves_lots
        if not remaining:
            return steps, None
        if stopped_by_self_trade:
            reason: int | None = _BY_SELF_TRADE
        elif order.order_type == _MARKET:
            reason = _MARKET_REMAINDER
        elif order.time_in_force == _IOC or order.time_in_force == _FOK:
            reason = _IOC_REMAINDER
        else:
            book.enter(order)
            return steps, None
        book.discard(remaining)
        return steps, reason

    def _plan(self, order: OrderState, book: Book) -> tuple[list[Step], bool]:
        """The steps matching `order` would take, changing nothing, and whether self-trade
        prevention stops it (its remainder is then cancelled).

        Walks the opposite side in priority order within the order's limit (a market order's
        protection price; a budget-only market buy has none), skipping or stopping at orders of
        the same account as its self-trade prevention says, and sizing each fill of a budget
        buy to the whole lots the rest of the budget buys at the maker's price (fees excluded),
        stopping at the first price where not one lot is affordable.
        """
        is_buy = order.side == BUY
        limit = order.price_ticks
        instrument = self.instruments[order.symbol]
        if not limit:  # a market buy with a budget only
            limit = instrument.max_price_ticks
        # Most orders cross nothing: answered from the best opposite price, without starting (and
        # closing) the walk over the makers.
        best = book.best_ask() if is_buy else book.best_bid()
        if best is None or ((best > limit) if is_buy else (best < limit)):
            return [], False
        prevention = order.self_trade_prevention
        account_id = order.account_id
        has_budget = budget_left = order.quote_budget
        tick_lot = instrument.quote_minor_per_tick_lot
        remaining = order.leaves_lots
        steps: list[Step] = []
        for maker in book.makers(order.side):
            price = maker.price_ticks
            if (price > limit) if is_buy else (price < limit):
                break
            assert isinstance(maker, OrderState)
            if prevention and maker.account_id == account_id:
                if prevention != _STP_CANCEL_INCOMING:
                    steps.append((maker, 0))
                if prevention != _STP_CANCEL_RESTING:
                    return steps, True
                continue
            lots = maker.leaves_lots if maker.leaves_lots < remaining else remaining
            if has_budget:
                affordable = budget_left // (price * tick_lot)
                if affordable < lots:
                    lots = affordable
                if not lots:
                    break
                budget_left -= price * tick_lot * lots
            steps.append((maker, lots))
            remaining -= lots
            if not remaining or lots < maker.leaves_lots:
                # The maker stays first in priority: the taker is filled, or its budget buys no
                # further lot at this price (nor, the prices only getting worse, at any later one).
                break
        return steps, False

    def _record_steps(
        self,
        order: OrderState,
        steps: list[Step],
        sequence: int,
        last: int,
        timestamp_ns: int,
        records: list[trading_pb2.JournalRecord],
        reports: list[common_pb2.ExecutionReport],
        report: ReportMaker,
    ) -> None:
        """Journal and report the steps `order` took as a taker (books already changed): each
        fill a trade with its taker and maker reports, each resting order self-trade prevention
        cancelled a release with its report. `sequence` is the record before the first step's."""
        symbol = order.symbol
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
        numbers = self.account_sequences
        taker_account = order.account_id
        reporting = report is not no_report
        for maker, lots in steps:
            sequence += 1
            if not lots:
                self._release(maker, _BY_SELF_TRADE, sequence, timestamp_ns, last, records, reports, report)
                continue
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
                "buy_limit_price_ticks": buyer.reserve_price_ticks,
                "buy_leaves_lots": buy_leaves,
                "sell_leaves_lots": sell_leaves,
                "timestamp_ns": timestamp_ns,
            }
            if buyer.quote_budget:
                trade["buy_quote_budget"] = buyer.quote_budget
            records.append(JournalRecord(sequence=sequence, timestamp_ns=timestamp_ns, trade=trade))
            taker_number = numbers.get(taker_account, 0) + 1
            numbers[taker_account] = taker_number
            maker_account = maker.account_id
            maker_number = numbers.get(maker_account, 0) + 1
            numbers[maker_account] = maker_number
            if not reporting:
                continue
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
                    account_sequence=taker_number,
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
                    account_sequence=maker_number,
                )
            )
        self.last_trade_id = trade_id
        order.status = _PARTIALLY_FILLED if order.filled_lots else _NEW
        if not order.leaves_lots:
            order.status = _FILLED

    def _release(
        self,
        order: OrderState,
        reason: int,
        sequence: int,
        timestamp_ns: int,
        last: int,
        records: list[trading_pb2.JournalRecord],
        reports: list[common_pb2.ExecutionReport],
        report: ReportMaker,
    ) -> None:
        """Close `order`, already off the book (or never on it), releasing its open lots: an
        OrderReleased record at `sequence` and a CANCELLED report, or EXPIRED when its own terms
        (IOC, FOK, market, DAY) ended it; `reason` is the report's CancelReason."""
        released = order.leaves_lots
        order.leaves_lots = 0
        if reason in (_BY_OWNER, _BY_MASS_CANCEL, _BY_SELF_TRADE):
            order.cancelled_lots += released
            order.status = _CANCELLED
            execution_type = _CANCEL
        else:
            order.expired_lots += released
            order.status = _EXPIRED
            execution_type = _EXPIRE
        order.updated_ns = timestamp_ns
        records.append(
            JournalRecord(
                sequence=sequence,
                timestamp_ns=timestamp_ns,
                order_released=OrderReleased(
                    order_id=order.order_id,
                    account_id=order.account_id,
                    symbol=order.symbol,
                    side=order.side,  # type: ignore[arg-type]
                    released_lots=released,
                    timestamp_ns=timestamp_ns,
                ),
            )
        )
        number = self._numbered(order.account_id)
        if report is not no_report:
            reports.append(
                report(
                    order=order.fields(),
                    execution_type=execution_type,
                    cancel_reason=reason,
                    timestamp_ns=timestamp_ns,
                    journal_sequence=last,
                    account_sequence=number,
                )
            )

    def _client_order_id_held(
        self, command: trading_pb2.NewOrder, holder: OrderState, timestamp_ns: int, report: ReportMaker
    ) -> Outcome:
        """A new order whose client order id `holder` holds: nothing journaled, the holder reported.

        The same order again (a retry: the NewOrder as the holder was sent, whatever repricing
        or replaces did since) is answered ACCEPTED with the holder as it is now; a different
        one REJECTED with DUPLICATE_CLIENT_ORDER_ID. Either report names the holder.
        """
        same = (
            command.symbol == holder.symbol
            and command.side == holder.side
            and (command.type or _LIMIT) == holder.order_type
            and (command.time_in_force or _GTC) == holder.time_in_force
            and command.price_ticks == holder.sent_price_ticks
            and command.quantity_lots == holder.sent_quantity_lots
            and command.post_only == holder.post_only
            and command.self_trade_prevention == holder.self_trade_prevention
            and command.quote_budget == holder.quote_budget
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

    def resolve_replace(
        self, order_id: str, account_id: str, replace_id: str, timestamp_ns: int
    ) -> tuple[int, OrderState | None, list[trading_pb2.JournalRecord]]:
        """Settle a replace whose outcome is unknown: (a trading.v1 ReplaceResolution, the order
        when the engine holds it, the records to journal).

        APPLIED when `replace_id` is the last replace applied to the order: the gateway grows a
        hold for one replace of an order at a time (risk's mark), so a replace asked about is
        either that last one or was never applied. Otherwise FENCED, with a ``replace_fenced``
        record the first time (the order closed or not: a closed order takes no replace, and risk
        gives back only what is still marked with that id); ORDER_GONE when the engine does not
        hold the order (or another account does): closed and forgotten, or never journaled here,
        so no replace can apply to it and its close released its hold. The ids are not checked
        here (the servicer does).
        """
        order = self.orders.get(order_id)
        if order is None or order.account_id != account_id:
            return trading_pb2.REPLACE_RESOLUTION_ORDER_GONE, None, []
        if self.replace_ids.get(order_id) == replace_id:
            return trading_pb2.REPLACE_RESOLUTION_APPLIED, order, []
        return (
            trading_pb2.REPLACE_RESOLUTION_FENCED,
            order,
            self.fence_replace(order_id, account_id, replace_id, timestamp_ns),
        )

    def fence_replace(
        self, order_id: str, account_id: str, replace_id: str, timestamp_ns: int
    ) -> list[trading_pb2.JournalRecord]:
        """Refuse `replace_id` for `order_id` from now on: [its replace_fenced record], or [] when
        it was fenced before. A journaled fence replays whatever became of the order since."""
        key = (order_id, replace_id)
        if key in self.replace_fences:
            return []
        timestamp_ns = self._clock(timestamp_ns)
        self.replace_fences[key] = account_id
        self.last_sequence += 1
        fenced = common_pb2.ReplaceFenced(
            order_id=order_id, account_id=account_id, replace_id=replace_id, timestamp_ns=timestamp_ns
        )
        return [JournalRecord(sequence=self.last_sequence, timestamp_ns=timestamp_ns, replace_fenced=fenced)]

    def _owned_open_order(
        self, order_id: str, account_id: str, timestamp_ns: int, report: ReportMaker
    ) -> OrderState | common_pb2.ExecutionReport:
        """The open order `order_id` of `account_id`, or the REJECTED report saying why not
        (UNKNOWN_ORDER, NOT_ORDER_OWNER, ORDER_NOT_OPEN)."""
        order = self.orders.get(order_id)
        if order is None or order.account_id != account_id:
            reason = RejectReason.UNKNOWN_ORDER if order is None else RejectReason.NOT_ORDER_OWNER
            # The order itself is not shown: the caller may not own it.
            shown = {"order_id": order_id, "account_id": account_id, "status": _REJECTED}
            return report(
                order=shown, execution_type=_REJECT, reject_reason=reason.number, timestamp_ns=timestamp_ns
            )
        if order.status not in _OPEN_STATUSES:
            return report(
                order=order.fields(),
                execution_type=_REJECT,
                reject_reason=RejectReason.ORDER_NOT_OPEN.number,
                timestamp_ns=timestamp_ns,
            )
        return order

    def cancel_order(
        self, command: trading_pb2.CancelOrder, timestamp_ns: int, *, report: ReportMaker = ExecutionReport
    ) -> Outcome:
        """Cancel an order's open quantity and release it; or reject without changing anything.

        The CANCELLED report (made by `report`, CANCEL_REASON_REQUESTED) carries the release's
        sequence.
        """
        order = self._owned_open_order(command.order_id, command.account_id, timestamp_ns, report)
        if not isinstance(order, OrderState):
            return Outcome([], [order])
        timestamp_ns = self._clock(timestamp_ns)
        if self.books[order.symbol].cancel(order.order_id) is not order:
            raise InvariantViolation(f"open order {order.order_id!r} was not on the book")
        sequence = self.last_sequence
        records = [JournalRecord(sequence=sequence + 1, timestamp_ns=timestamp_ns, cancel_order=command)]
        reports: list[common_pb2.ExecutionReport] = []
        self._release(order, _BY_OWNER, sequence + 2, timestamp_ns, sequence + 2, records, reports, report)
        self.last_sequence = sequence + 2
        return Outcome(records, reports)

    def replace_order(
        self, command: trading_pb2.ReplaceOrder, timestamp_ns: int, *, report: ReportMaker = ExecutionReport
    ) -> Outcome:
        """Cancel-replace an open order's price and total quantity, keeping its order id; or
        reject without changing anything (see trading.proto ReplaceOrder for the rules).

        Journals the command, an OrderReplaced event, then whatever the new price caused (trades,
        self-trade cancels, a self-trade cancel of the remainder). Reports REPLACED, then those.
        """
        order = self._owned_open_order(command.order_id, command.account_id, timestamp_ns, report)
        if not isinstance(order, OrderState):
            return Outcome([], [order])
        problem = self._replace_problem(command, order)
        book = self.books[order.symbol]
        new_price = command.price_ticks
        new_leaves = command.quantity_lots - order.filled_lots
        if problem is None and order.post_only and new_price != order.price_ticks:
            new_price = _post_only_price(
                order.post_only, order.side, new_price, book, self.instruments[order.symbol].max_price_ticks
            )
            if not new_price:
                problem = RejectReason.POST_ONLY_WOULD_TAKE
        if problem is not None:
            rejected = report(
                order=order.fields(),
                execution_type=_REJECT,
                reject_reason=problem.number,
                timestamp_ns=timestamp_ns,
            )
            return Outcome([], [rejected])
        timestamp_ns = self._clock(timestamp_ns)
        old_price, old_leaves = order.reserve_price_ticks, order.leaves_lots
        keeps_priority = new_price == order.price_ticks and new_leaves <= old_leaves
        if keeps_priority:
            book.reduce(order.order_id, old_leaves - new_leaves)
            steps: list[Step] = []
            remainder_reason = None
        else:
            if book.cancel(order.order_id, to_rest_again=True) is not order:
                raise InvariantViolation(f"open order {order.order_id!r} was not on the book")
            order.price_ticks = new_price
            order.leaves_lots = new_leaves
            steps, remainder_reason = self._match_with_conditions(order, book)
        order.quantity_lots = command.quantity_lots
        order.reserve_price_ticks = new_price
        order.updated_ns = timestamp_ns
        if command.replace_id:
            self.replace_ids[order.order_id] = command.replace_id
        else:
            self.replace_ids.pop(order.order_id, None)
        sequence = self.last_sequence
        last = sequence + 2 + len(steps) + (remainder_reason is not None)
        replaced = common_pb2.OrderReplaced(
            order_id=order.order_id,
            account_id=order.account_id,
            symbol=order.symbol,
            side=order.side,  # type: ignore[arg-type]
            old_price_ticks=old_price,
            new_price_ticks=new_price,
            old_leaves_lots=old_leaves,
            new_leaves_lots=new_leaves,
            priority_kept=keeps_priority,
            timestamp_ns=timestamp_ns,
        )
        records = [
            JournalRecord(sequence=sequence + 1, timestamp_ns=timestamp_ns, replace_order=command),
            JournalRecord(sequence=sequence + 2, timestamp_ns=timestamp_ns, order_replaced=replaced),
        ]
        number = self._numbered(order.account_id)
        reports: list[common_pb2.ExecutionReport] = []
        if report is not no_report:
            reports.append(
                report(
                    order=order.fields(new_leaves, _PARTIALLY_FILLED if order.filled_lots else _NEW),
                    execution_type=_REPLACE,
                    timestamp_ns=timestamp_ns,
                    journal_sequence=last,
                    account_sequence=number,
                )
            )
        if steps:
            self._record_steps(order, steps, sequence + 2, last, timestamp_ns, records, reports, report)
        if remainder_reason is not None:
            self._release(order, remainder_reason, last, timestamp_ns, last, records, reports, report)
        self.last_sequence = last
        return Outcome(records, reports)

    def _replace_problem(self, command: trading_pb2.ReplaceOrder, order: OrderState) -> RejectReason | None:
        """Why a replace of the open order `order` is refused (besides post-only), or None.

        A replace whose hold risk grew in an epoch of its state that risk has since rebuilt is
        refused (RISK_REBUILT): the grow is not in the rebuilt state. The check gives the same
        answer at replay (the epoch changes are journaled in order); an empty epoch is not checked.
        """
        replace_id = command.replace_id
        if replace_id:
            if not (len(replace_id) <= _ORDER_ID_MAX and _order_id_format(replace_id)):
                return RejectReason.INVALID_ORDER
            if (order.order_id, replace_id) in self.replace_fences:
                return RejectReason.REPLACE_FENCED
        if command.risk_epoch and self.risk_epoch and command.risk_epoch != self.risk_epoch:
            return RejectReason.RISK_REBUILT
        refusal = self._refusals.get(order.symbol)
        if refusal is not None:
            return refusal
        instrument = self.instruments[order.symbol]
        if not (
            1 <= command.price_ticks <= instrument.max_price_ticks
            and instrument.min_quantity_lots <= command.quantity_lots <= instrument.max_quantity_lots
        ):
            return RejectReason.INVALID_ORDER
        if command.quantity_lots <= order.filled_lots:
            return RejectReason.REPLACE_QUANTITY_TOO_SMALL
        return None

    def _open_orders_of(self, symbols: Iterable[str], account_id: str | None = None) -> list[OrderState]:
        """The open orders of `symbols` (of one account, when given), in book order: symbols in
        order, bids then asks, each in priority (a scan of the books: open orders only)."""
        found: list[OrderState] = []
        for symbol in symbols:
            book = self.books[symbol]
            for side in (BUY, SELL):
                for order in book.orders_in_priority(side):
                    assert isinstance(order, OrderState)
                    if account_id is None or order.account_id == account_id:
                        found.append(order)
        return found

    def _close_all(
        self,
        record: trading_pb2.JournalRecord,
        orders: list[OrderState],
        reason: int,
        timestamp_ns: int,
        report: ReportMaker,
    ) -> Outcome:
        """Journal `record` (its command set, its sequence and time not yet) and close every
        one of `orders` (open) with a release and a report of `reason`; nothing when there are none."""
        if not orders:
            return Outcome([], [])
        timestamp_ns = self._clock(timestamp_ns)
        sequence = self.last_sequence + 1
        last = sequence + len(orders)
        record.sequence = sequence
        record.timestamp_ns = timestamp_ns
        records = [record]
        reports: list[common_pb2.ExecutionReport] = []
        for order in orders:
            if self.books[order.symbol].cancel(order.order_id) is not order:
                raise InvariantViolation(f"open order {order.order_id!r} was not on the book")
            sequence += 1
            self._release(order, reason, sequence, timestamp_ns, last, records, reports, report)
        self.last_sequence = last
        return Outcome(records, reports)

    def mass_cancel(
        self, command: trading_pb2.MassCancel, timestamp_ns: int, *, report: ReportMaker = ExecutionReport
    ) -> Outcome:
        """Cancel every open order of an account (in one symbol, when given); works on halted and
        closed instruments. A REJECTED report (INVALID_ACCOUNT_ID,
        UNKNOWN_SYMBOL) changes nothing; finding nothing open journals nothing and reports nothing.
        """
        account_id, symbol = command.account_id, command.symbol
        problem = None
        if not (0 < len(account_id) <= _ACCOUNT_ID_MAX and _account_id_format(account_id)):
            problem = RejectReason.INVALID_ACCOUNT_ID
        elif symbol and symbol not in self.books:
            problem = RejectReason.UNKNOWN_SYMBOL
        if problem is not None:
            shown = {"account_id": account_id, "symbol": symbol, "status": _REJECTED}
            rejected = report(
                order=shown, execution_type=_REJECT, reject_reason=problem.number, timestamp_ns=timestamp_ns
            )
            return Outcome([], [rejected])
        orders = self._open_orders_of([symbol] if symbol else sorted(self.books), account_id)
        record = JournalRecord(mass_cancel=command)
        return self._close_all(record, orders, _BY_MASS_CANCEL, timestamp_ns, report)

    def expire_orders(
        self, command: trading_pb2.ExpireOrders, timestamp_ns: int, *, report: ReportMaker = ExecutionReport
    ) -> Outcome:
        """Expire every open DAY order (of one symbol, when given), each released and reported
        EXPIRED (CANCEL_REASON_DAY_EXPIRED). Raises CommandRejected (UNKNOWN_SYMBOL,
        INVALID_COMMAND) changing nothing; finding nothing open journals nothing."""
        symbol = command.symbol
        if symbol and symbol not in self.books:
            raise CommandRejected(
                RejectReason.UNKNOWN_SYMBOL, f"no instrument {symbol!r}", [("symbol", "is not known")]
            )
        if command.time_in_force != _DAY:
            raise CommandRejected(
                RejectReason.INVALID_COMMAND,
                f"time in force {command.time_in_force} does not expire (only DAY does)",
                [("time_in_force", "must be TIME_IN_FORCE_DAY")],
            )
        orders = [
            order
            for order in self._open_orders_of([symbol] if symbol else sorted(self.books))
            if order.time_in_force == _DAY
        ]
        return self._close_all(
            JournalRecord(expire_orders=command), orders, _DAY_EXPIRED, timestamp_ns, report
        )

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

    def replay(
        self, record: trading_pb2.JournalRecord, *, reports: bool = False
    ) -> list[common_pb2.ExecutionReport]:
        """Apply one journal record read back at startup, in sequence order; with `reports`,
        returns the reports a command made again (the ones it made when it was journaled; none
        for an event).

        Commands are applied again (with their journaled time); events are
        outputs, so they are not applied but compared with what the commands
        regenerated. Any difference raises ReplayError. Without `reports` none are made
        (:func:`no_report`): a start asks for them only for the commands its report history has
        not written yet (a replay of 1M commands spent a third of its time on reports), and the
        state (account report numbers included) is the same without.
        """
        kind = record.WhichOneof("record")
        if kind in EVENT_KINDS:
            expected = self._expected.popleft() if self._expected else None
            if expected != record:
                raise ReplayError(f"journal record {record.sequence} ({kind}) is not what replay regenerated")
            return []
        if kind not in COMMAND_KINDS:
            raise ReplayError(f"journal record {record.sequence} has no known record kind")
        if self._expected:
            raise ReplayError(f"journal record {record.sequence}: events of the previous command are missing")
        if record.sequence != self.last_sequence + 1:
            raise ReplayError(
                f"journal record {record.sequence} follows {self.last_sequence}: a gap or a reorder"
            )
        timestamp_ns = record.timestamp_ns
        maker: ReportMaker = ExecutionReport if reports else no_report
        try:
            if kind == "new_order":
                outcome = self.new_order(record.new_order, timestamp_ns, journaled=record, report=maker)
            elif kind == "cancel_order":
                outcome = self.cancel_order(record.cancel_order, timestamp_ns, report=maker)
            elif kind == "replace_order":
                outcome = self.replace_order(record.replace_order, timestamp_ns, report=maker)
            elif kind == "mass_cancel":
                outcome = self.mass_cancel(record.mass_cancel, timestamp_ns, report=maker)
            elif kind == "expire_orders":
                outcome = self.expire_orders(record.expire_orders, timestamp_ns, report=maker)
            elif kind == "set_instrument_status":
                outcome = self.set_instrument_status(record.set_instrument_status, timestamp_ns)
            elif kind == "instrument_created":
                outcome = self.create_instrument(record.instrument_created, timestamp_ns)
            elif kind == "risk_epoch_changed":
                outcome = self.change_risk_epoch(record.risk_epoch_changed.epoch, timestamp_ns)
            elif kind == "replace_fenced":
                fence = record.replace_fenced
                outcome = Outcome(
                    self.fence_replace(fence.order_id, fence.account_id, fence.replace_id, timestamp_ns)
                )
            else:
                fenced = record.order_fenced
                outcome = Outcome(self.resolve_order(fenced.order_id, fenced.account_id, timestamp_ns)[1])
        except CommandRejected as error:
            raise ReplayError(f"journal record {record.sequence}: {error.message}") from None
        if not outcome.records or outcome.records[0] != record:
            raise ReplayError(f"journal record {record.sequence} ({kind}) does not replay as journaled")
        self._expected.extend(outcome.records[1:])
        return outcome.reports if reports else []

    def finish_replay(self) -> None:
        """Call after the last journal record; raises when the journal ends mid-command."""
        if self._expected:
            raise ReplayError(
                f"the journal ends before the events of its last command ({len(self._expected)} missing)"
            )

    # -- retention -----------------------------------------------------------------------

    def forget(self, order_ids: Iterable[str]) -> int:
        """Drop the closed ones of `order_ids` from memory (their client order ids with them);
        returns how many. The caller forgets an order only once the report history holds its last
        report (trading/retention.py); GetOrder and a new order's id checks then read it there."""
        orders, client_orders = self.orders, self.client_orders
        forgotten = 0
        for order_id in order_ids:
            order = orders.get(order_id)
            if order is None or order.status in _OPEN_STATUSES:
                continue
            del orders[order_id]
            self.replace_ids.pop(order_id, None)
            key = (order.account_id, order.client_order_id)
            if client_orders.get(key) == order_id:
                del client_orders[key]
            forgotten += 1
        return forgotten

    def recall(self, orders: Iterable[OrderState]) -> list[OrderState]:
        """Take closed orders read back from the report history into memory again (so a new
        order reusing one's client order id or order id is answered as if it had never left);
        an order still in memory is kept as it is. Returns those taken in (forget them again)."""
        taken: list[OrderState] = []
        for order in orders:
            if order.order_id in self.orders or order.status in _OPEN_STATUSES:
                continue
            self.orders[order.order_id] = order
            self.client_orders.setdefault((order.account_id, order.client_order_id), order.order_id)
            taken.append(order)
        return taken

    # -- queries -------------------------------------------------------------------------

    def order_message(self, order_id: str) -> common_pb2.Order | None:
        order = self.orders.get(order_id)
        return None if order is None else order.message()

    def instrument_message(self, symbol: str) -> common_pb2.Instrument:
        """The instrument `symbol` with its current status."""
        instrument = Instrument(status=self.instrument_status[symbol])  # type: ignore[arg-type]
        instrument.MergeFrom(self.instruments[symbol])
        return instrument

    def instrument_list(self) -> list[common_pb2.Instrument]:
        """Every instrument with its current status, by symbol."""
        return [self.instrument_message(symbol) for symbol in sorted(self.instruments)]

    def state_hash(self) -> str:
        """A digest of the state: counters, instruments and their status, books, open orders,
        fences and account report numbers (replay equality).

        Closed orders are left out: the engine forgets them once the report history holds them
        (:meth:`forget`), at a moment that depends on when the history's writer ran, not on the
        journal, so two engines at one sequence may hold different closed orders and still be the
        same state. Nothing a command does depends on a closed order in memory (a new order's ids
        are looked up in the history first, :meth:`recall`), and everything about it is in the
        history; the counters, the books, the open orders and every account's report number are
        what replay must rebuild exactly.

        Of the filter of journaled ids (``seen_ids``) only the number of orders it was told is
        covered: it is a function of the journal (so it may be), and a count that differs is a
        filter missing orders; its bits (megabytes) are left out, so a digest stays cheap for the
        checks that take one, and a snapshot's bits are guarded by zlib's checksum.
        """
        digest = hashlib.sha256()
        digest.update(f"{self.last_sequence}|{self.last_trade_id}|{self.last_timestamp_ns}\n".encode())
        digest.update(f"risk-epoch|{self.risk_epoch}\n".encode())
        for symbol in sorted(self.instruments):
            digest.update(self.instruments[symbol].SerializeToString(deterministic=True))
            digest.update(f"status|{self.instrument_status[symbol]}\n".encode())
            digest.update(self.books[symbol].state_hash().encode())
        for order in self.orders.values():
            if order.status not in _OPEN_STATUSES:
                continue  # closed orders leave memory when the history holds them (see forget)
            digest.update(
                f"{order.order_id}|{order.client_order_id}|{order.account_id}|{order.symbol}|"
                f"{order.side}|{order.order_type}|{order.time_in_force}|{order.post_only}|"
                f"{order.self_trade_prevention}|{order.quote_budget}|{order.price_ticks}|"
                f"{order.sent_price_ticks}|{order.reserve_price_ticks}|{order.quantity_lots}|"
                f"{order.sent_quantity_lots}|{order.filled_lots}|{order.leaves_lots}|"
                f"{order.cancelled_lots}|{order.expired_lots}|{order.status}|{order.filled_notional}|"
                f"{order.created_ns}|{order.updated_ns}|{order.resting}\n".encode()
            )
        for order_id in sorted(self.fences):
            digest.update(f"fence|{order_id}|{self.fences[order_id]}\n".encode())
        for order_id in sorted(self.replace_ids):
            if self.orders[order_id].status in _OPEN_STATUSES:  # as the orders: open ones only
                digest.update(f"replaced|{order_id}|{self.replace_ids[order_id]}\n".encode())
        for order_id, replace_id in sorted(self.replace_fences):
            account_id = self.replace_fences[order_id, replace_id]
            digest.update(f"replace-fence|{order_id}|{replace_id}|{account_id}\n".encode())
        for account_id in sorted(self.account_sequences):
            digest.update(f"reports|{account_id}|{self.account_sequences[account_id]}\n".encode())
        digest.update(f"seen|{self.seen_ids.orders}\n".encode())
        return digest.hexdigest()

    def validate(self) -> None:
        """Check every book and every order; raises InvariantViolation."""
        for book in self.books.values():
            book.validate()
        if self.instrument_status.keys() != self.instruments.keys() or any(
            status not in _SETTABLE_STATUSES for status in self.instrument_status.values()
        ):
            raise InvariantViolation("instrument statuses disagree with the instruments")
        refusals = {
            symbol: _STATUS_REFUSALS[status]
            for symbol, status in self.instrument_status.items()
            if status in _STATUS_REFUSALS
        }
        limits = {
            symbol: (i.min_quantity_lots, i.max_quantity_lots, i.max_price_ticks)
            for symbol, i in self.instruments.items()
        }
        if self._refusals != refusals or self._limits != limits:
            raise InvariantViolation("the refusals or limits kept per symbol disagree with the instruments")
        for order in self.orders.values():
            if (
                order.filled_lots + order.leaves_lots + order.cancelled_lots + order.expired_lots
                != order.quantity_lots
            ):
                raise InvariantViolation(f"order {order.order_id!r} does not conserve its quantity")
            is_open = order.status in _OPEN_STATUSES
            if is_open != order.resting or is_open != (order.order_id in self.books[order.symbol]):
                raise InvariantViolation(
                    f"order {order.order_id!r} has status {order.status}, resting={order.resting}"
                )
            if is_open and (order.order_type != _LIMIT or order.time_in_force not in (_GTC, _DAY)):
                raise InvariantViolation(f"order {order.order_id!r} rests but may not")
            if order.cancelled_lots and order.expired_lots:
                raise InvariantViolation(f"order {order.order_id!r} was both cancelled and expired")
            expected_status = (
                _CANCELLED
                if order.cancelled_lots
                else _EXPIRED
                if order.expired_lots
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
        if not self.replace_ids.keys() <= self.orders.keys() or any(
            (order_id, replace_id) in self.replace_fences for order_id, replace_id in self.replace_ids.items()
        ):
            raise InvariantViolation("a replace id applied is of no order held, or was fenced")
        if any(number < 1 for number in self.account_sequences.values()):
            raise InvariantViolation("an account report number is not positive")


def _conditions_problem(order: OrderState, instrument: common_pb2.Instrument) -> RejectReason | None:
    """Why a new order that is not a plain limit order is refused, or None: its order type, time in
    force, post-only, self-trade prevention, protection and quote budget. `order` is the NewOrder
    as an OrderState, read from it once (its type and time in force with UNSPECIFIED as LIMIT and
    GTC, which these rules treat alike)."""
    order_type, time_in_force, post_only = order.order_type, order.time_in_force, order.post_only
    if (
        order_type not in (_LIMIT, _MARKET)
        or time_in_force not in _KNOWN_TIME_IN_FORCE
        or post_only not in _KNOWN_POST_ONLY
        or order.self_trade_prevention not in _KNOWN_SELF_TRADE_PREVENTION
    ):
        return RejectReason.INVALID_ORDER
    price, budget = order.price_ticks, order.quote_budget
    max_price = instrument.max_price_ticks
    if order_type == _MARKET:
        if time_in_force in _RESTING_TIME_IN_FORCE or post_only:
            return RejectReason.MARKET_ORDER_CANNOT_REST
        if not 0 <= price <= max_price:
            return RejectReason.INVALID_ORDER
        largest_amount = max_price * instrument.max_quantity_lots * instrument.quote_minor_per_tick_lot
        if budget and (order.side != BUY or not 0 < budget <= largest_amount):
            return RejectReason.INVALID_QUOTE_BUDGET
        if not price and not budget:
            return RejectReason.MARKET_PROTECTION_REQUIRED
        return None
    if budget:
        return RejectReason.INVALID_QUOTE_BUDGET
    if post_only and time_in_force not in _RESTING_TIME_IN_FORCE:
        return RejectReason.INVALID_ORDER
    return None if 1 <= price <= max_price else RejectReason.INVALID_ORDER


def _post_only_price(post_only: int, side: int, price_ticks: int, book: Book, max_price_ticks: int) -> int:
    """The price a post-only order of `side` rests at: its own when it does not cross; when it
    does, one tick behind the best opposite price (POST_ONLY_REPRICE), or 0 when it is refused
    (POST_ONLY_REJECT, or no price behind it from 1 to `max_price_ticks`)."""
    if side == BUY:
        best_ask = book.best_ask()
        if best_ask is None or price_ticks < best_ask:
            return price_ticks
        return best_ask - 1 if post_only == _POST_ONLY_REPRICE else 0
    best_bid = book.best_bid()
    if best_bid is None or price_ticks > best_bid:
        return price_ticks
    return best_bid + 1 if post_only == _POST_ONLY_REPRICE and best_bid < max_price_ticks else 0


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
        "post_only": command.post_only,
        "self_trade_prevention": command.self_trade_prevention,
        "quote_budget": command.quote_budget,
        "status": _REJECTED,
        "created_ns": timestamp_ns,
        "updated_ns": timestamp_ns,
    }
    return report(order=order, execution_type=_REJECT, reject_reason=reason.number, timestamp_ns=timestamp_ns)
