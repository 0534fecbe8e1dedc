"""Risk's instruments: a cache over Redis, learned from trading's events, never asked of trading."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from redis import exceptions as redis_errors

from backbone.common.v1 import common_pb2
from backbone.risk.v1 import risk_pb2
from backbone.settlement.v1 import settlement_pb2
from backbone.trading.v1 import trading_pb2
from risk.instruments import InstrumentCache, instrument_problem
from tests.instruments import btc_usd
from trading.app import event_of, risk_request, settlement_request
from trading.engine import Engine
from trading.journal import RISK_KINDS

ROOT = Path(__file__).resolve().parents[2]
T = 1_700_000_000_000_000_000


class Loader:
    """Stands in for RiskStore.instruments: what Redis holds, counting reads; `gate` holds reads back."""

    def __init__(self, *instruments: common_pb2.Instrument) -> None:
        self.instruments = list(instruments)
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None

    async def __call__(self) -> Sequence[common_pb2.Instrument]:
        self.calls += 1
        snapshot = list(self.instruments)  # what Redis held when the read began
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return snapshot


async def test_the_cache_refreshes_on_a_miss_and_concurrent_misses_share_a_refresh() -> None:
    loader = Loader(btc_usd())
    cache = InstrumentCache(loader)
    await cache.refresh()
    assert loader.calls == 1
    assert (await cache.get("BTC-USD")) is not None
    assert loader.calls == 1  # a hit reads nothing

    loader.instruments.append(btc_usd("ETH-USD"))
    loader.gate.clear()
    lookups = [asyncio.create_task(cache.lookup(["ETH-USD", "BTC-USD"])) for _ in range(20)]
    await asyncio.sleep(0.01)
    loader.gate.set()
    found = await asyncio.gather(*lookups)
    assert all(set(f) == {"ETH-USD", "BTC-USD"} for f in found)
    # The first miss reads; the misses that arrive while that read is under way share one more
    # read (the first may have begun before what they miss was written). Never one read each.
    assert loader.calls <= 3


async def test_a_miss_during_a_refresh_reads_again_so_a_fresh_write_is_found() -> None:
    loader = Loader()
    cache = InstrumentCache(loader)
    loader.gate.clear()
    first = asyncio.create_task(cache.get("BTC-USD"))
    await asyncio.sleep(0.01)  # that read began before BTC-USD was stored...
    loader.instruments.append(btc_usd())
    second = asyncio.create_task(cache.get("BTC-USD"))  # ...this miss came after
    await asyncio.sleep(0.01)
    loader.gate.set()
    assert await first is None
    found = await second
    assert found is not None and found.instrument == btc_usd()


async def test_an_unknown_symbol_is_none_and_a_redis_error_is_raised() -> None:
    loader = Loader(btc_usd())
    cache = InstrumentCache(loader)
    assert await cache.get("NOPE-USD") is None
    loader.error = redis_errors.ConnectionError("redis is gone")
    with pytest.raises(redis_errors.ConnectionError):
        await cache.get("NOPE-USD")
    assert (await cache.get("BTC-USD")) is not None  # what is cached still answers


async def test_an_unusable_stored_instrument_is_left_out() -> None:
    broken = btc_usd("BAD-USD")
    broken.base_minor_per_lot = 0
    cache = InstrumentCache(Loader(btc_usd(), broken))
    await cache.refresh()
    assert len(cache) == 1 and cache.cached("BAD-USD") is None


def test_instrument_problem_names_what_risk_cannot_use() -> None:
    assert instrument_problem(btc_usd()) is None
    for field, value in [
        ("symbol", ""),
        ("base_asset", ""),
        ("quote_minor_per_tick_lot", 0),
        ("base_minor_per_lot", -1),
        ("tick_size", "abc"),
        ("lot_size", "0"),
    ]:
        bad = btc_usd()
        setattr(bad, field, value)
        assert instrument_problem(bad) is not None, field


def test_risk_request_carries_every_risk_kind() -> None:
    engine = Engine()
    records = list(engine.create_instrument(btc_usd(), T).records)
    for command in (
        trading_pb2.OrderCommand(
            new_order=trading_pb2.NewOrder(
                order_id=order_id,
                client_order_id=f"c-{order_id}",
                account_id="a",
                symbol="BTC-USD",
                side=side,
                price_ticks=100,
                quantity_lots=lots,
            )
        )
        for order_id, side, lots in (("s", common_pb2.SIDE_SELL, 3), ("b", common_pb2.SIDE_BUY, 1))
    ):
        records += engine.apply(command, T).records
    records += engine.apply(
        trading_pb2.OrderCommand(
            replace_order=trading_pb2.ReplaceOrder(
                order_id="s", account_id="a", price_ticks=101, quantity_lots=2
            )
        ),
        T,
    ).records
    records += engine.apply(
        trading_pb2.OrderCommand(cancel_order=trading_pb2.CancelOrder(order_id="s", account_id="a")), T
    ).records
    records += engine.resolve_order("never-arrived", "a", T)[1]  # a fence
    records += engine.resolve_replace("b", "a", "lost-replace", T)[2]  # a replace fence
    records += engine.change_risk_epoch("epoch-2", T).records  # risk rebuilt from here
    sent = [(r.sequence, r) for r in records if r.WhichOneof("record") in RISK_KINDS]
    assert {r.WhichOneof("record") for _, r in sent} == set(RISK_KINDS)
    # The outbox sends the request as bytes put together from each record's serialized event.
    request = risk_pb2.StreamTradingEventsRequest.FromString(
        risk_request("shard-a", [(seq, event_of(r)) for seq, r in sent])
    )
    assert request.source == "shard-a"
    assert [(e.sequence, e.WhichOneof("event")) for e in request.events] == [
        (seq, r.WhichOneof("record")) for seq, r in sent
    ]
    assert request.events[0].instrument_created == btc_usd()
    for event, (_, record) in zip(request.events, sent, strict=True):
        kind = record.WhichOneof("record")
        assert getattr(event, kind).SerializeToString() == getattr(record, kind).SerializeToString()
    assert sent[-1][1].risk_epoch_changed.epoch == "epoch-2"
    assert request.events[-1].risk_epoch_changed.epoch == "epoch-2"
    with pytest.raises(ValueError, match="new_order"):
        risk_request("shard-a", [(r.sequence, event_of(r)) for r in records if r.HasField("new_order")])


def test_settlement_request_carries_the_trades_with_their_sequences() -> None:
    engine = Engine()
    engine.create_instrument(btc_usd(), T)
    records = []
    for order_id, side, lots in (("s", common_pb2.SIDE_SELL, 3), ("b", common_pb2.SIDE_BUY, 2)):
        command = trading_pb2.OrderCommand(
            new_order=trading_pb2.NewOrder(
                order_id=order_id,
                client_order_id=f"c-{order_id}",
                account_id=f"acct-{order_id}",
                symbol="BTC-USD",
                side=side,
                price_ticks=100,
                quantity_lots=lots,
            )
        )
        records += engine.apply(command, T).records
    trades = [(r.sequence, r) for r in records if r.HasField("trade")]
    assert trades
    # Sequences past 2^35 take several varint bytes on the wire.
    request = settlement_pb2.StreamTradesRequest.FromString(
        settlement_request("trading-0", [(seq + (1 << 35), event_of(r)) for seq, r in trades])
    )
    assert request.source == "trading-0"
    assert [(t.sequence, t.trade) for t in request.trades] == [
        (seq + (1 << 35), r.trade) for seq, r in trades
    ]
    with pytest.raises(ValueError, match="new_order"):
        settlement_request(
            "trading-0", [(r.sequence, event_of(r)) for r in records if r.HasField("new_order")]
        )


def test_risk_never_calls_trading() -> None:
    """Risk neither imports trading's stubs nor reads the trading address: no channel to trading.

    The design's kill switch (risk asking trading for a mass cancel) would be the first
    reason to change this; instruments never are.
    """
    offenders = []
    for path in sorted((ROOT / "risk").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.Attribute) and node.attr == "trading_address":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} reads trading_address")
                continue
            else:
                continue
            for module in modules:
                if module.startswith(("backbone.trading", "trading")) or module.endswith("open_channel"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    assert offenders == []
