"""The engine against a naive reference model (tests/trading_model.py), command by command.

Every command goes to both; after each, the journal events (trades, releases, replaces), the
execution reports (order, type, reason, account report number) and the depth of every book must
be equal, the engine's invariants hold (Engine.validate: never crossed at rest, quantities
conserved, statuses), and a refused command changes nothing. A hypothesis state machine explores
all order types, times in force, post-only, self-trade prevention, cancels, replaces, mass
cancels, halts and expiries; a seeded run of 100,000 random commands ends with the same depth,
trades and orders as the model; and the journal of either replays to the same state hash.
"""

from __future__ import annotations

import random

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from backbone.common.v1 import common_pb2 as c
from tests.engine_against_model import (
    ACCOUNTS,
    ORDER_TYPES,
    POST_ONLY,
    PREVENTIONS,
    REPLACE_IDS,
    STATUSES,
    SYMBOLS,
    TIMES_IN_FORCE,
    Pair,
    random_command,
)
from tests.trading_model import BUY, SELL, engine_events

# -- a hypothesis state machine -----------------------------------------------------------------

prices = st.integers(min_value=95, max_value=105)
lots = st.integers(min_value=1, max_value=8)
budgets = st.one_of(st.just(0), st.integers(min_value=1, max_value=1_500))
symbols_or_all = st.sampled_from(("", *SYMBOLS))
# NewOrder fields, as Pair.new_order takes them.
plain_order = st.fixed_dictionaries(
    {
        "account_id": st.sampled_from(ACCOUNTS),
        "symbol": st.sampled_from(SYMBOLS),
        "side": st.sampled_from((BUY, SELL)),
        "price_ticks": prices,
        "quantity_lots": lots,
    }
)
any_order = st.fixed_dictionaries(
    {
        "account_id": st.sampled_from(ACCOUNTS),
        "symbol": st.sampled_from(SYMBOLS),
        "side": st.sampled_from((BUY, SELL)),
        "type": st.sampled_from(ORDER_TYPES),
        "time_in_force": st.sampled_from(TIMES_IN_FORCE),
        "post_only": st.sampled_from(POST_ONLY),
        "self_trade_prevention": st.sampled_from(PREVENTIONS),
        "price_ticks": st.one_of(prices, st.just(0)),
        "quantity_lots": lots,
        "quote_budget": budgets,
    }
)


class EngineAgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair(check_refusals=True)

    @rule(fields=any_order)
    def new_order(self, fields: dict[str, object]) -> None:
        self.pair.new_order(**fields)

    @rule(fields=plain_order)
    def plain_limit(self, fields: dict[str, object]) -> None:
        self.pair.new_order(**fields)

    @rule(
        fields=plain_order,
        kind=st.sampled_from(("market", "ioc", "fok", "day", "post only")),
        prevention=st.sampled_from(PREVENTIONS),
        budget=budgets,
    )
    def accepted_kind_of_order(
        self, fields: dict[str, object], kind: str, prevention: int, budget: int
    ) -> None:
        """An order with conditions that go together (the new_order rule mostly draws refusals)."""
        odd_price = bool(fields["price_ticks"] % 2)  # type: ignore[operator]
        terms: dict[str, object] = {"self_trade_prevention": prevention}
        if kind == "market":
            budget = budget if fields["side"] == BUY else 0
            terms |= {
                "type": c.ORDER_TYPE_MARKET,
                "quote_budget": budget,
                "time_in_force": c.TIME_IN_FORCE_IOC,
            }
            if budget and odd_price:
                terms |= {"price_ticks": 0, "time_in_force": c.TIME_IN_FORCE_FOK}
        elif kind == "post only":
            terms["post_only"] = c.POST_ONLY_REPRICE if odd_price else c.POST_ONLY_REJECT
        else:
            terms["time_in_force"] = {
                "ioc": c.TIME_IN_FORCE_IOC,
                "fok": c.TIME_IN_FORCE_FOK,
                "day": c.TIME_IN_FORCE_DAY,
            }[kind]
        self.pair.new_order(**fields | terms)

    @rule(pick=st.integers(min_value=0, max_value=10_000), owner=st.booleans())
    def cancel(self, pick: int, owner: bool) -> None:
        self.pair.cancel(pick, owner)

    @rule(
        pick=st.integers(min_value=0, max_value=10_000),
        owner=st.booleans(),
        price=prices,
        quantity=lots,
        replace_id=st.sampled_from(REPLACE_IDS),
    )
    def replace(self, pick: int, owner: bool, price: int, quantity: int, replace_id: str) -> None:
        self.pair.replace(pick, owner, price, quantity, replace_id)

    @rule(
        pick=st.integers(min_value=0, max_value=10_000),
        owner=st.booleans(),
        replace_id=st.sampled_from(REPLACE_IDS[1:]),
    )
    def resolve_replace(self, pick: int, owner: bool, replace_id: str) -> None:
        """A replace of unknown outcome settled: applied, fenced (then refused) or the order gone."""
        self.pair.resolve_replace(pick, owner, replace_id)

    @rule(account=st.sampled_from(ACCOUNTS), symbol=symbols_or_all)
    def mass_cancel(self, account: str, symbol: str) -> None:
        self.pair.mass_cancel(account, symbol)

    @rule(symbol=st.sampled_from((*SYMBOLS, "NOPE-USD")), status=st.sampled_from((*STATUSES, 0)))
    def set_status(self, symbol: str, status: int) -> None:
        self.pair.set_status(symbol, status)

    @rule(
        symbol=st.sampled_from(("", *SYMBOLS, "NOPE-USD")),
        time_in_force=st.sampled_from((c.TIME_IN_FORCE_DAY, c.TIME_IN_FORCE_GTC)),
    )
    def expire(self, symbol: str, time_in_force: int) -> None:
        self.pair.expire(symbol, time_in_force)

    @invariant()
    def agrees(self) -> None:
        self.pair.check()

    def teardown(self) -> None:
        self.pair.check_orders()
        self.pair.check_replay()
        # What the run reached, in --hypothesis-show-statistics.
        for kind in sorted({record.WhichOneof("record") or "" for record in self.pair.journal}):
            event(f"journaled {kind}")
        for order in self.pair.engine.orders.values():
            event(f"order status {c.OrderStatus.Name(order.status)}")


EngineAgainstModel.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
test_engine_agrees_with_the_model = EngineAgainstModel.TestCase


# -- a long seeded run --------------------------------------------------------------------------


def test_a_seeded_run_of_100000_commands_ends_as_the_model_and_replays() -> None:
    rng = random.Random(20261130)
    pair = Pair(check_refusals=False)
    for step in range(100_000):
        random_command(pair, rng)
        if step % 5_000 == 0:
            pair.check()
    pair.check()
    pair.check_orders()
    engine_trades = [event for event in engine_events(pair.journal) if event[0] == "trade"]
    assert engine_trades == pair.model.trades
    assert len(engine_trades) > 15_000  # the run trades, not only rests or refuses
    kinds = {record.WhichOneof("record") for record in pair.journal}
    assert kinds >= {
        "trade",
        "order_released",
        "order_replaced",
        "mass_cancel",
        "expire_orders",
        "replace_fenced",
    }
    statuses = {order.status for order in pair.engine.orders.values()}
    assert c.ORDER_STATUS_EXPIRED in statuses and c.ORDER_STATUS_CANCELLED in statuses
    pair.check_replay()
