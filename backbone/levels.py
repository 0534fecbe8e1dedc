"""Price levels of an order book as market data carries them, and what changed between two views."""

from __future__ import annotations

# (price in ticks, open quantity in lots, order count); a view is a list of them, best first.
Level = tuple[int, int, int]


def changed_levels(before: list[Level], after: list[Level]) -> list[Level]:
    """The levels of `after` that differ from `before`, then those gone from it (0 lots, 0
    orders), each part best first: applied to `before` they give `after`."""
    if before == after:
        return []
    old = {price: (lots, count) for price, lots, count in before}
    changed = [(price, lots, count) for price, lots, count in after if old.pop(price, None) != (lots, count)]
    changed.extend((price, 0, 0) for price in old)
    return changed
