"""Replaces whose outcome is unknown, settled in the engine: applied, or fenced for good.

The engine remembers the last replace id applied to each order it holds; resolve_replace answers
APPLIED for it, fences any other (a journaled replace_fenced record, after which that replace id
is refused REPLACE_FENCED, changing nothing), and answers ORDER_GONE for an order it does not
hold. Fences and applied replace ids survive a snapshot's pickle and a replay: the digest of a
replayed or unpickled engine equals the live one's.
"""

from __future__ import annotations

import pickle

import pytest

from backbone.common.v1 import common_pb2 as c
from backbone.reasons import RejectReason
from backbone.trading.v1 import trading_pb2
from tests.instruments import btc_usd
from tests.orders import cancel_order
from tests.orders import new_order as new
from trading.book import InvariantViolation
from trading.engine import Engine, Outcome

BUY, SELL = c.SIDE_BUY, c.SIDE_SELL
T = 1_700_000_000_000_000_000
APPLIED = trading_pb2.REPLACE_RESOLUTION_APPLIED
FENCED = trading_pb2.REPLACE_RESOLUTION_FENCED
GONE = trading_pb2.REPLACE_RESOLUTION_ORDER_GONE


def replace(
    order_id: str, price: int, lots: int, replace_id: str, account: str = "acct-1"
) -> trading_pb2.OrderCommand:
    command = trading_pb2.ReplaceOrder(
        order_id=order_id, account_id=account, price_ticks=price, quantity_lots=lots, replace_id=replace_id
    )
    return trading_pb2.OrderCommand(replace_order=command)


class Journaled:
    """An engine and every record it journaled, to replay into another."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.records: list[trading_pb2.JournalRecord] = []
        self.keep(Outcome(self.engine.create_instrument(btc_usd(), T).records))

    def keep(self, outcome: Outcome) -> Outcome:
        self.records += outcome.records
        return outcome

    def apply(self, command: trading_pb2.OrderCommand, timestamp_ns: int) -> Outcome:
        return self.keep(self.engine.apply(command, timestamp_ns))

    def resolve(self, order_id: str, replace_id: str, timestamp_ns: int, account: str = "acct-1") -> int:
        resolution, _, records = self.engine.resolve_replace(order_id, account, replace_id, timestamp_ns)
        self.records += records
        return resolution

    def replayed(self) -> Engine:
        engine = Engine()
        for record in self.records:
            engine.replay(record)
        engine.finish_replay()
        engine.validate()
        return engine


@pytest.fixture
def journaled() -> Journaled:
    return Journaled()


def test_the_last_applied_replace_is_applied_and_another_is_fenced_once(journaled: Journaled) -> None:
    engine = journaled.engine
    journaled.apply(new("b", BUY, 100, 5), T)
    assert journaled.apply(replace("b", 101, 5, "r1"), T + 1).accepted
    assert journaled.resolve("b", "r1", T + 2) == APPLIED
    before = len(journaled.records)
    # r2 never reached the engine: fenced, journaled once; asking again journals nothing more.
    assert journaled.resolve("b", "r2", T + 3) == FENCED
    fence = journaled.records[-1]
    assert fence.WhichOneof("record") == "replace_fenced" and len(journaled.records) == before + 1
    assert (
        fence.replace_fenced.order_id,
        fence.replace_fenced.account_id,
        fence.replace_fenced.replace_id,
    ) == (
        "b",
        "acct-1",
        "r2",
    )
    assert journaled.resolve("b", "r2", T + 4) == FENCED and len(journaled.records) == before + 1
    assert journaled.resolve("b", "r1", T + 5) == APPLIED  # still the last applied one
    engine.validate()


def test_a_fenced_replace_arriving_late_is_refused_and_changes_nothing(journaled: Journaled) -> None:
    engine = journaled.engine
    journaled.apply(new("b", BUY, 100, 5), T)
    assert journaled.resolve("b", "late", T + 1) == FENCED
    state, sequence = engine.state_hash(), engine.last_sequence
    outcome = journaled.apply(replace("b", 120, 7, "late"), T + 2)
    (report,) = outcome.reports
    assert not outcome.records
    assert report.execution_type == c.EXECUTION_TYPE_REJECTED
    assert report.reject_reason == RejectReason.REPLACE_FENCED.number
    assert (report.order.price_ticks, report.order.quantity_lots) == (100, 5)
    assert (engine.state_hash(), engine.last_sequence) == (state, sequence)
    # Another replace of the order goes through, and is the one applied from then on.
    assert journaled.apply(replace("b", 120, 7, "next"), T + 3).accepted
    assert journaled.resolve("b", "next", T + 4) == APPLIED
    engine.validate()


def test_a_replace_without_an_id_or_with_a_malformed_one(journaled: Journaled) -> None:
    journaled.apply(new("b", BUY, 100, 5), T)
    assert journaled.apply(replace("b", 101, 5, "r1"), T + 1).accepted
    # Applied without an id (journals written before the field): no replace id is the last applied.
    assert journaled.apply(replace("b", 102, 5, ""), T + 2).accepted
    assert "b" not in journaled.engine.replace_ids
    assert journaled.resolve("b", "r1", T + 3) == FENCED  # harmless: risk has no mark of r1 left
    for malformed in ("has space", "x" * 200, "new\nline"):
        (report,) = journaled.apply(replace("b", 103, 5, malformed), T + 4).reports
        assert report.reject_reason == RejectReason.INVALID_ORDER.number


def test_an_order_not_held_is_gone_and_a_closed_one_is_fenced(journaled: Journaled) -> None:
    journaled.apply(new("b", BUY, 100, 5), T)
    assert journaled.resolve("nope", "r1", T + 1) == GONE
    assert journaled.resolve("b", "r1", T + 1, account="someone-else") == GONE
    journaled.apply(cancel_order("b"), T + 2)
    # Closed but still held: its replace can never apply; fenced, which risk finds nothing to undo.
    assert journaled.resolve("b", "r1", T + 3) == FENCED
    assert journaled.engine.forget(["b"]) == 1
    journaled_before = len(journaled.records)
    assert journaled.resolve("b", "r2", T + 4) == GONE  # forgotten: nothing journaled
    assert len(journaled.records) == journaled_before
    assert journaled.records[-1].replace_fenced.replace_id == "r1"
    assert not journaled.engine.replace_ids


def test_fences_and_applied_replace_ids_replay_and_unpickle_to_the_same_digest(journaled: Journaled) -> None:
    engine = journaled.engine
    journaled.apply(new("b", BUY, 100, 5), T)
    journaled.apply(new("s", SELL, 110, 2, account="acct-2"), T)
    journaled.apply(replace("b", 101, 6, "r1"), T + 1)
    journaled.resolve("b", "r2", T + 2)
    journaled.apply(replace("s", 109, 3, "r3", account="acct-2"), T + 3)
    journaled.resolve("s", "r4", T + 4, account="acct-2")
    journaled.apply(replace("b", 109, 6, "r5"), T + 5)  # crosses s: a trade after the replace
    journaled.resolve("b", "r6", T + 6)
    engine.validate()
    replayed = journaled.replayed()
    assert replayed.state_hash() == engine.state_hash()
    assert replayed.replace_fences == engine.replace_fences
    assert replayed.replace_ids == engine.replace_ids == {"b": "r5", "s": "r3"}
    loaded = pickle.loads(pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL))
    assert loaded.state_hash() == engine.state_hash()
    # The late replace is refused after replay too.
    (report,) = replayed.apply(replace("b", 99, 6, "r6"), T + 7).reports
    assert report.reject_reason == RejectReason.REPLACE_FENCED.number


def test_the_digest_covers_fences_and_applied_replace_ids(journaled: Journaled) -> None:
    engine = journaled.engine
    journaled.apply(new("b", BUY, 100, 5), T)
    journaled.apply(replace("b", 101, 5, "r1"), T + 1)
    state = engine.state_hash()
    engine.replace_ids["b"] = "other"
    assert engine.state_hash() != state
    engine.replace_ids["b"] = "r1"
    engine.replace_fences[("b", "r9")] = "acct-1"
    assert engine.state_hash() != state
    del engine.replace_fences[("b", "r9")]
    assert engine.state_hash() == state


def test_validate_catches_an_applied_replace_id_that_was_fenced(journaled: Journaled) -> None:
    engine = journaled.engine
    journaled.apply(new("b", BUY, 100, 5), T)
    journaled.apply(replace("b", 101, 5, "r1"), T + 1)
    engine.validate()
    engine.replace_fences[("b", "r1")] = "acct-1"
    with pytest.raises(InvariantViolation, match="replace id"):
        engine.validate()
    del engine.replace_fences[("b", "r1")]
    engine.replace_ids["ghost"] = "r1"
    with pytest.raises(InvariantViolation, match="replace id"):
        engine.validate()
