"""Risk's state in Redis, read back for an audit (`backbone check`): read-only and synchronous.

Given a synchronous redis client (bytes or decoded answers alike), it reports what risk holds:
each order's reservation, each account's total and reserved amount per asset, and how far risk
has applied each trading shard's events. It never writes. Each function reads with SCAN, so on a
live system the three views are not one snapshot: read the cursors first, then the rest, and
compare against what the cursors cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from risk.keys import (
    BALANCES_KEYS,
    CURSOR_KEYS,
    EPOCH_KEY,
    LEDGER_CURSOR_KEY,
    ORDER_KEYS,
    READY_KEY,
    RESERVED,
    parse_balance_field,
    parse_balances_key,
    parse_cursor_key,
    parse_order_key,
)
from risk.store import AssetFigures

_SCAN_COUNT = 1_000


@dataclass(frozen=True)
class Reservation:
    """What one order holds in risk, in minor units of `asset`."""

    account_id: str
    order_id: str
    asset: str
    amount: int


def reservations(client: redis.Redis) -> Iterator[Reservation]:
    """Every order's reservation (orders that hold nothing have no record)."""
    for key in _scan(client, ORDER_KEYS):
        parsed = parse_order_key(key)
        if parsed is None:
            continue
        fields = _hash(client, key)
        if fields:
            account_id, order_id = parsed
            yield Reservation(account_id, order_id, fields.get("asset", ""), int(fields.get("amount", 0)))


def balances(client: redis.Redis) -> Iterator[tuple[str, list[AssetFigures]]]:
    """(account id, its figures sorted by asset) for every account risk holds balances of."""
    for key in _scan(client, BALANCES_KEYS):
        account_id = parse_balances_key(key)
        if account_id is None:
            continue
        amounts: dict[str, list[int]] = {}
        for name, value in _hash(client, key).items():
            parsed = parse_balance_field(name)
            if parsed is not None:
                asset, kind = parsed
                amounts.setdefault(asset, [0, 0])[kind == RESERVED] = int(value)
        yield account_id, [AssetFigures(asset, *amounts[asset]) for asset in sorted(amounts)]


def cursors(client: redis.Redis) -> dict[str, int]:
    """trading shard (source) -> the highest sequence risk has fully applied from it."""
    keys = [key for key in _scan(client, CURSOR_KEYS) if parse_cursor_key(key) is not None]
    values = client.mget(keys) if keys else []
    return {
        str(parse_cursor_key(key)): int(_text(value))
        for key, value in zip(keys, values, strict=True)
        if value is not None
    }


def ledger_cursor(client: redis.Redis) -> int:
    """The highest ledger risk event (deposit, halt) risk has applied."""
    value = client.get(LEDGER_CURSOR_KEY)
    return int(_text(value)) if value is not None else 0


def ready(client: redis.Redis) -> bool:
    """Whether risk serves from its state (False while it rebuilds it, or before it first did)."""
    epoch, ready_epoch = client.mget(EPOCH_KEY, READY_KEY)
    return epoch is not None and epoch == ready_epoch


def _scan(client: redis.Redis, pattern: str) -> Iterator[str]:
    for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
        yield _text(key)


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    raw: dict[Any, Any] = client.hgetall(key)
    return {_text(name): _text(value) for name, value in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
