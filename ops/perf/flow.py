"""The simulated order flow: seeded, so the same seed gives the same commands.

Every symbol has a mid price that moves as a random walk (one step each time an order of the symbol
is made). A command is one of:

- a passive limit order: buy below the mid or sell above it, at a distance drawn from an
  exponential distribution (mostly near the mid, sometimes deep in the book);
- a marketable limit order: buy above the mid or sell below it, so it crosses what rests near the
  mid and trades at once (what it does not fill rests at its limit);
- an IOC order: marketable like the one above, immediate-or-cancel (what it does not fill expires);
- a cancel of one of the account's own open orders (a passive order when it has none);
- a replace of one of the account's own open orders: its price moved 1 to 3 ticks, never through
  the mid (a passive order when it has none open).

Prices and quantities are whole ticks and lots (0.01 each on the simulator's instruments), turned
into the decimal strings of the public API once per value and cached. The flow knows which orders
are open only from what it is told (:meth:`Flow.opened`, :meth:`Flow.closed`): with one command
answered at a time that is the same in every run, so the commands are too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from backbone.common.v1 import common_pb2
from backbone.gateway.v1 import gateway_pb2

BUY = common_pb2.SIDE_BUY
SELL = common_pb2.SIDE_SELL

SUBMIT = 0
CANCEL = 1
REPLACE = 2
IOC = common_pb2.TIME_IN_FORCE_IOC

# The simulator's instruments: prices and quantities in hundredths.
TICK_SIZE = "0.01"
LOT_SIZE = "0.01"
MAX_QUANTITY = "100000"
MAX_PRICE = "1000000"
MAKER_FEE_BPS = 10
TAKER_FEE_BPS = 20
QUOTE_ASSET = "USD"
QUOTE_SCALE = 6
BASE_SCALE = 8
# Mid prices stay within these (ticks): far from zero and from MAX_PRICE.
MIN_MID_TICKS = 1_000
MAX_MID_TICKS = 10_000_000


def hundredths(value: int) -> str:
    """2 decimal places from a whole number of hundredths: 12345 -> "123.45"."""
    return f"{value // 100}.{value % 100:02d}"


@dataclass(frozen=True)
class Mix:
    """The share of each kind of command (normalised to sum to 1)."""

    passive: float = 0.6
    marketable: float = 0.3
    cancel: float = 0.1
    ioc: float = 0.0
    replace: float = 0.0

    KINDS = ("passive", "marketable", "cancel", "ioc", "replace")

    def __post_init__(self) -> None:
        shares = [getattr(self, kind) for kind in self.KINDS]
        if any(share < 0 for share in shares) or sum(shares) <= 0:
            raise ValueError("the mix needs shares of at least 0, not all 0")

    @classmethod
    def parse(cls, text: str) -> Mix:
        """``passive=60,marketable=30,cancel=10`` (any scale; missing kinds are 0; also ``ioc=N``
        and ``replace=N``)."""
        shares = dict.fromkeys(cls.KINDS, 0.0)
        for part in text.split(","):
            name, _, value = part.partition("=")
            name = name.strip()
            if name not in shares or not value:
                raise ValueError(f"{part!r}: expected {', '.join(k + '=N' for k in cls.KINDS)}")
            try:
                shares[name] = float(value)
            except ValueError:
                raise ValueError(f"{part!r}: {value!r} is not a number") from None
        return cls(**shares)

    def normalised(self) -> dict[str, float]:
        total = sum(getattr(self, kind) for kind in self.KINDS)
        return {kind: getattr(self, kind) / total for kind in self.KINDS}

    def as_dict(self) -> dict[str, float]:
        return {kind: round(share, 4) for kind, share in self.normalised().items()}


@dataclass(frozen=True)
class Shape:
    """How orders are drawn around the mid, in ticks and lots."""

    volatility_ticks: float = 2.0  # standard deviation of the mid's step per order of the symbol
    passive_depth_ticks: float = 10.0  # mean distance of a passive order from the mid
    cross_ticks: int = 10  # a marketable order's limit is 1 to this many ticks through the mid
    max_lots: int = 100  # quantities are 1 to this many lots


class Command:
    """One command of the flow, and what became of it."""

    __slots__ = (
        "account",
        "client_order_id",
        "ioc",
        "kind",
        "lots",
        "message",
        "number",
        "order_id",
        "price_ticks",
        "recorder",
        "side",
        "symbol",
        "t",
    )

    def __init__(
        self,
        number: int,
        kind: int,
        account: int,
        symbol: int,
        side: int,
        price_ticks: int,
        lots: int,
        client_order_id: str,
        order_id: str,
        ioc: bool = False,
    ) -> None:
        self.number = number
        self.kind = kind
        self.account = account
        self.symbol = symbol
        self.side = side
        self.price_ticks = price_ticks
        self.lots = lots
        self.client_order_id = client_order_id
        self.order_id = order_id  # a cancel's or replace's target; a submit's once it is answered
        self.ioc = ioc  # an immediate-or-cancel order
        self.t = 0.0  # when it was due (open loop) or sent (closed loop): latency counts from here
        self.message: object = None  # the request, built by the driver
        self.recorder: object = None  # where its figures go (the ramp step it belongs to)


class OpenOrders:
    """One account's open orders as the flow knows them: a list to draw from, removal in O(1)."""

    __slots__ = ("ids", "where")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.where: dict[str, int] = {}

    def add(self, order_id: str) -> None:
        if order_id not in self.where:
            self.where[order_id] = len(self.ids)
            self.ids.append(order_id)

    def remove(self, order_id: str) -> bool:
        position = self.where.pop(order_id, None)
        if position is None:
            return False
        last = self.ids.pop()
        if position < len(self.ids):
            self.ids[position] = last
            self.where[last] = position
        return True

    def __len__(self) -> int:
        return len(self.ids)


class Flow:
    """The seeded command generator of one run."""

    def __init__(
        self,
        seed: int,
        accounts: int,
        mids: list[int],
        mix: Mix = Mix(),
        shape: Shape = Shape(),
        id_prefix: str = "c",
    ) -> None:
        if accounts < 1 or not mids:
            raise ValueError("a flow needs at least one account and one symbol")
        self.rng = random.Random(seed)
        self.accounts = accounts
        self.mids = list(mids)
        self.shape = shape
        shares = mix.normalised()
        # u in [0, 1) picks the kind: passive, marketable, ioc, cancel, replace, in that order.
        self._marketable_above = shares["passive"]
        self._ioc_above = self._marketable_above + shares["marketable"]
        self._cancel_above = self._ioc_above + shares["ioc"]
        self._replace_above = self._cancel_above + shares["cancel"]
        self.open = [OpenOrders() for _ in range(accounts)]
        # Each open order the flow knows of: (symbol, side, price in ticks).
        self.resting: dict[str, tuple[int, int, int]] = {}
        self.count = 0
        self.id_prefix = id_prefix  # client order ids are id_prefix + the command's number
        self._prices: list[dict[int, str]] = [{} for _ in mids]
        self._quantities: dict[int, str] = {}

    # --- what the flow is told -------------------------------------------------------------------

    def opened(self, account: int, order_id: str, command: Command | None = None) -> None:
        """The order rests (the answer to its submit or replace, `command`, said so)."""
        self.open[account].add(order_id)
        if command is not None:
            self.resting[order_id] = (command.symbol, command.side, command.price_ticks)

    def closed(self, account: int, order_id: str) -> None:
        """The order is no longer open (filled or cancelled)."""
        self.open[account].remove(order_id)
        self.resting.pop(order_id, None)

    # --- making commands -------------------------------------------------------------------------

    def next(self, account: int | None = None) -> Command:
        """The next command: of `account`, or of an account drawn at random."""
        rng = self.rng
        number = self.count
        self.count += 1
        if account is None:
            account = rng.randrange(self.accounts)
        u = rng.random()
        open_orders = self.open[account]
        if u >= self._cancel_above and open_orders.ids:
            target = open_orders.ids[rng.randrange(len(open_orders.ids))]
            open_orders.remove(target)  # cancelled or being replaced by us: not drawn meanwhile
            placed = self.resting.pop(target, None)
            if u < self._replace_above or placed is None:
                return Command(number, CANCEL, account, -1, 0, 0, 0, "", target)
            return self._replace(number, account, target, placed)
        shape = self.shape
        symbol = rng.randrange(len(self.mids))
        mid = self.mids[symbol] + round(rng.gauss(0.0, shape.volatility_ticks))
        mid = min(max(mid, MIN_MID_TICKS), MAX_MID_TICKS)
        self.mids[symbol] = mid
        side = BUY if rng.random() < 0.5 else SELL
        crossing = self._marketable_above <= u < self._cancel_above
        if crossing:
            offset = rng.randint(1, shape.cross_ticks)  # through the mid
        else:
            offset = -1 - int(rng.expovariate(1.0 / shape.passive_depth_ticks))  # away from it
        price = mid + offset if side == BUY else mid - offset
        lots = rng.randint(1, shape.max_lots)
        client_order_id = f"{self.id_prefix}{number}"
        ioc = crossing and u >= self._ioc_above
        return Command(number, SUBMIT, account, symbol, side, max(price, 1), lots, client_order_id, "", ioc)

    def _replace(self, number: int, account: int, target: str, placed: tuple[int, int, int]) -> Command:
        """A replace of `target` (symbol, side, price): its price moved 1 to 3 ticks either way,
        kept on its side of the symbol's mid (a buy below it, a sell above it)."""
        symbol, side, price = placed
        mid = self.mids[symbol]
        step = self.rng.choice((-3, -2, -1, 1, 2, 3))
        moved = min(price + step, mid - 1) if side == BUY else max(price + step, mid + 1)
        if moved == price:
            moved = price - abs(step) if side == BUY else price + abs(step)
        return Command(number, REPLACE, account, symbol, side, max(moved, 1), 0, "", target)

    # --- the decimal strings of the public API ---------------------------------------------------

    def price_text(self, symbol: int, ticks: int) -> str:
        cache = self._prices[symbol]
        text = cache.get(ticks)
        if text is None:
            text = cache[ticks] = hundredths(ticks)
        return text

    def quantity_text(self, lots: int) -> str:
        text = self._quantities.get(lots)
        if text is None:
            text = self._quantities[lots] = hundredths(lots)
        return text


def fill_submit(
    request: gateway_pb2.SubmitOrderRequest, flow: Flow, command: Command, symbols: list[str]
) -> None:
    """Fill a SubmitOrderRequest (new or nested in an OrderCommand) from a submit command, in place."""
    request.client_order_id = command.client_order_id
    request.symbol = symbols[command.symbol]
    request.side = command.side  # type: ignore[assignment]
    request.price = flow.price_text(command.symbol, command.price_ticks)
    request.quantity = flow.quantity_text(command.lots)
    if command.ioc:
        request.time_in_force = IOC


def fill_replace(request: gateway_pb2.ReplaceOrderRequest, flow: Flow, command: Command) -> None:
    """Fill a ReplaceOrderRequest (alone or nested in an OrderCommand) from a replace command."""
    request.order_id = command.order_id
    request.price = flow.price_text(command.symbol, command.price_ticks)
