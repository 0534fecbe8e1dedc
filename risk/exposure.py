"""Pure risk arithmetic: commands and trading events as per-account operations.

Nothing here does I/O. A reserve becomes the exact amount an order holds, a
trade becomes one operation per side (its totals' deltas and the cap on the
order's reservation), a release becomes the drop of an order's reservation.
Amounts are Python ints computed with :class:`backbone.money.InstrumentMath`;
ids are checked with :mod:`backbone.ids`, the rules every service shares.
"""

from __future__ import annotations

from typing import NamedTuple

from backbone import ids
from backbone.common.v1 import common_pb2
from backbone.money import INT64_MAX, InstrumentMath
from backbone.reasons import RejectReason
from backbone.risk.v1 import risk_pb2

# The reason of a malformed reservation command (risk/servicer.py refers to it by this name).
INVALID_ORDER = RejectReason.INVALID_ORDER

BUYER_LEG = 0
SELLER_LEG = 1
RELEASE_LEG = 0
LEGS_PER_SEQUENCE = 4

SIDE_NAMES = {common_pb2.SIDE_BUY: "BUY", common_pb2.SIDE_SELL: "SELL"}


class MalformedEvent(ValueError):
    """A trading event that cannot be applied as it is; the message says why."""


# The operations are named tuples: immutable, and the cheapest to make (one of each per order).
class ReserveOp(NamedTuple):
    """Hold `amount` of `asset` for an order, if the account has it available; with a
    `client_order_id`, only if no other order holds its claim, which the hold then takes."""

    account_id: str
    order_id: str
    asset: str
    amount: int
    side: str
    symbol: str
    price_ticks: int
    client_order_id: str = ""


class ReleaseOp(NamedTuple):
    """Drop whatever an order still holds (compensation)."""

    account_id: str
    order_id: str


class Rejection(NamedTuple):
    """A command refused before reaching the store."""

    order_id: str
    reason: RejectReason
    message: str
    asset: str = ""
    amount: int = 0


class GrowOp(NamedTuple):
    """Make an open order hold at least `amount` of `asset` before a replace, marking it `replace_id`."""

    account_id: str
    order_id: str
    asset: str
    amount: int
    replace_id: str


class EndReplaceOp(NamedTuple):
    """Give back what the grow marked `replace_id` added (trading refused the replace)."""

    account_id: str
    order_id: str
    replace_id: str


# How a leg's reservation_cap applies to its order's hold (the prefix of the cap in leg.lua):
# CAP_AT: the hold becomes min(hold, cap), unless a replace of the order is marked (then the
# cap is remembered for EndReplace); CAP_SPEND: the hold drops by the cap (a budget-only market
# buy's trade: its quote amount and fee); CAP_REPLACED: min(hold, cap) and the replace mark goes;
# CAP_END_REPLACE: a fenced replace (the leg's replace_id takes the cap's place): EndReplace's give-back.
CAP_AT = ""
CAP_SPEND = "s"
CAP_REPLACED = "r"
CAP_END_REPLACE = "e"


class LegOp(NamedTuple):
    """One account's share of a trading event, applied at most once (by `op_id`).

    `deltas` change the account's totals; the order's reservation becomes
    min(its current reservation, `reservation_cap`) (see CAP_AT, CAP_SPEND and
    CAP_REPLACED for `cap_kind`), and the order's key is deleted when that
    reaches 0.
    """

    account_id: str
    op_id: int
    sequence: int
    order_id: str
    deltas: tuple[tuple[str, int], ...]
    reservation_cap: int
    cap_kind: str = CAP_AT
    # The replace a CAP_END_REPLACE leg ends (empty for every other kind).
    replace_id: str = ""


def op_id(sequence: int, leg: int) -> int:
    """The per-account operation id of `leg` of the event at `sequence`."""
    return sequence * LEGS_PER_SEQUENCE + leg


# Account ids found valid before: the same few recur in every batch, so each is checked once
# (bounded: forgotten all at once when full).
_VALID_ACCOUNTS: set[str] = set()
_VALID_ACCOUNTS_MAX = 100_000


def valid_account_id(account_id: str) -> bool:
    if account_id in _VALID_ACCOUNTS:
        return True
    if not ids.ACCOUNT_ID.is_valid(account_id):
        return False
    if len(_VALID_ACCOUNTS) >= _VALID_ACCOUNTS_MAX:
        _VALID_ACCOUNTS.clear()
    _VALID_ACCOUNTS.add(account_id)
    return True


def valid_asset(asset: str) -> bool:
    return ids.ASSET_CODE.is_valid(asset)


_ORDER_ID_MATCH = ids.ORDER_ID.pattern.fullmatch
_ORDER_ID_MAX = ids.ORDER_ID.max_length
_CLIENT_ORDER_ID_MATCH = ids.CLIENT_ORDER_ID.pattern.fullmatch
_CLIENT_ORDER_ID_MAX = ids.CLIENT_ORDER_ID.max_length


def valid_order_id(order_id: str) -> bool:
    """ids.ORDER_ID.is_valid for text (what a message's field holds), without building a reason."""
    return 0 < len(order_id) <= _ORDER_ID_MAX and _ORDER_ID_MATCH(order_id) is not None


def _check_ids(order_id: str, account_id: str) -> str | None:
    if valid_order_id(order_id) and valid_account_id(account_id):
        return None
    problem = ids.order_id_problem(order_id)
    if problem:
        return f"order_id {problem}"
    problem = ids.account_id_problem(account_id)
    if problem:
        return f"account_id {problem}"
    return None


def _sized(
    order_id: str,
    account_id: str,
    symbol: str,
    side: int,
    price: int,
    lots: int,
    math: InstrumentMath | None,
    quote_budget: int = 0,
) -> tuple[str, int] | Rejection:
    """(asset, amount) an order of `side` at `price` with `lots` open (or a budget-only market buy
    of `quote_budget`, price 0) holds, or why it is refused. `math` is None for an unknown symbol."""
    problem = _check_ids(order_id, account_id)
    budget_only = price == 0 and quote_budget > 0 and side == common_pb2.SIDE_BUY
    if problem is None and side not in SIDE_NAMES:
        problem = "side must be SIDE_BUY or SIDE_SELL"
    if problem is None and price <= 0 and not budget_only:
        problem = "price_ticks must be positive"
    if problem is None and lots <= 0:
        problem = "quantity_lots must be positive"
    if problem is None and quote_budget < 0:
        problem = "quote_budget must not be negative"
    if problem is not None:
        return Rejection(order_id, RejectReason.INVALID_ORDER, problem)
    if math is None:
        return Rejection(
            order_id, RejectReason.UNKNOWN_SYMBOL, f"no instrument has the symbol {symbol[:40]!r}"
        )
    instrument = math.instrument
    max_price, max_lots = instrument.max_price_ticks, instrument.max_quantity_lots
    if max_price and price > max_price:
        return Rejection(
            order_id, RejectReason.INVALID_ORDER, f"price_ticks above the instrument's maximum of {max_price}"
        )
    if max_lots and lots > max_lots:
        return Rejection(
            order_id,
            RejectReason.INVALID_ORDER,
            f"quantity_lots above the instrument's maximum of {max_lots}",
        )
    if quote_budget and (side != common_pb2.SIDE_BUY or quote_budget > math.largest_quote_budget):
        return Rejection(
            order_id,
            RejectReason.INVALID_QUOTE_BUDGET,
            "quote_budget is on a sell or above the largest order",
        )
    if budget_only:
        asset, amount = instrument.quote_asset, math.budget_reservation(quote_budget)
    else:
        asset, amount = math.reservation(side, price, lots)
    if not 0 < amount <= INT64_MAX:
        return Rejection(
            order_id, RejectReason.INVALID_ORDER, "the order's amount does not fit in 64 bits", asset
        )
    return asset, amount


def plan_reserve(reserve: risk_pb2.Reserve, math: InstrumentMath | None) -> ReserveOp | Rejection:
    """What `reserve` must hold, or why it is refused. `math` is None for an unknown symbol.

    A buy with a limit (or protection) price holds buy_reservation at that price, budget or not;
    a budget-only market buy (price 0) holds InstrumentMath.budget_reservation of its budget.
    """
    # Each field is read once (a message's field is read anew at every access).
    order_id, side, price = reserve.order_id, reserve.side, reserve.price_ticks
    sized = _sized(
        order_id,
        reserve.account_id,
        reserve.symbol,
        side,
        price,
        reserve.quantity_lots,
        math,
        reserve.quote_budget,
    )
    if isinstance(sized, Rejection):
        return sized
    client_order_id = reserve.client_order_id
    if client_order_id and not (
        len(client_order_id) <= _CLIENT_ORDER_ID_MAX and _CLIENT_ORDER_ID_MATCH(client_order_id)
    ):
        return Rejection(
            order_id,
            RejectReason.INVALID_CLIENT_ORDER_ID,
            f"client_order_id {ids.client_order_id_problem(client_order_id)}",
        )
    assert math is not None
    asset, amount = sized
    return ReserveOp(
        reserve.account_id,
        order_id,
        asset,
        amount,
        SIDE_NAMES[side],
        math.instrument.symbol,
        price,
        client_order_id,
    )


def plan_grow(grow: risk_pb2.GrowForReplace, math: InstrumentMath | None) -> GrowOp | Rejection:
    """What an order must hold before `grow`'s replace (its new price, at most leaves_lots open),
    or why it is refused. `math` is None for an unknown symbol."""
    order_id = grow.order_id
    if not valid_order_id(grow.replace_id):
        return Rejection(
            order_id, RejectReason.INVALID_ORDER, f"replace_id {ids.order_id_problem(grow.replace_id)}"
        )
    sized = _sized(
        order_id, grow.account_id, grow.symbol, grow.side, grow.price_ticks, grow.leaves_lots, math
    )
    if isinstance(sized, Rejection):
        return sized
    asset, amount = sized
    return GrowOp(grow.account_id, order_id, asset, amount, grow.replace_id)


def plan_end_replace(end: risk_pb2.EndReplace) -> EndReplaceOp | Rejection:
    """The give-back of `end`, or why it is malformed."""
    problem = _check_ids(end.order_id, end.account_id)
    if problem is None and not valid_order_id(end.replace_id):
        problem = f"replace_id {ids.order_id_problem(end.replace_id)}"
    if problem is not None:
        return Rejection(end.order_id, RejectReason.INVALID_ORDER, problem)
    return EndReplaceOp(end.account_id, end.order_id, end.replace_id)


def plan_release(release: risk_pb2.Release) -> ReleaseOp | Rejection:
    """The compensation of `release`, or why it is malformed."""
    problem = _check_ids(release.order_id, release.account_id)
    if problem is not None:
        return Rejection(release.order_id, RejectReason.INVALID_ORDER, problem)
    return ReleaseOp(account_id=release.account_id, order_id=release.order_id)


def _deltas(*pairs: tuple[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple((asset, delta) for asset, delta in pairs if delta != 0)


def _require(condition: bool, sequence: int, why: str) -> None:
    if not condition:
        raise MalformedEvent(f"event {sequence}: {why}")


def trade_legs(sequence: int, trade: common_pb2.Trade, math: InstrumentMath) -> tuple[LegOp, LegOp]:
    """The buyer's and the seller's operations of `trade` (journal `sequence`).

    Buyer: quote total -= quote_amount + buyer_fee, base total += base_amount,
    the buy order holds buy_reservation(limit, leaves). Seller: base total -=
    base_amount, quote total += quote_amount - seller_fee, the sell order holds
    sell_leaves * base_minor_per_lot. A self-trade gives two legs of the same
    account with distinct op ids.
    """
    # Each field is read once (a message's field is read anew at every access).
    buy_account, sell_account = trade.buy_account_id, trade.sell_account_id
    buy_order, sell_order = trade.buy_order_id, trade.sell_order_id
    base, quote = trade.base_asset, trade.quote_asset
    base_amount, quote_amount = trade.base_amount, trade.quote_amount
    buyer_fee, seller_fee = trade.buyer_fee, trade.seller_fee
    buy_leaves, sell_leaves = trade.buy_leaves_lots, trade.sell_leaves_lots
    limit = trade.buy_limit_price_ticks
    instrument = math.instrument
    if not (
        sequence > 0
        and valid_account_id(buy_account)
        and valid_account_id(sell_account)
        and valid_order_id(buy_order)
        and valid_order_id(sell_order)
        # The instrument's assets are valid codes (risk checks an instrument before keeping it).
        and base == instrument.base_asset
        and quote == instrument.quote_asset
        and min(base_amount, quote_amount, buyer_fee, seller_fee, buy_leaves, sell_leaves, limit) >= 0
        and seller_fee <= quote_amount
    ):
        _refuse_trade(sequence, trade, math)
    spent, received = quote_amount + buyer_fee, quote_amount - seller_fee
    if limit == 0 and buy_leaves and trade.buy_quote_budget > 0:
        # A budget-only market buy holds budget_reservation(budget): each trade uses what it spent.
        buyer_cap, buyer_kind = spent, CAP_SPEND
    else:
        buyer_cap, buyer_kind = math.buy_reservation(limit, buy_leaves), CAP_AT
    buyer = _side(
        buy_account,
        sequence,
        BUYER_LEG,
        buy_order,
        (base, base_amount),
        (quote, -spent),
        buyer_cap,
        buyer_kind,
    )
    seller = _side(
        sell_account,
        sequence,
        SELLER_LEG,
        sell_order,
        (quote, received),
        (base, -base_amount),
        math.sell_reservation(sell_leaves),
    )
    return buyer, seller


def _side(
    account: str,
    sequence: int,
    leg: int,
    order: str,
    gets: tuple[str, int],
    pays: tuple[str, int],
    cap: int,
    cap_kind: str = CAP_AT,
) -> LegOp:
    """One side of a trade: what it gets and pays (a zero left out) and its order's cap."""
    deltas = (gets, pays) if gets[1] and pays[1] else _deltas(gets, pays)
    return LegOp(account, sequence * LEGS_PER_SEQUENCE + leg, sequence, order, deltas, cap, cap_kind)


def _refuse_trade(sequence: int, trade: common_pb2.Trade, math: InstrumentMath) -> None:
    """Raise MalformedEvent naming what is wrong with a trade that failed trade_legs' checks."""
    _require(sequence > 0, sequence, "sequence must be positive")
    for name in ("buy_account_id", "sell_account_id"):
        _require(valid_account_id(getattr(trade, name)), sequence, f"trade has a bad {name}")
    for name in ("buy_order_id", "sell_order_id"):
        _require(valid_order_id(getattr(trade, name)), sequence, f"trade has a bad {name}")
    for name in ("base_asset", "quote_asset"):
        _require(valid_asset(getattr(trade, name)), sequence, f"trade has a bad {name}")
    for name in (
        "base_amount",
        "quote_amount",
        "buyer_fee",
        "seller_fee",
        "buy_leaves_lots",
        "sell_leaves_lots",
        "buy_limit_price_ticks",
    ):
        _require(getattr(trade, name) >= 0, sequence, f"trade has a negative {name}")
    _require(trade.seller_fee <= trade.quote_amount, sequence, "seller_fee exceeds quote_amount")
    instrument = math.instrument
    _require(
        (trade.base_asset, trade.quote_asset) == (instrument.base_asset, instrument.quote_asset),
        sequence,
        f"trade assets {trade.base_asset}/{trade.quote_asset} differ from {instrument.symbol}'s",
    )
    raise MalformedEvent(f"event {sequence}: trade refused")


def _drop_leg(sequence: int, account_id: str, order_id: str, kind: str) -> LegOp:
    """An operation that drops whatever an order still holds (`kind` names the event in errors)."""
    _require(sequence > 0, sequence, "sequence must be positive")
    _require(valid_account_id(account_id), sequence, f"{kind} has a bad account_id")
    _require(valid_order_id(order_id), sequence, f"{kind} has a bad order_id")
    return LegOp(
        account_id=account_id,
        op_id=op_id(sequence, RELEASE_LEG),
        sequence=sequence,
        order_id=order_id,
        deltas=(),
        reservation_cap=0,
    )


def release_leg(sequence: int, released: common_pb2.OrderReleased) -> LegOp:
    """The operation of an OrderReleased: drop the order's whole reservation."""
    return _drop_leg(sequence, released.account_id, released.order_id, "order_released")


def replaced_leg(sequence: int, replaced: common_pb2.OrderReplaced, math: InstrumentMath) -> LegOp:
    """The operation of an OrderReplaced: the order's hold becomes what its new open quantity at
    its new price may cost (never more than it held), and its replace mark goes.

    Why the hold never ends below what the order may cost, with fills racing the replace (risk
    applies trading's events in journal order; the gateway grows the hold before it sends the
    replace, GrowForReplace):

    - The grow made the hold at least reservation(new price as asked, new total quantity - the
      filled quantity the gateway saw) >= reservation(new price, new leaves): fills only add to
      the filled quantity, and post-only repricing only lowers a buy's price.
    - While the order is marked, a trade journaled before the replace (capped at the old price)
      leaves the hold alone, so nothing shrinks it below that bound until this event; a trade
      that fills the order completely drops it (the order is closed, and trading then refuses
      the replace: EndReplace finds no hold and changes nothing).
    - Here the hold becomes min(hold, reservation(new price, new leaves)) = the latter; the
      trades after this event carry the new price (Trade.buy_limit_price_ticks) and cap as usual.
    - A replace trading refuses changes no order: EndReplace takes back exactly what the grow
      added and lowers the hold to the lowest cap a trade left while it was marked, which is
      what the old order needed after those trades.
    - A grow made before risk rebuilt its state is not in the rebuilt state: trading refuses a
      replace grown in an older epoch (ReplaceOrder.risk_epoch), and applies one journaled before
      the rebuild's snapshot point, whose open orders then carry the new price and quantity.
    """
    _require(sequence > 0, sequence, "sequence must be positive")
    _require(valid_account_id(replaced.account_id), sequence, "order_replaced has a bad account_id")
    _require(valid_order_id(replaced.order_id), sequence, "order_replaced has a bad order_id")
    side, price, leaves = replaced.side, replaced.new_price_ticks, replaced.new_leaves_lots
    _require(side in SIDE_NAMES, sequence, "order_replaced has no side")
    _require(price > 0 and leaves >= 0, sequence, "order_replaced has a bad new price or quantity")
    _, cap = math.reservation(side, price, leaves)
    return LegOp(
        account_id=replaced.account_id,
        op_id=op_id(sequence, RELEASE_LEG),
        sequence=sequence,
        order_id=replaced.order_id,
        deltas=(),
        reservation_cap=cap,
        cap_kind=CAP_REPLACED,
    )


def replace_fence_leg(sequence: int, fenced: common_pb2.ReplaceFenced) -> LegOp:
    """The operation of a ReplaceFenced (a replace whose outcome was unknown, never applied and
    refused for good): if the order is still marked with that replace id, give back what its grow
    added, lower the hold to the lowest cap a trade left while it was marked, and unmark it, as
    EndReplace does (leg.lua); otherwise (applied, ended, another replace marked, the order
    closed) nothing. Event-driven, so it holds even when the gateway that asked is gone."""
    _require(sequence > 0, sequence, "sequence must be positive")
    _require(valid_account_id(fenced.account_id), sequence, "replace_fenced has a bad account_id")
    _require(valid_order_id(fenced.order_id), sequence, "replace_fenced has a bad order_id")
    _require(valid_order_id(fenced.replace_id), sequence, "replace_fenced has a bad replace_id")
    return LegOp(
        account_id=fenced.account_id,
        op_id=op_id(sequence, RELEASE_LEG),
        sequence=sequence,
        order_id=fenced.order_id,
        deltas=(),
        reservation_cap=0,
        cap_kind=CAP_END_REPLACE,
        replace_id=fenced.replace_id,
    )


def fence_leg(sequence: int, fenced: common_pb2.OrderFenced) -> LegOp:
    """The operation of an OrderFenced (an order whose outcome was unknown, never journaled and
    refused for good): drop whatever the order reserved, like a release of no quantity."""
    return _drop_leg(sequence, fenced.account_id, fenced.order_id, "order_fenced")


# The reservation cap of a leg that must leave the order's reservation alone: a trade at or
# below the journal point of a rebuilt state, whose open orders already reflect it.
KEEP_RESERVATION = -1
# The source name of ledger events in an account's applied ops: never a trading shard's
# (shard names follow the source rule of backbone.ids, which has no '@').
LEDGER_SOURCE = "@ledger"


def balance_only(leg: LegOp) -> LegOp:
    """`leg` changing the account's totals only (its reservation is already in the state)."""
    return LegOp(leg.account_id, leg.op_id, leg.sequence, leg.order_id, leg.deltas, KEEP_RESERVATION)


def ledger_leg(event: risk_pb2.LedgerEvent) -> LegOp:
    """A ledger event (a deposit) as the account's operation: its total changes, nothing is held."""
    sequence = event.sequence
    _require(sequence > 0, sequence, "sequence must be positive")
    _require(valid_account_id(event.account_id), sequence, "ledger event has a bad account_id")
    _require(valid_asset(event.asset), sequence, "ledger event has a bad asset")
    _require(event.amount != 0, sequence, "ledger event has no amount")
    return LegOp(
        account_id=event.account_id,
        op_id=op_id(sequence, 0),
        sequence=sequence,
        order_id="",
        deltas=((event.asset, event.amount),),
        reservation_cap=KEEP_RESERVATION,
    )


def halt_op(event: risk_pb2.LedgerEvent) -> tuple[str, int, bool]:
    """A ledger halt or resume as (account, op id, halted)."""
    sequence = event.sequence
    _require(sequence > 0, sequence, "sequence must be positive")
    _require(valid_account_id(event.account_id), sequence, "ledger event has a bad account_id")
    return event.account_id, op_id(sequence, 0), event.kind == risk_pb2.LEDGER_EVENT_KIND_HALT


class OpenOrderHold(NamedTuple):
    """What one open order holds in a rebuilt state (trading's snapshot)."""

    account_id: str
    order_id: str
    asset: str
    amount: int
    side: str
    symbol: str
    price_ticks: int


def open_order_hold(order: common_pb2.Order, math: InstrumentMath) -> OpenOrderHold:
    """The reservation an open order needs for its open quantity, as a fill would leave it."""
    if order.side not in SIDE_NAMES or order.leaves_lots <= 0 or order.price_ticks <= 0:
        raise MalformedEvent(f"open order {order.order_id!r} has no side, open quantity or price")
    problem = _check_ids(order.order_id, order.account_id)
    if problem:
        raise MalformedEvent(f"open order {order.order_id[:80]!r}: {problem}")
    # The price it was reserved at, which its trades name as buy_limit_price_ticks: the price it
    # rests at, unless post-only repriced it on arrival (reserve_price_ticks then says).
    price = order.reserve_price_ticks or order.price_ticks
    asset, amount = math.reservation(order.side, price, order.leaves_lots)
    return OpenOrderHold(
        order.account_id,
        order.order_id,
        asset,
        amount,
        SIDE_NAMES[order.side],
        order.symbol,
        price,
    )
