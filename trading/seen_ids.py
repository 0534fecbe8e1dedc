"""Every id journaled on a shard, as a filter: a new order's ids it has never seen skip the history.

:class:`SeenIds` answers "may this order id / this (account, client order id) have been journaled
here?" with no false negatives: a key it was told is always "maybe"; one it was never told is
"no" except for a false positive, which costs only the history look-up every new order made
before it existed (trading/retention.py). The engine tells it each journaled NewOrder's two keys
when it accepts the order (:meth:`trading.engine.Engine.new_order`, live and in replay), so the
same journal gives the same filter in every process: the keys are hashed with XXH64 of their UTF-8
bytes (abloom's ``serializable`` mode), never with Python's per-process salted ``hash()``.

A scalable series of split-block Bloom filters (abloom, a C extension): stage ``i`` takes
``FIRST_CAPACITY * GROWTH**i`` keys at a false-positive rate of
``FALSE_POSITIVE_RATE * (1 - TIGHTENING) * TIGHTENING**i``, so however many keys come, a key never
told is "maybe" with probability at most the sum, ``FALSE_POSITIVE_RATE`` (1%), and only the
newest stage is written. Stages are made when the previous one is full, at counts the journal
alone decides. Memory, from abloom's sizes (``python -m trading.seen_ids`` prints them): 1.8 bytes
per key while the first stage (1,048,576 keys, 1.9 MB, made at the first order) fills, and about
2.6 to 3 bytes per key from 10M to 1G keys, the growth's headroom and the tightening included (a
perfect filter at 1% needs 1.2). An order has two keys, so about twice that per order, and a new
order that is neither a retry nor a reuse is looked up with probability below 2% (either key).

A snapshot pickles it as its stages' bytes (abloom's ``to_bytes``: its sizes and bits, loaded back
with one copy); trading/snapshots.py names abloom's version in the snapshot format, so a snapshot
written by another version is not loaded and the journal rebuilds the filter instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from abloom import BloomFilter

# The bound on the chance that a key never told is "maybe", over all stages.
FALSE_POSITIVE_RATE = 0.01
# Keys of the first stage, and each next stage's size as a multiple of the one before.
FIRST_CAPACITY = 1 << 20
GROWTH = 2
# Each next stage's false-positive rate as a fraction of the one before (their sum converges).
TIGHTENING = 0.8


def stage_rate(stage: int) -> float:
    """The false-positive rate of stage `stage` (0 first): the series sums to FALSE_POSITIVE_RATE."""
    return FALSE_POSITIVE_RATE * (1 - TIGHTENING) * TIGHTENING**stage


def _order_key(order_id: str) -> str:
    return "o" + order_id


def _client_key(account_id: str, client_order_id: str) -> str:
    # Two keys that spell the same string only make a false positive ("maybe"), never a miss.
    return f"c{account_id}\x1f{client_order_id}"


class SeenIds:
    """The order ids and (account, client order id) keys of every order journaled on a shard."""

    __slots__ = ("_room", "_stages", "orders")

    def __init__(self) -> None:
        # Oldest first; none until the first order (an engine that never trades costs nothing).
        self._stages: list[BloomFilter] = []
        # Keys the newest stage still takes at its rate.
        self._room = 0
        # Orders told (each with its two keys); in the engine's state digest.
        self.orders = 0

    def add(self, order_id: str, account_id: str, client_order_id: str) -> None:
        """Tell the filter a journaled NewOrder's ids."""
        if self._room < 2:
            self._grow()
        stage = self._stages[-1]
        stage.add(_order_key(order_id))
        stage.add(_client_key(account_id, client_order_id))
        self._room -= 2
        self.orders += 1

    def may_hold_order_id(self, order_id: str) -> bool:
        """False only when no order with `order_id` was ever told."""
        return self._may_hold(_order_key(order_id))

    def may_hold_client_order_id(self, account_id: str, client_order_id: str) -> bool:
        """False only when no order of `account_id` with `client_order_id` was ever told."""
        return self._may_hold(_client_key(account_id, client_order_id))

    def _may_hold(self, key: str) -> bool:
        for stage in self._stages:  # noqa: SIM110 - any() over a generator costs twice this
            if key in stage:
                return True
        return False

    @property
    def stages(self) -> int:
        return len(self._stages)

    @property
    def byte_count(self) -> int:
        """The bytes of every stage's bits."""
        return sum(stage.byte_count for stage in self._stages)

    def _grow(self) -> None:
        index = len(self._stages)
        capacity = FIRST_CAPACITY * GROWTH**index
        self._stages.append(BloomFilter(capacity, stage_rate(index), serializable=True))
        self._room = capacity

    def __reduce__(self) -> tuple[Callable[..., SeenIds], tuple[Any, ...]]:
        return _restored, (self.orders, self._room, [stage.to_bytes() for stage in self._stages])


def _restored(orders: int, room: int, stages: list[bytes]) -> SeenIds:
    seen = SeenIds()
    seen._stages = [BloomFilter.from_bytes(stage) for stage in stages]
    seen._room = room
    seen.orders = orders
    return seen


def _print_sizes() -> None:
    """Bytes per key with every stage made for `keys` keys (the docstring's figures)."""
    for keys in (10**6, 10**7, 10**8, 10**9):
        total = made = index = 0
        while made < keys:
            capacity = FIRST_CAPACITY * GROWTH**index
            # abloom sizes a stage linearly in its capacity: measure one of 2**16 keys and scale.
            per_key = BloomFilter(1 << 16, stage_rate(index), serializable=True).byte_count / (1 << 16)
            total += capacity * per_key
            made += capacity
            index += 1
        sys.stdout.write(f"{keys:>13,} keys: {index:2} stages, {total / keys:.2f} bytes per key\n")


if __name__ == "__main__":
    _print_sizes()
