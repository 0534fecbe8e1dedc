"""The engine and the naive model (tests/trading_model.py) side by side, for the tests that compare them.

:class:`Pair` feeds both the same commands and checks, after each, that the journal events, the
execution reports and the depth agree, that the engine's invariants hold and that a refused
command changed nothing; :func:`random_command` draws one command of a realistic random flow.
"""

from __future__ import annotations

import random

import pytest

from backbone.common.v1 import common_pb2 as c
from backbone.trading.v1 import trading_pb2
from tests.instruments import btc_usd
from tests.trading_model import BUY, SELL, Model, ModelOrder, Refused, engine_events, engine_reports
from trading.engine import CommandRejected, Engine

T = 1_700_000_000_000_000_000
SYMBOLS = ("BTC-USD", "ETH-USD")
ACCOUNTS = ("a1", "a2", "a3")
ORDER_TYPES = (c.ORDER_TYPE_UNSPECIFIED, c.ORDER_TYPE_LIMIT, c.ORDER_TYPE_MARKET)
TIMES_IN_FORCE = (
    c.TIME_IN_FORCE_UNSPECIFIED,
    c.TIME_IN_FORCE_GTC,
    c.TIME_IN_FORCE_IOC,
    c.TIME_IN_FORCE_FOK,
    c.TIME_IN_FORCE_DAY,
)
POST_ONLY = (c.POST_ONLY_UNSPECIFIED, c.POST_ONLY_REJECT, c.POST_ONLY_REPRICE)
PREVENTIONS = (
    c.SELF_TRADE_PREVENTION_UNSPECIFIED,
    c.SELF_TRADE_PREVENTION_CANCEL_RESTING,
    c.SELF_TRADE_PREVENTION_CANCEL_INCOMING,
    c.SELF_TRADE_PREVENTION_CANCEL_BOTH,
)
STATUSES = (c.INSTRUMENT_STATUS_TRADING, c.INSTRUMENT_STATUS_HALTED, c.INSTRUMENT_STATUS_CLOSED)
# Replace ids a flow sends (none: a replace that cannot be resolved, as journals before the field).
REPLACE_IDS = ("", "r1", "r2", "r3")


class Pair:
    """An engine and the model, fed the same commands and compared after each."""

    def __init__(self, *, check_refusals: bool) -> None:
        self.engine = Engine()
        self.model = Model()
        self.journal: list[trading_pb2.JournalRecord] = []
        self.check_refusals = check_refusals  # state hashes around each refusal (slow on big states)
        self.now = T
        self.submitted: list[str] = []
        for symbol in SYMBOLS:
            instrument = btc_usd(symbol)
            self.journal += self.engine.create_instrument(instrument, T).records
            self.model.add_instrument(instrument)

    def order_command(self, command: trading_pb2.OrderCommand) -> None:
        self.now += 1
        before = self.engine.state_hash() if self.check_refusals else ""
        outcome = self.engine.apply(command, self.now)
        kind = command.WhichOneof("command")
        assert kind is not None
        events, reports = getattr(self.model, kind)(getattr(command, kind))
        assert engine_events(outcome.records) == events
        assert engine_reports(outcome.reports) == reports
        if not outcome.records and self.check_refusals:
            assert self.engine.state_hash() == before
        self.journal += outcome.records

    def control(self, kind: str, command: trading_pb2.ExpireOrders | trading_pb2.SetInstrumentStatus) -> None:
        self.now += 1
        before = self.engine.state_hash() if self.check_refusals else ""
        try:
            outcome = getattr(self.engine, kind)(command, self.now)
        except CommandRejected as error:
            with pytest.raises(Refused) as refused:
                getattr(self.model, kind)(command)
            assert refused.value.reason == error.reason
            if self.check_refusals:
                assert self.engine.state_hash() == before
            return
        answer = getattr(self.model, kind)(command)
        events, reports = answer if isinstance(answer, tuple) else (answer, [])
        assert engine_events(outcome.records) == events
        assert engine_reports(outcome.reports) == reports
        self.journal += outcome.records

    def check(self) -> None:
        """Invariants and the same depth on every book."""
        self.engine.validate()
        for symbol in SYMBOLS:
            book = self.engine.books[symbol]
            assert book.depth(BUY) == self.model.depth(symbol, BUY)
            assert book.depth(SELL) == self.model.depth(symbol, SELL)
            bid, ask = book.best_bid(), book.best_ask()
            assert bid is None or ask is None or bid < ask

    def check_orders(self) -> None:
        """Every order's quantities and status equal the model's."""
        assert self.engine.orders.keys() == self.model.orders.keys()
        for order_id, order in self.engine.orders.items():
            expected: ModelOrder = self.model.orders[order_id]
            assert (
                order.price_ticks,
                order.quantity_lots,
                order.filled_lots,
                order.leaves_lots,
                order.cancelled_lots,
                order.expired_lots,
                order.status,
            ) == (
                expected.price,
                expected.quantity,
                expected.filled,
                expected.leaves,
                expected.cancelled,
                expected.expired,
                expected.status,
            ), order_id
        assert self.engine.account_sequences == self.model.numbers

    def check_replay(self) -> None:
        """The journal, read back into a fresh engine, rebuilds the same state."""
        assert [record.sequence for record in self.journal] == list(range(1, len(self.journal) + 1))
        replayed = Engine()
        for record in self.journal:
            replayed.replay(trading_pb2.JournalRecord.FromString(record.SerializeToString()))
        replayed.finish_replay()
        replayed.validate()
        assert replayed.state_hash() == self.engine.state_hash()

    # -- commands from drawn values -----------------------------------------------------------

    def new_order(self, **fields: object) -> None:
        """A NewOrder of `fields` (NewOrder field names) under the next order id."""
        order_id = f"o{len(self.submitted)}"
        self.submitted.append(order_id)
        command = trading_pb2.NewOrder(order_id=order_id, client_order_id=f"c-{order_id}", **fields)  # type: ignore[arg-type]
        self.order_command(trading_pb2.OrderCommand(new_order=command))

    def _owner(self, pick: int, owner: bool) -> tuple[str, str]:
        order_id = self.submitted[pick % len(self.submitted)] if self.submitted else "none"
        order = self.model.orders.get(order_id)
        account = order.account_id if order is not None and owner else "intruder"
        return order_id, account

    def cancel(self, pick: int, owner: bool) -> None:
        order_id, account = self._owner(pick, owner)
        cancel = trading_pb2.CancelOrder(order_id=order_id, account_id=account)
        self.order_command(trading_pb2.OrderCommand(cancel_order=cancel))

    def replace(self, pick: int, owner: bool, price: int, lots: int, replace_id: str = "") -> None:
        order_id, account = self._owner(pick, owner)
        replace = trading_pb2.ReplaceOrder(
            order_id=order_id,
            account_id=account,
            price_ticks=price,
            quantity_lots=lots,
            replace_id=replace_id,
        )
        self.order_command(trading_pb2.OrderCommand(replace_order=replace))

    def resolve_replace(self, pick: int, owner: bool, replace_id: str) -> None:
        """Settle a replace of unknown outcome in both: the same answer and the same events."""
        order_id, account = self._owner(pick, owner)
        self.now += 1
        resolution, _, records = self.engine.resolve_replace(order_id, account, replace_id, self.now)
        assert (resolution, engine_events(records)) == self.model.resolve_replace(
            order_id, account, replace_id
        )
        self.journal += records

    def mass_cancel(self, account: str, symbol: str) -> None:
        self.order_command(
            trading_pb2.OrderCommand(mass_cancel=trading_pb2.MassCancel(account_id=account, symbol=symbol))
        )

    def expire(self, symbol: str, time_in_force: int) -> None:
        command = trading_pb2.ExpireOrders(symbol=symbol, time_in_force=time_in_force)  # type: ignore[arg-type]
        self.control("expire_orders", command)

    def set_status(self, symbol: str, status: int) -> None:
        command = trading_pb2.SetInstrumentStatus(symbol=symbol, status=status)  # type: ignore[arg-type]
        self.control("set_instrument_status", command)


def random_command(pair: Pair, rng: random.Random) -> None:
    """One random command, weighted towards what a real flow sends (plain limit orders)."""
    roll = rng.random()
    account = rng.choice(ACCOUNTS)
    symbol = rng.choice(SYMBOLS)
    side = rng.choice((BUY, SELL))
    price = rng.randint(95, 105)
    quantity = rng.randint(1, 8)
    order = {
        "account_id": account,
        "symbol": symbol,
        "side": side,
        "price_ticks": price,
        "quantity_lots": quantity,
    }
    if roll < 0.40:
        pair.new_order(**order)
    elif roll < 0.62:
        order_type = rng.choice(ORDER_TYPES)
        market = order_type == c.ORDER_TYPE_MARKET
        pair.new_order(
            **order
            | {
                "type": order_type,
                "time_in_force": rng.choice(TIMES_IN_FORCE),
                "post_only": rng.choice(POST_ONLY) if rng.random() < 0.3 else 0,
                "self_trade_prevention": rng.choice(PREVENTIONS),
                "price_ticks": 0 if market and rng.random() < 0.4 else price,
                "quote_budget": rng.randint(1, 1_500) if market and side == BUY and rng.random() < 0.6 else 0,
            }
        )
    elif roll < 0.85:
        pair.cancel(rng.randrange(1 << 30), rng.random() < 0.95)
    elif roll < 0.94:
        pair.replace(rng.randrange(1 << 30), rng.random() < 0.95, price, quantity, rng.choice(REPLACE_IDS))
    elif roll < 0.95:
        pair.resolve_replace(rng.randrange(1 << 30), rng.random() < 0.95, rng.choice(REPLACE_IDS[1:]))
    elif roll < 0.975:
        pair.mass_cancel(account, rng.choice(("", *SYMBOLS)))
    elif roll < 0.99:
        # Mostly back to trading, so the books spend most of the run open.
        pair.set_status(
            symbol, rng.choice((*STATUSES, c.INSTRUMENT_STATUS_TRADING, c.INSTRUMENT_STATUS_TRADING))
        )
    else:
        pair.expire(rng.choice(("", *SYMBOLS)), c.TIME_IN_FORCE_DAY)
