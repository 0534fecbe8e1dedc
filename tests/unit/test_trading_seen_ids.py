"""The filter of journaled ids (trading/seen_ids.py): no false negatives, its false-positive rate,
growth, determinism (a pickle round trip, other processes with other hash seeds), and the engine's
copy of it surviving a snapshot and the replay after it exactly as a whole replay builds it."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import zlib

import pytest

from backbone.trading.v1 import trading_pb2
from tests.instruments import btc_usd
from tests.orders import cancel_order, new_order
from tests.unit.test_trading_engine import BUY, SELL, T
from trading import seen_ids
from trading.engine import Engine
from trading.seen_ids import FALSE_POSITIVE_RATE, SeenIds
from trading.snapshots import Snapshot, freeze, thaw


def told(orders: int, seen: SeenIds | None = None, first: int = 0) -> SeenIds:
    """`seen` (a new filter when None) told orders numbered `first` to `first + orders`."""
    seen = SeenIds() if seen is None else seen
    for number in range(first, first + orders):
        seen.add(_order_id(number), f"acct-{number % 97}", f"client-{number}")
    return seen


def _order_id(number: int) -> str:
    """Shaped as the gateway's (uuid4); deterministic, so every run is the same."""
    return f"{number:08x}-7a1c-4e2b-9f3d-{number:012x}"


def test_an_empty_filter_has_seen_nothing_and_holds_no_memory() -> None:
    seen = SeenIds()
    assert not seen.may_hold_order_id("o-1") and not seen.may_hold_client_order_id("acct-1", "c-1")
    assert (seen.stages, seen.byte_count, seen.orders) == (0, 0, 0)


def test_every_id_told_is_seen_and_fresh_ones_rarely_at_the_default_size() -> None:
    orders = 300_000
    seen = told(orders)
    assert seen.orders == orders and seen.stages == 1  # 600,000 keys: the first stage takes 1,048,576
    assert all(seen.may_hold_order_id(_order_id(number)) for number in range(orders))
    assert all(seen.may_hold_client_order_id(f"acct-{n % 97}", f"client-{n}") for n in range(orders))
    fresh = range(orders, orders + 100_000)
    positives = sum(seen.may_hold_order_id(_order_id(number)) for number in fresh)
    positives += sum(seen.may_hold_client_order_id(f"acct-{n % 97}", f"client-{n}") for n in fresh)
    # The first stage's rate is a fifth of the bound, and it is not full yet.
    assert positives / 200_000 < FALSE_POSITIVE_RATE * (1 - seen_ids.TIGHTENING)
    assert seen.byte_count / (2 * orders) < 3.2  # bytes per key while the first stage fills


def test_it_grows_in_ever_larger_stages_with_no_false_negatives_and_the_rate_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seen_ids, "FIRST_CAPACITY", 4096)  # many stages from few orders
    orders = 100_000
    seen = told(orders)
    # 200,000 keys fill stages of 4096, 8192, ... 131072 keys, and part of the sixth.
    assert seen.stages == 6
    assert all(seen.may_hold_order_id(_order_id(number)) for number in range(orders))
    assert all(seen.may_hold_client_order_id(f"acct-{n % 97}", f"client-{n}") for n in range(orders))
    fresh = range(orders, orders + 100_000)
    positives = sum(seen.may_hold_order_id(_order_id(number)) for number in fresh)
    positives += sum(seen.may_hold_client_order_id(f"acct-{n % 97}", f"client-{n}") for n in fresh)
    rate = positives / 200_000
    assert 0.1 * FALSE_POSITIVE_RATE < rate <= FALSE_POSITIVE_RATE, rate
    assert sum(seen_ids.stage_rate(stage) for stage in range(64)) == pytest.approx(FALSE_POSITIVE_RATE)


def test_a_pickle_round_trip_keeps_every_bit_and_goes_on_growing_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(seen_ids, "FIRST_CAPACITY", 4096)
    seen = told(5000)
    loaded = pickle.loads(pickle.dumps(seen, protocol=pickle.HIGHEST_PROTOCOL))
    assert pickle.dumps(loaded) == pickle.dumps(seen) and loaded.stages == seen.stages == 2
    for filter_ in (seen, loaded):  # told the same after the round trip: the same again, growing
        told(5000, filter_, first=5000)
    assert pickle.dumps(loaded) == pickle.dumps(seen) and loaded.orders == 10_000 and loaded.stages == 3
    assert all(loaded.may_hold_order_id(_order_id(number)) for number in range(10_000))


@pytest.mark.parametrize("seed", ["0", "1", "4242"])
def test_other_processes_with_other_hash_seeds_build_the_same_filter(seed: str) -> None:
    script = (
        "import hashlib, pickle, sys\nfrom tests.unit.test_trading_seen_ids import told\n"
        "sys.stdout.write(hashlib.sha256(pickle.dumps(told(3000))).hexdigest())\n"
    )
    built = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        check=True,
    )
    assert built.stdout == hashlib.sha256(pickle.dumps(told(3000))).hexdigest()


def _journal() -> list[trading_pb2.JournalRecord]:
    """The records of a trading day: trades, a cancel, a duplicate and a rejected order."""
    engine = Engine()
    records = list(engine.create_instrument(btc_usd(), T).records)
    commands = [new_order(f"s{n}", SELL, 100 + n % 5, 2) for n in range(40)]
    commands += [new_order(f"b{n}", BUY, 102, 3, account="acct-2") for n in range(30)]
    commands += [cancel_order("s39"), new_order("again", SELL, 100, 2, client_order_id="c-s0")]
    commands += [new_order("bad", BUY, 0, 1)]
    for command in commands:
        records += engine.apply(command, T).records
    return records


def test_the_engine_tells_it_each_journaled_order_only() -> None:
    engine = Engine()
    for record in _journal():
        engine.replay(record)
    engine.finish_replay()
    assert engine.seen_ids.orders == 70  # not the duplicate client order id nor the invalid order
    assert all(engine.seen_ids.may_hold_order_id(f"s{n}") for n in range(40))
    assert all(engine.seen_ids.may_hold_client_order_id("acct-2", f"c-b{n}") for n in range(30))


def test_it_survives_a_snapshot_and_the_replay_after_it_as_a_whole_replay_builds_it() -> None:
    records = _journal()
    whole = Engine()
    for record in records:
        whole.replay(record)
    cut = next(index for index, record in enumerate(records) if record.new_order.order_id == "b10")
    first = Engine()
    for record in records[:cut]:
        first.replay(record)
    sequence, digest, payload = freeze(first)
    loaded = thaw("shard-a", Snapshot(sequence, digest, zlib.compress(payload)))
    for record in records[cut:]:
        loaded.replay(record)
    loaded.finish_replay()
    assert pickle.dumps(loaded.seen_ids) == pickle.dumps(whole.seen_ids)
    assert loaded.state_hash() == whole.state_hash()


def test_the_state_digest_tells_a_filter_missing_orders() -> None:
    engine = Engine()
    for record in _journal():
        engine.replay(record)
    digest = engine.state_hash()
    engine.seen_ids = SeenIds()
    assert engine.state_hash() != digest
