"""A deliberately naive reference of the matching engine's order handling, for tests.

Obviously right rather than fast: each book is a flat list of resting orders, the best maker
is found by sorting the candidates on every fill, a fill-or-kill is tried on a copy of the book
and kept only when it filled entirely, and a replace that loses priority is a removal and a new
arrival. It speaks the engine's commands (trading.v1 messages) and answers each with what the
tests compare with the real engine, as plain tuples:

* events: ("trade", buy order, sell order, price, lots), ("released", order, lots) and
  ("replaced", order, old price, new price, old leaves, new leaves), in journal order;
* reports: (order id, execution type, reason, account report number), where the reason is the
  reject reason of a refusal and the cancel reason of a cancel or expiry;
* depth: (price, lots, orders) per level, best first, as Book.depth gives it.

The rules are those of trading.proto and common.proto (see trading/engine.py); the order of
refusal checks is the engine's, so both give the same reason for the same command.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from backbone.common.v1 import common_pb2 as c
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2

BUY, SELL = c.SIDE_BUY, c.SIDE_SELL
Event = tuple[object, ...]
Report = tuple[str, int, int, int]

_CANCEL_REASONS = (
    c.CANCEL_REASON_REQUESTED,
    c.CANCEL_REASON_MASS_CANCEL,
    c.CANCEL_REASON_SELF_TRADE_PREVENTED,
)
_RESTS = (c.TIME_IN_FORCE_GTC, c.TIME_IN_FORCE_DAY)


@dataclass
class ModelOrder:
    order_id: str
    account_id: str
    symbol: str
    side: int
    order_type: int
    time_in_force: int
    post_only: int
    prevention: int
    budget: int
    price: int
    quantity: int
    leaves: int
    arrival: int
    reserved_price: int  # what risk reserved at: the price sent, then each replace's new price
    filled: int = 0
    cancelled: int = 0
    expired: int = 0
    status: int = c.ORDER_STATUS_NEW
    resting: bool = False


@dataclass
class ModelInstrument:
    max_price: int
    min_quantity: int
    max_quantity: int
    tick_lot: int
    status: int = c.INSTRUMENT_STATUS_TRADING


class Refused(Exception):
    """A control command the model refuses (the engine raises CommandRejected)."""

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class Model:
    """Books, orders and report numbers, the slow and simple way."""

    def __init__(self) -> None:
        self.instruments: dict[str, ModelInstrument] = {}
        self.orders: dict[str, ModelOrder] = {}
        self.resting: dict[str, list[ModelOrder]] = {}  # symbol -> resting orders, any order
        self.numbers: dict[str, int] = {}
        self.arrivals = 0
        self.trades: list[Event] = []
        # order id -> the replace id of the last replace applied to it; fenced (order id, replace id).
        self.replace_ids: dict[str, str] = {}
        self.replace_fences: set[tuple[str, str]] = set()

    # -- the book --------------------------------------------------------------------------

    def add_instrument(self, instrument: c.Instrument) -> None:
        self.instruments[instrument.symbol] = ModelInstrument(
            instrument.max_price_ticks,
            instrument.min_quantity_lots,
            instrument.max_quantity_lots,
            instrument.quote_minor_per_tick_lot,
        )
        self.resting[instrument.symbol] = []

    def depth(self, symbol: str, side: int) -> list[tuple[int, int, int]]:
        levels: dict[int, list[int]] = {}
        for order in self.resting[symbol]:
            if order.side == side:
                level = levels.setdefault(order.price, [0, 0])
                level[0] += order.leaves
                level[1] += 1
        return [(price, levels[price][0], levels[price][1]) for price in sorted(levels, reverse=side == BUY)]

    def _in_priority(self, book: list[ModelOrder], side: int) -> list[ModelOrder]:
        same_side = [order for order in book if order.side == side]
        return sorted(same_side, key=lambda o: (-o.price if side == BUY else o.price, o.arrival))

    def _best_price(self, symbol: str, side: int) -> int | None:
        ordered = self._in_priority(self.resting[symbol], side)
        return ordered[0].price if ordered else None

    def _numbered(self, order: ModelOrder | str) -> int:
        account_id = order if isinstance(order, str) else order.account_id
        self.numbers[account_id] = self.numbers.get(account_id, 0) + 1
        return self.numbers[account_id]

    # -- matching --------------------------------------------------------------------------

    def _walk(self, taker: ModelOrder, book: list[ModelOrder]) -> tuple[list[tuple[ModelOrder, int]], bool]:
        """Match `taker` against `book` (changed in place): the (maker, lots) fills, (maker, 0)
        for a self-trade cancel of a maker, and whether self-trade prevention stopped it."""
        steps: list[tuple[ModelOrder, int]] = []
        opposite = SELL if taker.side == BUY else BUY
        limit = taker.price or self.instruments[taker.symbol].max_price
        spent = 0
        tick_lot = self.instruments[taker.symbol].tick_lot
        while taker.leaves:
            makers = self._in_priority(book, opposite)
            if not makers:
                break
            maker = makers[0]
            if (maker.price > limit) if taker.side == BUY else (maker.price < limit):
                break
            if taker.prevention and maker.account_id == taker.account_id:
                mode = taker.prevention
                if mode in (c.SELF_TRADE_PREVENTION_CANCEL_RESTING, c.SELF_TRADE_PREVENTION_CANCEL_BOTH):
                    book.remove(maker)
                    steps.append((maker, 0))
                if mode in (c.SELF_TRADE_PREVENTION_CANCEL_INCOMING, c.SELF_TRADE_PREVENTION_CANCEL_BOTH):
                    return steps, True
                continue
            lots = min(taker.leaves, maker.leaves)
            if taker.budget:
                lots = min(lots, (taker.budget - spent) // (maker.price * tick_lot))
                if lots == 0:
                    break
                spent += maker.price * tick_lot * lots
            maker.leaves -= lots
            taker.leaves -= lots
            if not maker.leaves:
                book.remove(maker)
            steps.append((maker, lots))
        return steps, False

    def _arrive(self, taker: ModelOrder, events: list[Event], reports: list[Report]) -> None:
        """Match an arriving (or re-queued) order and settle its remainder."""
        book = self.resting[taker.symbol]
        if taker.time_in_force == c.TIME_IN_FORCE_FOK:
            trial_book = [copy.copy(order) for order in book]
            trial_taker = copy.copy(taker)
            self._walk(trial_taker, trial_book)
            if trial_taker.leaves:
                self._close(taker, c.CANCEL_REASON_FOK_UNFILLABLE, events, reports)
                return
        steps, stopped = self._walk(taker, book)
        for maker, lots in steps:
            if not lots:
                maker.resting = False  # _walk took it off the book
                self._close(maker, c.CANCEL_REASON_SELF_TRADE_PREVENTED, events, reports)
                continue
            taker.filled += lots
            maker.filled += lots
            buy, sell = (taker, maker) if taker.side == BUY else (maker, taker)
            trade = ("trade", buy.order_id, sell.order_id, maker.price, lots)
            events.append(trade)
            self.trades.append(trade)
            maker.status = c.ORDER_STATUS_PARTIALLY_FILLED if maker.leaves else c.ORDER_STATUS_FILLED
            maker.resting = bool(maker.leaves)
            reports.append((taker.order_id, c.EXECUTION_TYPE_TRADE, 0, self._numbered(taker)))
            reports.append((maker.order_id, c.EXECUTION_TYPE_TRADE, 0, self._numbered(maker)))
        if taker.filled:
            taker.status = c.ORDER_STATUS_PARTIALLY_FILLED if taker.leaves else c.ORDER_STATUS_FILLED
        if not taker.leaves:
            return
        if stopped:
            self._close(taker, c.CANCEL_REASON_SELF_TRADE_PREVENTED, events, reports)
        elif taker.order_type == c.ORDER_TYPE_MARKET:
            self._close(taker, c.CANCEL_REASON_MARKET_REMAINDER, events, reports)
        elif taker.time_in_force not in _RESTS:
            self._close(taker, c.CANCEL_REASON_IOC_REMAINDER, events, reports)
        else:
            self.arrivals += 1
            taker.arrival = self.arrivals
            taker.resting = True
            book.append(taker)

    def _close(self, order: ModelOrder, reason: int, events: list[Event], reports: list[Report]) -> None:
        if order.resting:
            self.resting[order.symbol].remove(order)
            order.resting = False
        released, order.leaves = order.leaves, 0
        if reason in _CANCEL_REASONS:
            order.cancelled += released
            order.status = c.ORDER_STATUS_CANCELLED
            execution_type = c.EXECUTION_TYPE_CANCELLED
        else:
            order.expired += released
            order.status = c.ORDER_STATUS_EXPIRED
            execution_type = c.EXECUTION_TYPE_EXPIRED
        events.append(("released", order.order_id, released))
        reports.append((order.order_id, execution_type, reason, self._numbered(order)))

    # -- commands --------------------------------------------------------------------------

    def new_order(self, command: trading_pb2.NewOrder) -> tuple[list[Event], list[Report]]:
        refusal = self._new_order_problem(command)
        if refusal is not None:
            return [], [(command.order_id, c.EXECUTION_TYPE_REJECTED, refusal.number, 0)]
        order = ModelOrder(
            command.order_id,
            command.account_id,
            command.symbol,
            command.side,
            command.type or c.ORDER_TYPE_LIMIT,
            command.time_in_force or c.TIME_IN_FORCE_GTC,
            command.post_only,
            command.self_trade_prevention,
            command.quote_budget,
            command.price_ticks,
            command.quantity_lots,
            command.quantity_lots,
            0,
            command.price_ticks,
        )
        if order.post_only:
            price = self._post_only_price(order, order.price)
            if price is None:
                reason = RejectReason.POST_ONLY_WOULD_TAKE.number
                return [], [(command.order_id, c.EXECUTION_TYPE_REJECTED, reason, 0)]
            order.price = price
        self.orders[order.order_id] = order
        events: list[Event] = [("new_order", order.order_id)]
        reports: list[Report] = [(order.order_id, c.EXECUTION_TYPE_ACCEPTED, 0, self._numbered(order))]
        self._arrive(order, events, reports)
        return events, reports

    def _new_order_problem(self, command: trading_pb2.NewOrder) -> RejectReason | None:
        if command.order_id in self.orders:
            return RejectReason.DUPLICATE_ORDER_ID
        instrument = self.instruments.get(command.symbol)
        if instrument is None:
            return RejectReason.UNKNOWN_SYMBOL
        if command.side not in (BUY, SELL) or not (
            instrument.min_quantity <= command.quantity_lots <= instrument.max_quantity
        ):
            return RejectReason.INVALID_ORDER
        if instrument.status == c.INSTRUMENT_STATUS_HALTED:
            return RejectReason.INSTRUMENT_HALTED
        if instrument.status == c.INSTRUMENT_STATUS_CLOSED:
            return RejectReason.INSTRUMENT_CLOSED
        if (
            command.type not in (0, c.ORDER_TYPE_LIMIT, c.ORDER_TYPE_MARKET)
            or command.time_in_force not in (0, 1, 2, 3, 4)
            or command.post_only not in (0, 1, 2)
            or command.self_trade_prevention not in (0, 1, 2, 3)
        ):
            return RejectReason.INVALID_ORDER
        rests = command.time_in_force in (0, *_RESTS)
        if command.type == c.ORDER_TYPE_MARKET:
            if rests or command.post_only:
                return RejectReason.MARKET_ORDER_CANNOT_REST
            if not 0 <= command.price_ticks <= instrument.max_price:
                return RejectReason.INVALID_ORDER
            largest = instrument.max_price * instrument.max_quantity * instrument.tick_lot
            if command.quote_budget and (command.side != BUY or not 0 < command.quote_budget <= largest):
                return RejectReason.INVALID_QUOTE_BUDGET
            if not command.price_ticks and not command.quote_budget:
                return RejectReason.MARKET_PROTECTION_REQUIRED
            return None
        if command.quote_budget:
            return RejectReason.INVALID_QUOTE_BUDGET
        if command.post_only and not rests:
            return RejectReason.INVALID_ORDER
        if not 1 <= command.price_ticks <= instrument.max_price:
            return RejectReason.INVALID_ORDER
        return None

    def _post_only_price(self, order: ModelOrder, price: int) -> int | None:
        """Where a post-only order rests (repriced behind the best opposite price), or None."""
        opposite = self._best_price(order.symbol, SELL if order.side == BUY else BUY)
        crosses = opposite is not None and (price >= opposite if order.side == BUY else price <= opposite)
        if not crosses:
            return price
        if order.post_only != c.POST_ONLY_REPRICE:
            return None
        assert opposite is not None
        repriced = opposite - 1 if order.side == BUY else opposite + 1
        return repriced if 1 <= repriced <= self.instruments[order.symbol].max_price else None

    def _owned_open(self, order_id: str, account_id: str) -> ModelOrder | Report:
        order = self.orders.get(order_id)
        if order is None:
            return (order_id, c.EXECUTION_TYPE_REJECTED, RejectReason.UNKNOWN_ORDER.number, 0)
        if order.account_id != account_id:
            return (order_id, c.EXECUTION_TYPE_REJECTED, RejectReason.NOT_ORDER_OWNER.number, 0)
        if not order.resting:
            return (order_id, c.EXECUTION_TYPE_REJECTED, RejectReason.ORDER_NOT_OPEN.number, 0)
        return order

    def resolve_replace(self, order_id: str, account_id: str, replace_id: str) -> tuple[int, list[Event]]:
        """A replace whose outcome is unknown: applied when it is the order's last applied replace,
        gone when there is no such order of the account, else fenced (an event the first time)."""
        order = self.orders.get(order_id)
        if order is None or order.account_id != account_id:
            return trading_pb2.REPLACE_RESOLUTION_ORDER_GONE, []
        if self.replace_ids.get(order_id) == replace_id:
            return trading_pb2.REPLACE_RESOLUTION_APPLIED, []
        if (order_id, replace_id) in self.replace_fences:
            return trading_pb2.REPLACE_RESOLUTION_FENCED, []
        self.replace_fences.add((order_id, replace_id))
        return trading_pb2.REPLACE_RESOLUTION_FENCED, [("replace_fenced", order_id, replace_id)]

    def cancel_order(self, command: trading_pb2.CancelOrder) -> tuple[list[Event], list[Report]]:
        order = self._owned_open(command.order_id, command.account_id)
        if not isinstance(order, ModelOrder):
            return [], [order]
        events: list[Event] = [("cancel_order", order.order_id)]
        reports: list[Report] = []
        self._close(order, c.CANCEL_REASON_REQUESTED, events, reports)
        return events, reports

    def replace_order(self, command: trading_pb2.ReplaceOrder) -> tuple[list[Event], list[Report]]:
        order = self._owned_open(command.order_id, command.account_id)
        if not isinstance(order, ModelOrder):
            return [], [order]
        instrument = self.instruments[order.symbol]
        refusal = None
        if (order.order_id, command.replace_id) in self.replace_fences:
            refusal = RejectReason.REPLACE_FENCED
        elif instrument.status == c.INSTRUMENT_STATUS_HALTED:
            refusal = RejectReason.INSTRUMENT_HALTED
        elif instrument.status == c.INSTRUMENT_STATUS_CLOSED:
            refusal = RejectReason.INSTRUMENT_CLOSED
        elif not (
            1 <= command.price_ticks <= instrument.max_price
            and instrument.min_quantity <= command.quantity_lots <= instrument.max_quantity
        ):
            refusal = RejectReason.INVALID_ORDER
        elif command.quantity_lots <= order.filled:
            refusal = RejectReason.REPLACE_QUANTITY_TOO_SMALL
        new_price: int | None = command.price_ticks
        if refusal is None and order.post_only and new_price != order.price:
            new_price = self._post_only_price(order, command.price_ticks)
            if new_price is None:
                refusal = RejectReason.POST_ONLY_WOULD_TAKE
        if refusal is not None or new_price is None:
            assert refusal is not None
            return [], [(order.order_id, c.EXECUTION_TYPE_REJECTED, refusal.number, 0)]
        new_leaves = command.quantity_lots - order.filled
        events: list[Event] = [
            ("replace_order", order.order_id),
            ("replaced", order.order_id, order.reserved_price, new_price, order.leaves, new_leaves),
        ]
        reports: list[Report] = [(order.order_id, c.EXECUTION_TYPE_REPLACED, 0, self._numbered(order))]
        if command.replace_id:
            self.replace_ids[order.order_id] = command.replace_id
        else:
            self.replace_ids.pop(order.order_id, None)
        order.quantity = command.quantity_lots
        order.reserved_price = new_price
        if new_price == order.price and new_leaves <= order.leaves:
            order.leaves = new_leaves
            return events, reports
        self.resting[order.symbol].remove(order)
        order.resting = False
        order.price, order.leaves = new_price, new_leaves
        self._arrive(order, events, reports)
        return events, reports

    def _open_in_book_order(self, symbols: list[str], account_id: str | None = None) -> list[ModelOrder]:
        found = []
        for symbol in sorted(symbols):
            for side in (BUY, SELL):
                for order in self._in_priority(self.resting[symbol], side):
                    if account_id is None or order.account_id == account_id:
                        found.append(order)
        return found

    def mass_cancel(self, command: trading_pb2.MassCancel) -> tuple[list[Event], list[Report]]:
        if command.symbol and command.symbol not in self.instruments:
            reason = RejectReason.UNKNOWN_SYMBOL.number
            return [], [("", c.EXECUTION_TYPE_REJECTED, reason, 0)]
        symbols = [command.symbol] if command.symbol else list(self.instruments)
        orders = self._open_in_book_order(symbols, command.account_id)
        return self._close_all("mass_cancel", orders, c.CANCEL_REASON_MASS_CANCEL)

    def expire_orders(self, command: trading_pb2.ExpireOrders) -> tuple[list[Event], list[Report]]:
        if command.symbol and command.symbol not in self.instruments:
            raise Refused(RejectReason.UNKNOWN_SYMBOL)
        if command.time_in_force != c.TIME_IN_FORCE_DAY:
            raise Refused(RejectReason.INVALID_COMMAND)
        symbols = [command.symbol] if command.symbol else list(self.instruments)
        orders = [o for o in self._open_in_book_order(symbols) if o.time_in_force == c.TIME_IN_FORCE_DAY]
        return self._close_all("expire_orders", orders, c.CANCEL_REASON_DAY_EXPIRED)

    def _close_all(
        self, kind: str, orders: list[ModelOrder], reason: int
    ) -> tuple[list[Event], list[Report]]:
        if not orders:
            return [], []
        events: list[Event] = [(kind,)]
        reports: list[Report] = []
        for order in orders:
            self._close(order, reason, events, reports)
        return events, reports

    def set_instrument_status(self, command: trading_pb2.SetInstrumentStatus) -> list[Event]:
        instrument = self.instruments.get(command.symbol)
        if instrument is None:
            raise Refused(RejectReason.UNKNOWN_SYMBOL)
        if command.status not in (
            c.INSTRUMENT_STATUS_TRADING,
            c.INSTRUMENT_STATUS_HALTED,
            c.INSTRUMENT_STATUS_CLOSED,
        ):
            raise Refused(RejectReason.INVALID_COMMAND)
        if command.status == instrument.status:
            return []
        instrument.status = command.status
        return [("set_instrument_status", command.symbol)]


def engine_events(records: list[trading_pb2.JournalRecord]) -> list[Event]:
    """The engine's journal records as the model's events."""
    events: list[Event] = []
    for record in records:
        kind = record.WhichOneof("record")
        if kind == "trade":
            t = record.trade
            events.append(("trade", t.buy_order_id, t.sell_order_id, t.price_ticks, t.quantity_lots))
        elif kind == "order_released":
            events.append(("released", record.order_released.order_id, record.order_released.released_lots))
        elif kind == "order_replaced":
            r = record.order_replaced
            events.append(
                (
                    "replaced",
                    r.order_id,
                    r.old_price_ticks,
                    r.new_price_ticks,
                    r.old_leaves_lots,
                    r.new_leaves_lots,
                )
            )
        elif kind == "replace_fenced":
            events.append((kind, record.replace_fenced.order_id, record.replace_fenced.replace_id))
        elif kind in ("new_order", "cancel_order", "replace_order"):
            events.append((kind, getattr(record, kind).order_id))
        elif kind == "set_instrument_status":
            events.append((kind, record.set_instrument_status.symbol))
        else:
            events.append((kind or "",))
    return events


def engine_reports(reports: list[c.ExecutionReport]) -> list[Report]:
    """The engine's execution reports as the model's."""
    return [
        (
            report.order.order_id,
            report.execution_type,
            report.reject_reason or report.cancel_reason,
            report.account_sequence,
        )
        for report in reports
    ]
